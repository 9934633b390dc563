package clip

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/preprocess"
)

// The embedded preprocessor_config.json is CLIP's: 224, bicubic, x/255,
// OpenAI's mean and std.
func TestDefaultImageConfig(t *testing.T) {
	c := DefaultImageConfig
	if c.Size != 224 || c.Filter != preprocess.Bicubic || c.Norm != preprocess.NormCLIP {
		t.Fatalf("got %+v, want 224 bicubic %+v", c, preprocess.NormCLIP)
	}
}

type pixelGolden struct {
	Images []struct {
		File        string       `json:"file"`
		ChannelSums [3]float64   `json:"channel_sums"`
		Samples     [][4]float64 `json:"samples"`
	} `json:"images"`
}

// PixelValues matches the CLIPImageProcessor reference computed with PIL and
// numpy by testdata/gen_pixel_golden.py, on a downscaled landscape with a
// translucent region and an upscaled portrait.
func TestPixelValuesMatchReference(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "pixel_golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g pixelGolden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Images) != 2 {
		t.Fatalf("golden has %d images", len(g.Images))
	}
	c := DefaultImageConfig
	for _, im := range g.Images {
		raw, err := os.ReadFile(filepath.Join("testdata", im.File))
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := preprocess.Decode(raw, preprocess.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		pv := make([]float32, c.Values())
		if err := c.PixelValues(pv, img); err != nil {
			t.Fatal(err)
		}
		plane := c.Size * c.Size
		for ch := range 3 {
			var sum float64
			for _, v := range pv[ch*plane : (ch+1)*plane] {
				sum += float64(v)
			}
			if math.Abs(sum-im.ChannelSums[ch]) > 1e-6*float64(plane) {
				t.Errorf("%s channel %d: sum %.6f, reference %.6f", im.File, ch, sum, im.ChannelSums[ch])
			}
		}
		if len(im.Samples) < 200 {
			t.Fatalf("%s: only %d samples", im.File, len(im.Samples))
		}
		for _, s := range im.Samples {
			ch, y, x := int(s[0]), int(s[1]), int(s[2])
			if got := pv[ch*plane+y*c.Size+x]; got != float32(s[3]) {
				t.Errorf("%s [%d,%d,%d] = %v, reference %v", im.File, ch, y, x, got, float32(s[3]))
			}
		}
	}
}

func TestParseImageConfigRejects(t *testing.T) {
	base := map[string]any{
		"do_resize": true, "do_center_crop": true, "do_rescale": true, "do_normalize": true,
		"size": map[string]int{"shortest_edge": 224}, "crop_size": map[string]int{"height": 224, "width": 224},
		"resample": 3, "rescale_factor": 1.0 / 255,
		"image_mean": []float64{0.5, 0.5, 0.5}, "image_std": []float64{0.5, 0.5, 0.5},
	}
	cases := map[string]func(m map[string]any){
		"crop":        func(m map[string]any) { m["do_center_crop"] = false },
		"differs":     func(m map[string]any) { m["crop_size"] = map[string]int{"height": 224, "width": 200} },
		"resample":    func(m map[string]any) { m["resample"] = 0 },
		"shortest":    func(m map[string]any) { m["size"] = map[string]int{"height": 224} },
		"image_std":   func(m map[string]any) { m["image_std"] = []float64{0.5, 0, 0.5} },
		"image_mean":  func(m map[string]any) { m["image_mean"] = []float64{0.5} },
		"rescale":     func(m map[string]any) { m["rescale_factor"] = 0 },
		"not json":    nil,
		"do_resize":   func(m map[string]any) { m["do_resize"] = false },
		"crop_size 0": func(m map[string]any) { m["crop_size"] = map[string]int{} },
	}
	for name, edit := range cases {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		data := []byte("{")
		if edit != nil {
			edit(m)
			data, _ = json.Marshal(m)
		}
		if _, err := ParseImageConfig(data); err == nil || !strings.Contains(err.Error(), "preprocessor config") {
			t.Errorf("%s: got %v", name, err)
		}
	}
	data, _ := json.Marshal(base)
	c, err := ParseImageConfig(data)
	if err != nil || c.Norm != preprocess.NormHalf || c.Size != 224 {
		t.Errorf("base config: %+v, %v", c, err)
	}
}
