package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image"
	"math"
	"mime/multipart"
	"strings"
	"sync"
	"testing"

	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/preprocess"
)

// The synthetic LaMa (internal/testmodels/README.md) answers 255 - input
// inside the mask and the input elsewhere, so every pixel of a result says
// where it came from.
const inpaintConfig = `
models:
  - name: lama
    file: lama_synth.onnx
    task: inpaint
    intra_op_threads: 1
  - name: lama-missing
    file: lama_fp32.onnx
    task: inpaint
  - name: affine
    file: affine_f32.onnx
`

// clothBoxes are two separate rectangles on cloth-1.jpg (739x1134).
var clothBoxes = [][4]int{{100, 150, 120, 80}, {450, 800, 150, 100}}

// boxesMask draws boxes white on black, grown by grow pixels and clipped.
func boxesMask(w, h int, boxes [][4]int, grow int) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for _, b := range boxes {
		r := image.Rect(b[0]-grow, b[1]-grow, b[0]+b[2]+grow, b[1]+b[3]+grow).Intersect(m.Rect)
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				m.Pix[m.PixOffset(x, y)] = 255
			}
		}
	}
	return m
}

// inpaintForm is a multipart body with files image and mask (either may be
// nil) and plain fields.
func inpaintForm(t testing.TB, img, mask []byte, fields map[string]string) ([]byte, map[string]string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for name, data := range map[string][]byte{"image": img, "mask": mask} {
		if data == nil {
			continue
		}
		fw, err := w.CreateFormFile(name, name+".png")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	for k, v := range fields {
		w.WriteField(k, v)
	}
	w.Close()
	return b.Bytes(), map[string]string{"Content-Type": w.FormDataContentType()}
}

func jsonBody(t testing.TB, v any) ([]byte, map[string]string) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b, map[string]string{"Content-Type": "application/json"}
}

func decodeNRGBA(t testing.TB, data []byte) *image.NRGBA {
	t.Helper()
	img, _, err := preprocess.Decode(data, preprocess.Limits{})
	if err != nil {
		t.Fatalf("response is not an image: %v (%.200q)", err, data)
	}
	return img
}

func postOK(t testing.TB, url string, body []byte, header map[string]string) []byte {
	t.Helper()
	code, h, out := do(t, "POST", url, header, body)
	if code != 200 {
		t.Fatalf("POST %s: %d %s", url, code, out)
	}
	if ct := h.Get("Content-Type"); ct != "image/png" {
		t.Fatalf("POST %s: Content-Type %s", url, ct)
	}
	if !strings.Contains(h.Get("Server-Timing"), "inference;dur=") {
		t.Errorf("POST %s: no Server-Timing", url)
	}
	return out
}

// TestInpaintChangesOnlyMaskedPixels is acceptance point 1: a real photo
// with two separate rectangles, under each HD strategy.
func TestInpaintChangesOnlyMaskedPixels(t *testing.T) {
	srv := startServer(t, inpaintConfig, testmodels.Dir())
	photo := rembgTestdata(t, "cloth-1.jpg")
	in := decodeNRGBA(t, photo)
	w, h := in.Rect.Dx(), in.Rect.Dy()
	mask := encodePNG(t, boxesMask(w, h, clothBoxes, 0))
	filled := boxesMask(w, h, clothBoxes, 4) // the default dilation
	for _, strategy := range []string{"Crop", "Resize", "Original"} {
		t.Run(strategy, func(t *testing.T) {
			body, hdr := inpaintForm(t, photo, mask, map[string]string{"hd_strategy": strategy})
			out := decodeNRGBA(t, postOK(t, srv.URL+"/v1/inpaint", body, hdr))
			if out.Rect != in.Rect {
				t.Fatalf("output is %v, input %v", out.Rect, in.Rect)
			}
			var inside, same, errModel, errInput float64
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					o := in.PixOffset(x, y)
					a, b := in.Pix[o:o+4], out.Pix[o:o+4]
					if filled.Pix[filled.PixOffset(x, y)] == 0 {
						if !bytes.Equal(a, b) {
							t.Fatalf("(%d,%d) outside the mask changed: %v -> %v", x, y, a, b)
						}
						continue
					}
					inside++
					if bytes.Equal(a[:3], b[:3]) {
						same++
					}
					for c := range 3 {
						errModel += math.Abs(float64(b[c]) - float64(255-a[c]))
						errInput += math.Abs(float64(b[c]) - float64(a[c]))
					}
				}
			}
			errModel, errInput = errModel/inside/3, errInput/inside/3
			t.Logf("%s: %.0f pixels inside; mean distance to the model's answer %.2f, to the input %.2f; %.0f unchanged",
				strategy, inside, errModel, errInput, same)
			if strategy == "Crop" && errModel != 0 {
				// Both regions run at native size: the model's answer, exactly.
				t.Errorf("crop: inside the mask the output is %.2f from the model's answer on average", errModel)
			}
			if errModel > 0.25*errInput || same > inside/100 {
				t.Errorf("inside the mask the output is not the model's: mean distance %.2f to it, %.2f to the input, %.0f of %.0f pixels unchanged",
					errModel, errInput, same, inside)
			}
		})
	}
}

