package preprocess

import "errors"

// Sentinel errors. Functions wrap them with context, so test with errors.Is.
// The HTTP layer owns the mapping; the suggested status is noted on each.
var (
	// ErrEmpty: the request carried no image bytes (400).
	ErrEmpty = errors.New("preprocess: empty image")
	// ErrUnsupportedFormat: the bytes are not one of the decodable formats, or
	// use a feature the decoder lacks, such as arithmetic-coded JPEG or
	// animated WebP (415).
	ErrUnsupportedFormat = errors.New("preprocess: unsupported image format")
	// ErrTooLarge: the header declares more pixels or a longer side than the
	// Limits allow. Raised before any pixel memory is allocated (413 or 422).
	ErrTooLarge = errors.New("preprocess: image too large")
	// ErrCorrupt: the format was recognised but the data is invalid or
	// truncated (422). The decoder's own error is wrapped too, so
	// errors.Is(err, io.ErrUnexpectedEOF) also reports truncation.
	ErrCorrupt = errors.New("preprocess: corrupt or truncated image")
	// ErrInvalidColor: ParseColor could not parse its input (400).
	ErrInvalidColor = errors.New("preprocess: invalid colour")
	// ErrSize: a caller passed buffers or images whose sizes do not fit
	// together. It signals a bug in the caller, not bad user input (500).
	ErrSize = errors.New("preprocess: size mismatch")
)
