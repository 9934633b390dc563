package inpaint

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Strategy is one of IOPaint's HD strategies: how an image larger than
// the model's input is brought to it.
type Strategy string

const (
	// StrategyCrop inpaints, when the image's longer side exceeds
	// CropTriggerSize, each connected masked region's bounding box expanded
	// by CropMargin; smaller images run whole.
	StrategyCrop Strategy = "crop"
	// StrategyResize scales the long side down to ResizeLimit when larger,
	// inpaints, and scales the result back up.
	StrategyResize Strategy = "resize"
	// StrategyOriginal runs the whole image.
	StrategyOriginal Strategy = "original"
)

// ParseStrategy reads IOPaint's values ("Crop", "Resize", "Original") in
// any case.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(strings.ToLower(strings.TrimSpace(s))); st {
	case StrategyCrop, StrategyResize, StrategyOriginal:
		return st, nil
	}
	return "", badInput("hd_strategy %q is not one of Crop, Resize, Original", s)
}

// Options are one request's settings. The HD-strategy fields carry
// IOPaint's names and defaults (its InpaintRequest schema).
type Options struct {
	Strategy Strategy
	// CropMargin is IOPaint's hd_strategy_crop_margin: context pixels kept
	// around each region's bounding box.
	CropMargin int
	// CropTriggerSize is hd_strategy_crop_trigger_size: images whose longer
	// side is at most this run whole under StrategyCrop.
	CropTriggerSize int
	// ResizeLimit is hd_strategy_resize_limit.
	ResizeLimit int
	// MaskDilation grows the mask by this many pixels (a square
	// neighbourhood) so that a watermark's anti-aliased edge goes too.
	MaskDilation int
	// MaxCrops bounds the model runs of one request under StrategyCrop. A
	// mask of many small specks would otherwise cost one run each; past the
	// bound, crops whose boxes overlap merge, and if that is not enough,
	// every region goes into one crop.
	MaxCrops int
}

// Defaults.
const (
	DefaultCropMargin      = 128  // IOPaint
	DefaultCropTriggerSize = 800  // IOPaint
	DefaultResizeLimit     = 1280 // IOPaint
	DefaultMaskDilation    = 4
	DefaultMaxCrops        = 16
)

// Bounds on client-supplied values, so a request cannot ask for absurd work.
const (
	maxMargin    = 4096
	maxTrigger   = 1 << 16
	minLimit     = 32
	maxLimit     = 1 << 16
	maxDilation  = 128
	maxMaxCrops  = 256
	maxRegionsIn = 4096 // beyond this, merging pairwise costs too much: one crop
)

// DefaultOptions are IOPaint's defaults plus imgserve's mask dilation.
func DefaultOptions() Options {
	return Options{
		Strategy:        StrategyCrop,
		CropMargin:      DefaultCropMargin,
		CropTriggerSize: DefaultCropTriggerSize,
		ResizeLimit:     DefaultResizeLimit,
		MaskDilation:    DefaultMaskDilation,
		MaxCrops:        DefaultMaxCrops,
	}
}

// Validate reports values out of range as an *InputError.
func (o Options) Validate() error {
	if _, err := ParseStrategy(string(o.Strategy)); err != nil {
		return err
	}
	check := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return badInput("%s is %d; it must be between %d and %d", name, v, lo, hi)
		}
		return nil
	}
	for _, err := range []error{
		check("hd_strategy_crop_margin", o.CropMargin, 0, maxMargin),
		check("hd_strategy_crop_trigger_size", o.CropTriggerSize, 0, maxTrigger),
		check("hd_strategy_resize_limit", o.ResizeLimit, minLimit, maxLimit),
		check("mask_dilation", o.MaskDilation, 0, maxDilation),
		check("max_crops", o.MaxCrops, 1, maxMaxCrops),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// RequestParams name the options a request may set, with IOPaint's field
// names where IOPaint has one. MaxCrops protects the server, so only the
// model's configuration sets it ("max_crops").
var RequestParams = []string{
	"hd_strategy", "hd_strategy_crop_margin", "hd_strategy_crop_trigger_size",
	"hd_strategy_resize_limit", "mask_dilation",
}

// Set sets the option a request field or model option names from its text,
// and reports false for a name that is not an option. Numbers may be
// written as integers or integral decimals ("128", "128.0").
func (o *Options) Set(name, value string) (bool, error) {
	var dst *int
	switch name {
	case "hd_strategy":
		st, err := ParseStrategy(value)
		o.Strategy = st
		return true, err
	case "hd_strategy_crop_margin":
		dst = &o.CropMargin
	case "hd_strategy_crop_trigger_size":
		dst = &o.CropTriggerSize
	case "hd_strategy_resize_limit":
		dst = &o.ResizeLimit
	case "mask_dilation":
		dst = &o.MaskDilation
	case "max_crops":
		dst = &o.MaxCrops
	default:
		return false, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	if err != nil || v != math.Trunc(v) || math.Abs(v) > 1<<30 {
		return true, badInput("%s must be a whole number, not %q", name, value)
	}
	*dst = int(v)
	return true, nil
}

// InputError is a client mistake: a bad mask, box or option. The HTTP layer
// answers it with 400 and its message.
type InputError struct{ msg string }

func (e *InputError) Error() string { return e.msg }

func badInput(format string, args ...any) error {
	return &InputError{msg: fmt.Sprintf(format, args...)}
}
