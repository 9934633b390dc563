// Package diffusion generates images with Stable Diffusion ONNX exports in
// the diffusers/optimum layout (SD-Turbo first; SD 1.5 and 2.x through the
// same code), behind an NSFW guard that every image passes before it is
// returned.
package diffusion
