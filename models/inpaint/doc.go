// Package inpaint is the LaMa inpainting pipeline (IOPaint's, on the
// Carve/LaMa-ONNX export): it erases what a mask covers, an object or a
// watermark, and fills the hole from its surroundings.
//
// A request goes through these stages:
//
//   - mask: binarised from an uploaded image (MaskFromImage) or drawn from
//     boxes (MaskFromBoxes), then dilated by Options.MaskDilation pixels;
//   - regions: the 8-connected components of the mask, as runs;
//   - plan: IOPaint's HD strategy turns the image and regions into crops,
//     each a window of the image at native size or scaled, without
//     distortion, into the model's fixed input;
//   - fit: each window is packed into the model's input, padded by
//     mirroring, with a hole that covers every masked pixel;
//   - runs: every crop goes to the model's scheduler as its own request, all
//     at once, so crops of one request and of concurrent requests batch;
//   - paste: each crop's result is scaled back up and written into the
//     image only at its regions' mask pixels, so every other pixel stays
//     bit-identical.
//
// The model call is a function (Runner.Infer), so the stages around it can
// be tested and benchmarked without a model. README.md says which paths have
// run on the real LaMa weights.
package inpaint
