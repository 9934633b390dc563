package clip

import (
	"encoding/json"
	"fmt"
	"image"
	"io/fs"

	"github.com/imgserve/imgserve/preprocess"
)

// ImageConfig is the vision tower's preprocessing: resize so the shortest
// edge is Size, centre-crop Size x Size, then normalise.
type ImageConfig struct {
	Size   int
	Filter preprocess.Filter
	Norm   preprocess.Norm
}

// hfImageConfig is the part of a Hugging Face CLIPImageProcessor's
// preprocessor_config.json that the pipeline implements.
type hfImageConfig struct {
	DoResize     bool `json:"do_resize"`
	DoCenterCrop bool `json:"do_center_crop"`
	Size         struct {
		ShortestEdge int `json:"shortest_edge"`
	} `json:"size"`
	CropSize struct {
		Height int `json:"height"`
		Width  int `json:"width"`
	} `json:"crop_size"`
	preprocess.HFImageProcessor
}

// ParseImageConfig reads a preprocessor_config.json. Settings the pipeline
// does not implement (no centre crop, a crop other than the resize size,
// nearest-neighbour resampling) are refused rather than approximated.
func ParseImageConfig(data []byte) (ImageConfig, error) {
	var h hfImageConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return ImageConfig{}, fmt.Errorf("preprocessor config: %w", err)
	}
	size := h.Size.ShortestEdge
	switch {
	case !h.DoResize || !h.DoCenterCrop:
		return ImageConfig{}, fmt.Errorf("preprocessor config: want do_resize and do_center_crop")
	case size < 1 || size > 4096:
		return ImageConfig{}, fmt.Errorf("preprocessor config: size.shortest_edge %d out of range", size)
	case h.CropSize.Height != size || h.CropSize.Width != size:
		return ImageConfig{}, fmt.Errorf("preprocessor config: crop %dx%d differs from shortest edge %d",
			h.CropSize.Width, h.CropSize.Height, size)
	}
	f, norm, err := h.FilterAndNorm()
	if err != nil {
		return ImageConfig{}, fmt.Errorf("preprocessor config: %w", err)
	}
	return ImageConfig{Size: size, Filter: f, Norm: norm}, nil
}

// DefaultImageConfig is the embedded preprocessor_config.json of the export.
var DefaultImageConfig = func() ImageConfig {
	data, err := fs.ReadFile(Assets(), "preprocessor_config.json")
	if err != nil {
		panic(err)
	}
	c, err := ParseImageConfig(data)
	if err != nil {
		panic("clip: embedded " + err.Error())
	}
	return c
}()

// Values returns the floats of one image's pixel_values row.
func (c ImageConfig) Values() int { return 3 * c.Size * c.Size }

// PixelValues writes img's model input into dst (len Values(), planar CHW):
// the RGB channels resized and cropped, alpha dropped as PIL's
// convert("RGB") drops it, then rescaled and normalised.
func (c ImageConfig) PixelValues(dst []float32, img *image.NRGBA) error {
	sq := preprocess.ResizeShortestEdgeCenterCrop(img, c.Size, c.Filter)
	return preprocess.PackNCHW(dst, sq, c.Norm)
}
