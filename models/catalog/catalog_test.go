package catalog

import (
	"slices"
	"strings"
	"testing"
)

func TestLoadEmbeddedCatalog(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // every item of MODELS.md, with its install file
		"onnxruntime":               "lib/libonnxruntime.so.1",
		"onnxruntime-cuda":          "lib/cuda/libonnxruntime.so",
		"onnxruntime-cuda-shared":   "lib/cuda/libonnxruntime_providers_shared.so",
		"onnxruntime-cuda-provider": "lib/cuda/libonnxruntime_providers_cuda.so",
		"u2netp":                    "models/u2netp.onnx",
		"isnet-imgly-small":         "models/isnet-imgly-small.onnx",
		"isnet-imgly-medium":        "models/isnet-imgly-medium.onnx",
		"u2net":                     "models/u2net.onnx",
		"u2net_human_seg":           "models/u2net_human_seg.onnx",
		"silueta":                   "models/silueta.onnx",
		"isnet-general-use":         "models/isnet-general-use.onnx",
		"lama":                      "models/lama_fp32.onnx",
		"clip-vision":               "models/clip-vit-b32-vision.onnx",
		"clip-vision-int8":          "models/clip-vit-b32-vision-int8.onnx",
		"clip-text-int8":            "models/clip-vit-b32-text-int8.onnx",
		"caption-encoder-int8":      "models/vit-gpt2-encoder-int8.onnx",
		"caption-decoder-int8":      "models/vit-gpt2-decoder-merged-int8.onnx",
		// rembg's model set (issue 18)
		"birefnet-general":      "models/birefnet-general.onnx",
		"birefnet-general-lite": "models/birefnet-general-lite.onnx",
		"birefnet-portrait":     "models/birefnet-portrait.onnx",
		"birefnet-dis":          "models/birefnet-dis.onnx",
		"birefnet-hrsod":        "models/birefnet-hrsod.onnx",
		"birefnet-cod":          "models/birefnet-cod.onnx",
		"birefnet-massive":      "models/birefnet-massive.onnx",
		"isnet-anime":           "models/isnet-anime.onnx",
		"u2net_cloth_seg":       "models/u2net_cloth_seg.onnx",
		"bria-rmbg":             "models/bria-rmbg.onnx",
		"ben2-base":             "models/ben2-base.onnx",
		"sam-encoder":           "models/sam_vit_b_01ec64.encoder.onnx",
		"sam-decoder":           "models/sam_vit_b_01ec64.decoder.onnx",
		// SD-Turbo in the diffusers layout, verified against the sha256
		// Hugging Face states (none could be pinned).
		"sd-turbo-unet":         "models/sd-turbo/unet/model.onnx",
		"sd-turbo-text-encoder": "models/sd-turbo/text_encoder/model.onnx",
		"sd-turbo-vae-decoder":  "models/sd-turbo/vae_decoder/model.onnx",
	}
	if len(c.Items) != len(want) {
		t.Errorf("catalog has %d items, want %d: %v", len(c.Items), len(want), c.Names())
	}
	for name, rel := range want {
		it, ok := c.Item(name)
		if !ok {
			t.Errorf("item %q missing", name)
			continue
		}
		if it.RelPath() != rel {
			t.Errorf("%s installs to %q, want %q", name, it.RelPath(), rel)
		}
		if it.SHA256 == "" && it.MD5 == "" && it.Bytes == 0 && !it.Manual && it.SHA256From != HuggingFace {
			t.Errorf("%s: nothing to verify", name)
		}
		if it.File == "" || it.License == "" {
			t.Errorf("%s: file or license empty", name)
		}
	}

	ort, _ := c.Item("onnxruntime")
	if ort.Kind != KindRuntime || ort.SHA256 != "92ba8e44d31b80a34f5e805076a044122c3be1fffe0d88ed790de7267b0b2682" ||
		ort.Bytes != 35164376 || ort.NPM == nil || ort.NPM.TarballSHA1 != "ec8da99c335aa5ea95559a3ac1ae915a89541d5e" ||
		ort.NPM.Spec() != "onnxruntime-node@1.24.3" || ort.Upstream == nil || ort.Upstream.Path == "" {
		t.Errorf("onnxruntime entry wrong: %+v npm=%+v up=%+v", ort, ort.NPM, ort.Upstream)
	}
	// MODELS.md's CUDA build: the core and the providers, from npm.
	gpu := map[string][3]string{
		"onnxruntime-cuda":          {"5715f06d8992ca8eeeddcce43df3a7d38f97d537052126f558e912cb312460ca", "com.github.asus4.onnxruntime@0.4.9", "package/Plugins/Linux/x64/libonnxruntime.so"},
		"onnxruntime-cuda-shared":   {"c6a12593396095f5670160e284c35d1700b7708cf3037b7042e2a5200ccae772", "com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9", "package/Plugins/Linux/x64/libonnxruntime_providers_shared.so"},
		"onnxruntime-cuda-provider": {"56cf3254b118ad837ccc4ed8f6d1b23504bbf7ef91b34cbc0b289cb7f10b3037", "com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9", "package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so"},
	}
	for name, w := range gpu {
		it, _ := c.Item(name)
		if !it.GPU() || it.SHA256 != w[0] || it.NPM == nil || it.NPM.Spec() != w[1] || it.NPM.Path != w[2] ||
			it.NPM.TarballSHA1 == "" || it.Upstream == nil || !strings.Contains(it.Upstream.URL, "onnxruntime-linux-x64-gpu-1.29.0.tgz") {
			t.Errorf("%s entry wrong: %+v npm=%+v up=%+v", name, it, it.NPM, it.Upstream)
		}
	}
	if got := c.Select(true); !slices.Equal(got, []string{"onnxruntime-cuda", "onnxruntime-cuda-shared", "onnxruntime-cuda-provider"}) {
		t.Errorf("Select(gpu) = %v", got)
	}
	if got := c.Select(false); len(got) != len(want)-len(gpu) || slices.ContainsFunc(got, func(n string) bool { _, g := gpu[n]; return g }) {
		t.Errorf("Select(!gpu) = %v", got)
	}
	small, _ := c.Item("isnet-imgly-small")
	if small.NPM == nil || small.NPM.ChunksKey != "/models/small" || small.Upstream != nil {
		t.Errorf("isnet-imgly-small should come from npm chunks only: %+v", small)
	}
	for _, md5only := range []string{"u2net_human_seg", "silueta", "isnet-general-use"} {
		if it, _ := c.Item(md5only); it.SHA256 != "" || it.MD5 == "" {
			t.Errorf("%s: MODELS.md gives only an md5, catalog has sha256=%q md5=%q", md5only, it.SHA256, it.MD5)
		}
	}
	// rembg's sessions: md5 where that is all rembg publishes, BRIA's
	// sha256, nothing for SAM (never downloaded), all optional.
	for name, md5 := range map[string]string{
		"birefnet-general": "7a35a0141cbbc80de11d9c9a28f52697", "birefnet-massive": "33e726a2136a3d59eb0fdf613e31e3e9",
		"isnet-anime": "6f184e756bb3bd901c8849220a83e38e", "u2net_cloth_seg": "2434d1f3cb744e0e49386c906e5a08bb",
	} {
		if it, _ := c.Item(name); it.MD5 != md5 || it.SHA256 != "" || !it.Optional {
			t.Errorf("%s: md5 %q sha256 %q optional %v; rembg publishes md5 %s only", name, it.MD5, it.SHA256, it.Optional, md5)
		}
	}
	if it, _ := c.Item("bria-rmbg"); it.SHA256 != "5b486f08200f513f460da46dd701db5fbb47d79b4be4b708a19444bcd4e79958" {
		t.Errorf("bria-rmbg: sha256 %q", it.SHA256)
	}
	for _, name := range []string{"sam-encoder", "sam-decoder"} {
		if it, _ := c.Item(name); !it.Manual || it.Upstream == nil {
			t.Errorf("%s: manual %v, upstream %v", name, it.Manual, it.Upstream)
		}
	}
	for _, name := range c.Defaults() {
		if it, _ := c.Item(name); it.Optional {
			t.Errorf("default fetch includes optional %s", name)
		}
	}
	if _, ok := c.Item("nope"); ok {
		t.Error("Item(nope) found something")
	}
}