const inpaintBatchConfig = `
models:
  - name: lama
    file: lama_synth_dyn.onnx
    task: inpaint
    intra_op_threads: 1
    batching: {max_batch_size: 2, max_queue_delay: 1s}
`

// TestInpaintCropsShareABatch is acceptance point 2: the crops of one
// request, and of two concurrent requests, run as one batch of two.
func TestInpaintCropsShareABatch(t *testing.T) {
	srv := startServer(t, inpaintBatchConfig, testmodels.Dir())
	photo := rembgTestdata(t, "cloth-1.jpg")
	batches := func() (count, rows float64) {
		_, _, m := do(t, "GET", srv.URL+"/metrics", nil, nil)
		return metricValue(t, m, `imgserve_inference_batch_size_count{model="lama"}`),
			metricValue(t, m, `imgserve_inference_batch_size_sum{model="lama"}`)
	}
	one := encodePNG(t, boxesMask(739, 1134, clothBoxes[:1], 0))
	// The first request also detects the model's output range.
	body, hdr := inpaintForm(t, photo, one, nil)
	postOK(t, srv.URL+"/v1/inpaint", body, hdr)

	c0, r0 := batches()
	body, hdr = inpaintForm(t, photo, encodePNG(t, boxesMask(739, 1134, clothBoxes, 0)), nil)
	postOK(t, srv.URL+"/v1/inpaint", body, hdr)
	c1, r1 := batches()
	if c1-c0 != 1 || r1-r0 != 2 {
		t.Errorf("one request with two regions ran %v rows in %v batches, want one batch of two", r1-r0, c1-c0)
	}

	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, hdr := inpaintForm(t, photo, one, nil)
			if code, _, out := do(t, "POST", srv.URL+"/v1/inpaint", hdr, body); code != 200 {
				t.Errorf("%d %s", code, out)
			}
		}()
	}
	wg.Wait()
	c2, r2 := batches()
	if c2-c1 != 1 || r2-r1 != 2 {
		t.Errorf("two concurrent requests ran %v rows in %v batches, want one batch of two", r2-r1, c2-c1)
	}
}

