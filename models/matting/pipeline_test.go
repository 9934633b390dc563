package matting

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
	// The other families register the tasks the embedded configuration uses.
	_ "github.com/imgserve/imgserve/models/caption"
	_ "github.com/imgserve/imgserve/models/clip"
	_ "github.com/imgserve/imgserve/models/diffusion"
	_ "github.com/imgserve/imgserve/models/inpaint"
	"github.com/imgserve/imgserve/preprocess"
)

// patternImage is pattern_image in testdata/golden.py.
func patternImage() *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, 300, 200))
	for y := range 200 {
		for x := range 300 {
			p := img.Pix[4*(y*300+x):]
			p[0] = byte((x*7 + y*3) % 64)
			if (x-100)*(x-100)+(y-90)*(y-90) < 50*50 {
				p[0] = 255
			}
			p[1] = byte((x + y) % 128)
			p[2] = byte((x * y) % 50)
			if x > 220 {
				p[2] = 200
			}
			p[3] = 255
		}
	}
	return img
}

func golden(t *testing.T, name string) *image.Gray {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := preprocess.Decode(data, preprocess.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	g := image.NewGray(img.Rect)
	for i := range g.Pix {
		g.Pix[i] = img.Pix[4*i]
	}
	return g
}

// compareMasks counts the pixels that differ, and the largest difference.
func compareMasks(got, want *image.Gray) (n, worst int) {
	for i := range got.Pix {
		d := int(got.Pix[i]) - int(want.Pix[i])
		if d != 0 {
			n++
			worst = max(worst, d, -d)
		}
	}
	return n, worst
}

// TestSalientModelsMatchRembg runs BiRefNet, isnet-anime, BRIA RMBG and BEN
// pipelines on their synthetic models and compares with what rembg's own
// session code computes from the same models (testdata/golden.py): each
// model's normalisation, 1024x1024 size, BiRefNet's sigmoid. float32
// exp/sigmoid may round differently from numpy, so a pixel may be off by
// one level where it truncates; nothing more.
func TestSalientModelsMatchRembg(t *testing.T) {
	reg := NewRegistry(loadRegistry(t, synthConfig))
	img := patternImage()
	for _, tc := range []struct{ model, golden string }{
		{"birefnet-general", "birefnet_synth.golden.png"},
		{"isnet-anime", "isnet_anime_synth.golden.png"},
		{"bria-rmbg", "bria_rmbg_synth.golden.png"},
		{"ben2-base", "ben2_synth.golden.png"},
	} {
		p, err := reg.Get(tc.model)
		if err != nil {
			t.Fatal(err)
		}
		mask, _, err := p.Mask(context.Background(), img)
		if err != nil {
			t.Fatalf("%s: %v", tc.model, err)
		}
		n, worst := compareMasks(mask, golden(t, tc.golden))
		if worst > 1 || n > len(mask.Pix)/1000 {
			t.Errorf("%s: %d pixels differ from rembg's, by up to %d", tc.model, n, worst)
		}
	}
}

// TestSalientWrongOptionsDiffer makes sure the comparison above can fail:
// BiRefNet without its sigmoid, BEN with ImageNet normalisation.
func TestSalientWrongOptionsDiffer(t *testing.T) {
	reg := NewRegistry(loadRegistry(t, `
models:
  - {name: birefnet-nosigmoid, file: birefnet_synth.onnx, task: matting, options: {size: "1024"}}
  - {name: ben-imagenet, file: ben2_synth.onnx, task: matting, options: {size: "1024"}}
`))
	img := patternImage()
	for _, tc := range []struct{ model, golden string }{
		{"birefnet-nosigmoid", "birefnet_synth.golden.png"},
		{"ben-imagenet", "ben2_synth.golden.png"},
	} {
		p, err := reg.Get(tc.model)
		if err != nil {
			t.Fatal(err)
		}
		mask, _, err := p.Mask(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		if n, worst := compareMasks(mask, golden(t, tc.golden)); worst <= 1 {
			t.Errorf("%s: matches rembg's output (%d pixels differ by at most %d) although misconfigured", tc.model, n, worst)
		}
	}
}

// TestClothSegClasses: the three garment masks, and each one alone, as
// rembg's u2net_cloth_seg session returns them for the same synthetic model.
func TestClothSegClasses(t *testing.T) {
	reg := NewRegistry(loadRegistry(t, synthConfig))
	p, err := reg.Get("u2net_cloth_seg")
	if err != nil {
		t.Fatal(err)
	}
	img := testmodels.GarmentImage()                      // garment_image in testdata/golden.py
	want := golden(t, "u2net_cloth_seg_synth.golden.png") // upper, lower, full stacked
	all, _, err := p.Masks(context.Background(), img, Extras{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("%d masks, want 3", len(all))
	}
	plane := 160 * 240
	for i, class := range ClothCategories {
		part := &image.Gray{Pix: want.Pix[i*plane : (i+1)*plane], Stride: 160, Rect: image.Rect(0, 0, 160, 240)}
		if n, worst := compareMasks(all[i], part); n > 0 {
			t.Errorf("%s mask: %d pixels differ from rembg's (up to %d)", class, n, worst)
		}
		one, _, err := p.Masks(context.Background(), img, Extras{ClothCategory: class})
		if err != nil {
			t.Fatal(err)
		}
		if len(one) != 1 || string(one[0].Pix) != string(all[i].Pix) {
			t.Errorf("cc=%s: %d masks, or not the %s mask of the three", class, len(one), class)
		}
	}
	if _, _, err := p.Masks(context.Background(), img, Extras{ClothCategory: "hat"}); !errors.Is(err, ErrBadParameter) {
		t.Errorf("cc=hat: error %v, want ErrBadParameter", err)
	}
}

// TestClothMasksMatchPIL checks the post-processing alone against rembg's
// (scipy log_softmax, PIL Lanczos resize, palette, convert) on logits with
// many class boundaries (testdata/golden.py).
func TestClothMasksMatchPIL(t *testing.T) {
	for _, tc := range []struct {
		w, h, ow, oh int
		sha          [3]string
	}{
		{10, 12, 17, 23, [3]string{"ab5bc8e3aad196c5", "a5e050f28a3f278d", "e37980cc455d5dad"}},
		{40, 30, 13, 9, [3]string{"ec9dbe6027362027", "329ee3b88da650d6", "ace487d85dc42ac3"}},
	} {
		masks, err := ClothMasks(clothLogits(tc.w, tc.h), tc.w, tc.h, tc.ow, tc.oh, ClothCategories)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range masks {
			sum := sha256.Sum256(m.Pix)
			if got := hex.EncodeToString(sum[:8]); got != tc.sha[i] {
				t.Errorf("%dx%d -> %dx%d %s: sha256 %s, rembg's %s", tc.w, tc.h, tc.ow, tc.oh, ClothCategories[i], got, tc.sha[i])
			}
		}
	}
}

func clothLogits(w, h int) []float32 {
	v := make([]float32, 4*w*h)
	for c := range 4 {
		for y := range h {
			for x := range w {
				v[c*w*h+y*w+x] = float32(sin(float64(x)*(0.3+0.1*float64(c))+float64(y)*(0.2-0.05*float64(c))+float64(c)) * (1 + float64(c)*0.5))
			}
		}
	}
	return v
}

// TestSAMPrompts: a point and a box with a negative point, through rembg's
// SAM transforms (scale into 684x1024, prompts scaled alike, masks scaled
// back), compared with rembg's session code on the same synthetic models.
func TestSAMPrompts(t *testing.T) {
	reg := NewRegistry(loadRegistry(t, synthConfig))
	p, err := reg.Get("sam")
	if err != nil {
		t.Fatal(err)
	}
	img := patternImage()
	label := func(v int) *int { return &v }
	for _, tc := range []struct {
		golden string
		prompt []Mark
	}{
		{"sam_point.golden.png", []Mark{{Type: "point", Data: []float64{100, 90}, Label: label(1)}}},
		{"sam_box.golden.png", []Mark{{Type: "rectangle", Data: []float64{200, 50, 280, 150}}, {Type: "point", Data: []float64{270, 60}, Label: label(0)}}},
	} {
		masks, _, err := p.Masks(context.Background(), img, Extras{SAMPrompt: tc.prompt})
		if err != nil {
			t.Fatal(err)
		}
		want := golden(t, tc.golden)
		if n, worst := compareMasks(masks[0], want); n > 0 {
			t.Errorf("%s: %d pixels differ from rembg's (up to %d)", tc.golden, n, worst)
		}
		on := 0
		for _, v := range want.Pix {
			if v > 0 {
				on++
			}
		}
		if on == 0 {
			t.Errorf("%s: empty reference mask", tc.golden)
		}
	}
	// The encoder's output reaches the decoder: a black image has zero
	// embeddings, which the synthetic decoder turns into an empty mask.
	black := image.NewNRGBA(img.Rect)
	masks, _, err := p.Masks(context.Background(), black, Extras{SAMPrompt: []Mark{{Type: "point", Data: []float64{100, 90}, Label: label(1)}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range masks[0].Pix {
		if v != 0 {
			t.Fatal("black image: mask not empty")
		}
	}
	if _, _, err := p.Masks(context.Background(), img, Extras{}); !errors.Is(err, ErrBadParameter) {
		t.Errorf("no prompt: error %v, want ErrBadParameter", err)
	}
	if _, _, err := p.Masks(context.Background(), img, Extras{SAMPrompt: tcPrompt(), SAMModel: "sam_vit_h_4b8939"}); !errors.Is(err, ErrBadParameter) {
		t.Errorf("sam_model vit_h: error %v, want ErrBadParameter", err)
	}
}

func tcPrompt() []Mark {
	one := 1
	return []Mark{{Type: "point", Data: []float64{1, 1}, Label: &one}}
}

func TestRefusedAndUnknownModels(t *testing.T) {
	reg := NewRegistry(loadRegistry(t, synthConfig))
	if _, err := reg.Get("withoutbg"); !errors.Is(err, ErrRefusedModel) {
		t.Errorf("withoutbg: %v, want ErrRefusedModel", err)
	}
	if _, err := reg.Get("sam-decoder"); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("sam-decoder is not a matting model: %v", err)
	}
	if _, err := reg.Get("nope"); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("nope: %v", err)
	}
}

func TestParseSpec(t *testing.T) {
	s, err := ParseSpec(map[string]string{"norm": "rembg-ben", "size": "1024", "sigmoid": "true"})
	if err != nil || s.Size != 1024 || !s.Sigmoid || s.Norm != preprocess.NormRembgBEN {
		t.Errorf("ParseSpec: %+v, %v", s, err)
	}
	for _, bad := range []map[string]string{{"norm": "x"}, {"size": "-1"}, {"sigmoid": "maybe"}, {"sise": "1024"}} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%v): no error", bad)
		}
	}
}

// rembgSessions are the model names rembg's sessions register
// (rembg/sessions/__init__.py), plus ben2-base, which rembg's README lists.
var rembgSessions = []string{
	"birefnet-general", "birefnet-general-lite", "birefnet-portrait", "birefnet-dis", "birefnet-hrsod",
	"birefnet-cod", "birefnet-massive", "isnet-anime", "dis_custom", "isnet-general-use", "sam", "silueta",
	"u2net_cloth_seg", "u2net_custom", "u2net_human_seg", "u2net", "u2netp", "bria-rmbg", "ben_custom", "ben2-base",
}

// TestEveryRembgNameIsConfigured: the embedded configuration knows every
// rembg model name (a missing file makes it unavailable, never unknown),
// and the one it cannot serve is refused with the reason.
func TestEveryRembgNameIsConfigured(t *testing.T) {
	cfg, err := models.DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(models.NewRegistry(cfg, models.Options{ModelsDir: t.TempDir()}))
	for _, name := range rembgSessions {
		if _, err := reg.Get(name); !errors.Is(err, models.ErrNotReady) {
			t.Errorf("%s: %v, want a configured model that is not ready (no file)", name, err)
		}
	}
	if _, err := reg.Get("withoutbg"); !errors.Is(err, ErrRefusedModel) {
		t.Errorf("withoutbg: %v, want ErrRefusedModel", err)
	}
}
