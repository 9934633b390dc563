// Package preprocess turns uploaded image bytes into model tensors and model
// outputs back into images, mirroring the reference Python pipelines (rembg,
// PIL, OpenCV, Hugging Face image processors) closely enough that results can
// be compared pixel for pixel.
//
// The stages are:
//
//   - Decode: sniff the format from the bytes, refuse oversized images from
//     the header alone, decode JPEG, PNG, GIF (first frame), BMP or WebP,
//     apply the EXIF orientation and return a non-premultiplied *image.NRGBA.
//     JPEG and WebP colour conversion reproduce libjpeg-turbo's and libwebp's
//     fancy chroma upsampling, which is what PIL returns.
//   - Resize: a port of Pillow's resampler (Lanczos, bicubic, bilinear), so a
//     320x320 model input matches PIL's img.convert("RGB").resize(...).
//   - Pack: HWC uint8 to NCHW float32 with per-channel normalisation, into a
//     caller-owned slice so batch buffers can be pooled.
//   - Masks: prediction plane to 8-bit mask (rembg), rembg's post_process
//     (OpenCV morphology and bit-exact Gaussian blur), threshold.
//   - Composite: rembg's naive_cutout and apply_background_color with PIL's
//     integer blending, and the subject bounding box.
//   - Encode: PNG and JPEG with no metadata at all.
//
// The package never touches the disk, never logs, never starts goroutines,
// and does not depend on ONNX Runtime or any other imgserve package. Errors
// from Decode wrap the sentinel errors in errors.go so the HTTP layer can map
// them to status codes with errors.Is.
package preprocess
