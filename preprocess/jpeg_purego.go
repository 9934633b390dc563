//go:build !libjpeg

package preprocess

import "image"

// nativeJPEG: this build decodes JPEG with image/jpeg and reproduces
// libjpeg's colour conversion (ycbcr.go); build with -tags libjpeg (the
// Makefile does when libjpeg62-turbo-dev is installed) for libjpeg-turbo.
const nativeJPEG = false

// JPEGDecoder names the JPEG decoder this binary was built with.
func JPEGDecoder() string {
	return "Go image/jpeg with libjpeg's colour conversion (pure-Go fallback: install libjpeg62-turbo-dev and build with -tags libjpeg for libjpeg-turbo)"
}

func decodeJPEGNative([]byte, int, int, int) (*image.NRGBA, error) {
	return nil, errNativeUnsupported
}
