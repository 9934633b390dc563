//go:build !libdeflate

package preprocess

import "image"

// nativePNG: this build decodes PNG with image/png; build with -tags
// libdeflate (the Makefile does when libdeflate-dev is installed) for the
// faster path.
const nativePNG = false

func pngDecoderName() string { return "Go image/png" }

func decodePNGNative([]byte, int, int) (*image.NRGBA, bool, error) {
	return nil, false, errNativeUnsupported
}