func TestFetchCommand(t *testing.T) {
	if got := FetchCommand("u2netp"); got != "scripts/fetch-models.sh u2netp" {
		t.Errorf("FetchCommand = %q", got)
	}
}

func TestParseRejectsBadEntries(t *testing.T) {
	const good = `
  - name: a
    kind: model
    file: a.onnx
    sha256: 309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8
    upstream: {url: "https://example.com/a.onnx"}
`
	if _, err := Parse([]byte("items:" + good)); err != nil {
		t.Fatalf("good catalog rejected: %v", err)
	}
	bad := map[string]string{
		"duplicate name":   good + good,
		"unknown field":    strings.Replace(good, "sha256:", "sha265:", 1),
		"no checksum":      strings.Replace(good, "sha256:", "license:", 1),
		"short sha256":     strings.Replace(good, "ddd8", "", 1),
		"path in file":     strings.Replace(good, "a.onnx\n", "../a.onnx\n", 1),
		"bad kind":         strings.Replace(good, "kind: model", "kind: weights", 1),
		"no source":        strings.Replace(good, `upstream: {url: "https://example.com/a.onnx"}`, "", 1),
		"path not archive": strings.Replace(good, `a.onnx"}`, `a.onnx", path: x}`, 1),
		"npm both":         good + "    npm: {package: p, version: '1', path: x, chunks_key: /y}\n",
		"npm neither":      good + "    npm: {package: p, version: '1'}\n",
		"bad sha1":         good + "    npm: {package: p, version: '1', path: x, tarball_sha1: abc}\n",
	}
	for name, body := range bad {
		if _, err := Parse([]byte("items:" + body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
