// Package matte is rembg's alpha matting (rembg/bg.py alpha_matting_cutout):
// a trimap from a salient-object mask, closed-form alpha matting (Levin,
// Lischinski and Weiss, "A Closed-Form Solution to Natural Image Matting",
// 2008) solved by conjugate gradients with a thresholded incomplete
// Cholesky preconditioner, and multilevel foreground estimation (Germer,
// Uelwer, Conrad and Harmeling, "Fast Multi-Level Foreground Estimation",
// 2020). Each step follows pymatting's published implementation
// (pymatting/pymatting, MIT licence: estimate_alpha_cf, cf_laplacian,
// ichol, cg, estimate_foreground_ml), which is what rembg calls, so that
// rembg's users get the cutouts they know.
//
// The work is far costlier than the model that made the mask: memory and
// time grow with the number of unknown pixels of the trimap and with the
// image size. Estimate tells a caller what a request will cost before it
// allocates anything, and every stage stops when its context is done.
//
// Like the rest of preprocess, the package never touches the disk and never
// logs.
package matte
