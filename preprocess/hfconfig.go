package preprocess

import (
	"errors"
	"fmt"
)

// HFImageProcessor is what every Hugging Face image processor's
// preprocessor_config.json says the same way: the PIL resampling filter,
// the rescale and the normalisation. Model packages embed it in their own
// struct for the resize and crop settings, which differ by processor.
type HFImageProcessor struct {
	DoRescale     bool      `json:"do_rescale"`
	DoNormalize   bool      `json:"do_normalize"`
	Resample      int       `json:"resample"`
	RescaleFactor float64   `json:"rescale_factor"`
	ImageMean     []float64 `json:"image_mean"`
	ImageStd      []float64 `json:"image_std"`
}

// pilFilters maps PIL's resampling constants, as the configs store them,
// to the filters implemented here (not NEAREST, BOX or HAMMING).
var pilFilters = map[int]Filter{1: Lanczos3, 2: Bilinear, 3: Bicubic}

// FilterAndNorm returns the filter and the normalisation the config asks
// for, refusing what is not implemented rather than approximating it.
func (h HFImageProcessor) FilterAndNorm() (Filter, Norm, error) {
	f, ok := pilFilters[h.Resample]
	if !ok {
		return 0, Norm{}, fmt.Errorf("unsupported resample %d", h.Resample)
	}
	n := Norm{Scale: 1, Std: [3]float64{1, 1, 1}}
	if h.DoRescale {
		if h.RescaleFactor <= 0 {
			return 0, Norm{}, fmt.Errorf("rescale_factor %v", h.RescaleFactor)
		}
		n.Scale = h.RescaleFactor
	}
	if h.DoNormalize {
		if len(h.ImageMean) != 3 || len(h.ImageStd) != 3 {
			return 0, Norm{}, errors.New("want 3 image_mean and 3 image_std values")
		}
		for i := range 3 {
			if h.ImageStd[i] <= 0 {
				return 0, Norm{}, fmt.Errorf("image_std %v", h.ImageStd)
			}
			n.Mean[i], n.Std[i] = h.ImageMean[i], h.ImageStd[i]
		}
	}
	return f, n, nil
}