// TestInpaintRejectsMalformedInput is acceptance point 3's first half.
func TestInpaintRejectsMalformedInput(t *testing.T) {
	srv := startServer(t, inpaintConfig, testmodels.Dir())
	photo := rembgTestdata(t, "cloth-1.jpg")
	mask := encodePNG(t, boxesMask(739, 1134, clothBoxes, 0))
	smallMask := encodePNG(t, boxesMask(700, 1134, clothBoxes, 0))
	emptyMask := encodePNG(t, image.NewGray(image.Rect(0, 0, 739, 1134)))
	b64 := base64.StdEncoding.EncodeToString
	form := func(img, mask []byte, fields map[string]string) func() ([]byte, map[string]string) {
		return func() ([]byte, map[string]string) { return inpaintForm(t, img, mask, fields) }
	}
	js := func(v map[string]any) func() ([]byte, map[string]string) {
		return func() ([]byte, map[string]string) { return jsonBody(t, v) }
	}
	cases := []struct {
		name, path string
		body       func() ([]byte, map[string]string)
		status     int
		says       string
	}{
		{"mask of another size", "/v1/inpaint", form(photo, smallMask, nil), 400, "mask is 700x1134 but the image is 739x1134"},
		{"mask of another size, JSON", "/api/v1/inpaint", js(map[string]any{"image": b64(photo), "mask": b64(smallMask)}), 400, "same size"},
		{"empty mask", "/v1/inpaint", form(photo, emptyMask, nil), 400, "mask is empty"},
		{"missing mask", "/v1/inpaint", form(photo, nil, nil), 400, `missing field "mask"`},
		{"missing image", "/v1/inpaint", form(nil, mask, nil), 400, `missing form field "image"`},
		{"missing image, JSON", "/v1/inpaint", js(map[string]any{"mask": b64(mask)}), 400, `missing field "image"`},
		{"missing mask, JSON", "/api/v1/inpaint", js(map[string]any{"image": b64(photo)}), 400, `missing field "mask"`},
		{"bad base64", "/v1/inpaint", js(map[string]any{"image": "not base64!", "mask": b64(mask)}), 400, "base64"},
		{"image not a string", "/v1/inpaint", js(map[string]any{"image": 5, "mask": b64(mask)}), 400, "image must be a base64 string"},
		{"malformed JSON", "/v1/inpaint", func() ([]byte, map[string]string) {
			return []byte(`{"image": `), map[string]string{"Content-Type": "application/json"}
		}, 400, "malformed JSON"},
		{"unknown strategy", "/v1/inpaint", form(photo, mask, map[string]string{"hd_strategy": "Tile"}), 400, "Crop, Resize, Original"},
		{"bad margin", "/v1/inpaint", form(photo, mask, map[string]string{"hd_strategy_crop_margin": "wide"}), 400, "whole number"},
		{"margin out of range", "/v1/inpaint", js(map[string]any{"image": b64(photo), "mask": b64(mask), "hd_strategy_crop_margin": -5}), 400, "between"},
		{"bad format", "/v1/inpaint", form(photo, mask, map[string]string{"format": "gif"}), 400, "png or jpeg"},
		{"undecodable mask", "/v1/inpaint", form(photo, []byte("\x89PNG\r\n\x1a\nbroken"), nil), 422, "mask: "},
		{"unknown model", "/v1/inpaint", form(photo, mask, map[string]string{"model": "nope"}), 404, "inpaint models: lama, lama-missing"},
		{"not an inpaint model", "/v1/inpaint", form(photo, mask, map[string]string{"model": "affine"}), 404, "unknown inpaint model"},
		{"model not fetched", "/v1/inpaint", form(photo, mask, map[string]string{"model": "lama-missing"}), 503, "scripts/fetch-models.sh"},
		{"boxes outside the image", "/v1/remove-watermark", form(photo, nil, map[string]string{"boxes": "[[700, 10, 100, 20]]"}), 400, "outside the 739x1134 image"},
		{"negative box", "/v1/remove-watermark", js(map[string]any{"image": b64(photo), "boxes": [][4]float64{{-1, 0, 10, 10}}}), 400, "outside"},
		{"zero-sized box", "/v1/remove-watermark", form(photo, nil, map[string]string{"boxes": "[[10, 10, 0, 20]]"}), 400, "positive"},
		{"malformed boxes", "/v1/remove-watermark", form(photo, nil, map[string]string{"boxes": "10,10,20,20"}), 400, "JSON list of [x, y, w, h]"},
		{"boxes of three numbers", "/v1/remove-watermark", form(photo, nil, map[string]string{"boxes": "[[10,10,20]]"}), 400, "JSON list of [x, y, w, h]"},
		{"empty boxes", "/v1/remove-watermark", js(map[string]any{"image": b64(photo), "boxes": []any{}}), 400, "boxes is empty"},
		{"neither mask nor boxes", "/v1/remove-watermark", form(photo, nil, nil), 400, `either a "mask" image or "boxes"`},
		{"both mask and boxes", "/v1/remove-watermark", form(photo, mask, map[string]string{"boxes": "[[1,1,2,2]]"}), 400, "not both"},
		{"missing image, watermark", "/v1/remove-watermark", js(map[string]any{"boxes": [][4]int{{1, 1, 2, 2}}}), 400, `missing field "image"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body, hdr := c.body()
			code, h, out := do(t, "POST", srv.URL+c.path, hdr, body)
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if code != c.status || h.Get("Content-Type") != "application/json" || json.Unmarshal(out, &e) != nil || !strings.Contains(e.Error.Message, c.says) {
				t.Fatalf("got %d %s, want %d with a message saying %q", code, out, c.status, c.says)
			}
			t.Logf("%d %s", code, e.Error.Message)
		})
	}
	// The server still serves after all that.
	body, hdr := inpaintForm(t, photo, mask, nil)
	postOK(t, srv.URL+"/v1/inpaint", body, hdr)
}

// TestInpaintJSONAndMultipartAgree is acceptance point 3's second half: an
// IOPaint request (its JSON, with data URLs and the settings it sends
// along) on both routes gives the same image as a multipart request.
func TestInpaintJSONAndMultipartAgree(t *testing.T) {
	srv := startServer(t, inpaintConfig, testmodels.Dir())
	photo := rembgTestdata(t, "cloth-1.jpg")
	mask := encodePNG(t, boxesMask(739, 1134, clothBoxes, 0))
	// Non-default settings (a margin that makes the crops scaled), in lower
	// case in the form and with IOPaint's capitals in the JSON.
	body, hdr := inpaintForm(t, photo, mask, map[string]string{
		"hd_strategy": "crop", "hd_strategy_crop_margin": "600", "hd_strategy_crop_trigger_size": "600"})
	multi := postOK(t, srv.URL+"/v1/inpaint", body, hdr)
	body, hdr = jsonBody(t, map[string]any{
		"image":                         "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(photo),
		"mask":                          "data:image/png;base64," + base64.StdEncoding.EncodeToString(mask),
		"hd_strategy":                   "Crop",
		"hd_strategy_crop_margin":       600,
		"hd_strategy_crop_trigger_size": 600,
		"hd_strategy_resize_limit":      2048,
		// Settings of IOPaint's other models, which its clients always send.
		"ldm_steps": 20, "sd_seed": 42, "sd_keep_unmasked_area": true, "prompt": "", "paint_by_example_example_image": nil,
	})
	for _, path := range []string{"/api/v1/inpaint", "/v1/inpaint"} {
		if got := postOK(t, srv.URL+path, body, hdr); !bytes.Equal(got, multi) {
			t.Errorf("JSON on %s and multipart on /v1/inpaint give different images", path)
		}
	}
	body, hdr = inpaintForm(t, photo, mask, nil)
	defaults := postOK(t, srv.URL+"/v1/inpaint", body, hdr)
	if bytes.Equal(defaults, multi) {
		t.Error("the settings made no difference: the test shows nothing")
	}
	// Plain base64 without a data URL prefix and with Python's line breaks.
	enc := base64.StdEncoding.EncodeToString(photo)
	var wrapped strings.Builder
	for i := 0; i < len(enc); i += 76 {
		wrapped.WriteString(enc[i:min(len(enc), i+76)] + "\n")
	}
	body, hdr = jsonBody(t, map[string]any{"image": wrapped.String(), "mask": base64.StdEncoding.EncodeToString(mask)})
	if !bytes.Equal(postOK(t, srv.URL+"/api/v1/inpaint", body, hdr), defaults) {
		t.Error("plain base64 and multipart give different images")
	}
}

// TestRemoveWatermarkBoxesEqualAMask is acceptance point 4.
func TestRemoveWatermarkBoxesEqualAMask(t *testing.T) {
	srv := startServer(t, inpaintConfig, testmodels.Dir())
	photo := rembgTestdata(t, "cloth-1.jpg")
	mask := encodePNG(t, boxesMask(739, 1134, clothBoxes, 0))
	boxes, _ := json.Marshal(clothBoxes)

	body, hdr := inpaintForm(t, photo, mask, nil)
	want := postOK(t, srv.URL+"/v1/inpaint", body, hdr)
	requests := map[string]func() ([]byte, map[string]string){
		"multipart boxes": func() ([]byte, map[string]string) {
			return inpaintForm(t, photo, nil, map[string]string{"boxes": string(boxes)})
		},
		"JSON boxes": func() ([]byte, map[string]string) {
			return jsonBody(t, map[string]any{"image": base64.StdEncoding.EncodeToString(photo), "boxes": clothBoxes})
		},
		"multipart mask": func() ([]byte, map[string]string) { return inpaintForm(t, photo, mask, nil) },
	}
	for name, req := range requests {
		body, hdr := req()
		if got := postOK(t, srv.URL+"/v1/remove-watermark", body, hdr); !bytes.Equal(got, want) {
			t.Errorf("remove-watermark with %s differs from inpaint with the same mask", name)
		}
	}
	// The image as the raw body, the boxes in the query string.
	got := postOK(t, srv.URL+"/v1/remove-watermark?boxes="+strings.ReplaceAll(string(boxes), ",", "%2C"),
		photo, map[string]string{"Content-Type": "image/jpeg"})
	if !bytes.Equal(got, want) {
		t.Error("remove-watermark with a raw body and boxes in the query differs")
	}
}

// TestInpaintOutputCarriesNoMetadata: cloth-1.jpg has EXIF; neither output
// format carries it (or anything else) on.
func TestInpaintOutputCarriesNoMetadata(t *testing.T) {
	srv := startServer(t, inpaintConfig, testmodels.Dir())
	photo := rembgTestdata(t, "cloth-1.jpg")
	if !bytes.Contains(photo, []byte("Exif")) {
		t.Fatal("the test photo has no EXIF to lose")
	}
	mask := encodePNG(t, boxesMask(739, 1134, clothBoxes, 0))
	for _, format := range []string{"png", "jpeg"} {
		body, hdr := inpaintForm(t, photo, mask, map[string]string{"format": format})
		code, h, out := do(t, "POST", srv.URL+"/v1/remove-watermark", hdr, body)
		if code != 200 || h.Get("Content-Type") != "image/"+format {
			t.Fatalf("%s: %d %s %.100q", format, code, h.Get("Content-Type"), out)
		}
		img := decodeNRGBA(t, out)
		if img.Rect.Dx() != 739 || img.Rect.Dy() != 1134 {
			t.Errorf("%s: %v", format, img.Rect)
		}
		for _, marker := range []string{"Exif", "eXIf", "tEXt", "iTXt", "zTXt", "http://ns.adobe.com"} {
			if bytes.Contains(out, []byte(marker)) {
				t.Errorf("%s output carries %s", format, marker)
			}
		}
	}
}

// TestInpaintKeepsAlpha: the fill changes colour only; a transparent input
// stays transparent where it was.
func TestInpaintKeepsAlpha(t *testing.T) {
	srv := startServer(t, inpaintConfig, testmodels.Dir())
	in := image.NewNRGBA(image.Rect(0, 0, 300, 200))
	for i := 0; i < len(in.Pix); i += 4 {
		in.Pix[i], in.Pix[i+1], in.Pix[i+2], in.Pix[i+3] = 200, uint8(i/4%256), 40, uint8(i/4%3*100)
	}
	body, hdr := jsonBody(t, map[string]any{
		"image": base64.StdEncoding.EncodeToString(encodePNG(t, in)),
		"boxes": [][4]int{{10, 10, 50, 30}},
	})
	out := decodeNRGBA(t, postOK(t, srv.URL+"/v1/remove-watermark", body, hdr))
	filled := boxesMask(300, 200, [][4]int{{10, 10, 50, 30}}, 4)
	for i := 0; i < len(in.Pix); i += 4 {
		a, b := in.Pix[i:i+4], out.Pix[i:i+4]
		if filled.Pix[i/4] == 0 && !bytes.Equal(a, b) || b[3] != a[3] {
			t.Fatalf("pixel %d: %v -> %v", i/4, a, b)
		}
		if filled.Pix[i/4] != 0 && (b[0] != 255-a[0] || b[2] != 255-a[2]) {
			t.Fatalf("pixel %d inside: %v -> %v, want the colour inverted", i/4, a, b)
		}
	}
}

// TestInpaintKeepsNothing is the privacy check of the inpainting routes:
// images and masks carrying a marker, as multipart and as IOPaint's JSON,
// and a rejected parameter carrying it, leave no file in TMPDIR and no
// trace of the marker in the logs.
func TestInpaintKeepsNothing(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	srv := startServer(t, inpaintConfig, testmodels.Dir())
	photo := markedPNG(t, 64, 48)
	mask := append(encodePNG(t, boxesMask(64, 48, [][4]int{{10, 10, 20, 12}}, 0)), privacyMarker...)

	body, hdr := inpaintForm(t, photo, mask, map[string]string{"note": privacyMarker})
	postOK(t, srv.URL+"/v1/inpaint", body, hdr)
	body, hdr = jsonBody(t, map[string]any{
		"image": base64.StdEncoding.EncodeToString(photo),
		"mask":  base64.StdEncoding.EncodeToString(mask),
		"note":  privacyMarker,
	})
	postOK(t, srv.URL+"/api/v1/inpaint", body, hdr)
	body, hdr = inpaintForm(t, photo, nil, map[string]string{"boxes": `[[1, 2, 3, 4]]`, "note": privacyMarker})
	postOK(t, srv.URL+"/v1/remove-watermark", body, hdr)
	body, hdr = inpaintForm(t, photo, mask, map[string]string{"hd_strategy": privacyMarker})
	if code, _, _ := do(t, "POST", srv.URL+"/v1/inpaint", hdr, body); code != 400 {
		t.Fatalf("bad hd_strategy got %d", code)
	}

	if got := filesUnder(t, tmp); len(got) != 0 {
		t.Fatalf("requests left files in TMPDIR: %v", got)
	}
	logs := srv.Logs.String()
	if strings.Contains(logs, privacyMarker) {
		t.Fatalf("the server logged request content:\n%s", logs)
	}
	if !strings.Contains(logs, "route=/v1/remove-watermark") {
		t.Fatalf("expected request log lines, got:\n%s", logs)
	}
}
