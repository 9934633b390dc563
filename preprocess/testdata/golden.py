#!/usr/bin/env python3
"""Reference values for the preprocess tests, from the Python stack the
models were built on. Not run by the tests: the files it writes are checked
in, and the hashes it prints are pasted into the *_test.go files.

Produced with Debian 12 packages: python3-pil 9.4.0 (libjpeg-turbo 2.1.5,
libwebp 1.2.4), python3-opencv 4.6.0, python3-numpy 1.24, and cjpeg from
libjpeg-turbo-progs. Run from this directory:

    apt-get install python3-pil python3-opencv libjpeg-turbo-progs
    /usr/bin/python3 golden.py

Hashes are the first 16 hex digits of SHA-256 over the raw output bytes
(uint8 pixels row-major, or little-endian float32 tensors).
"""
import hashlib
import subprocess

import cv2
import numpy as np
from PIL import Image, ImageOps


def h(b):
    return hashlib.sha256(np.ascontiguousarray(b).tobytes()).hexdigest()[:16]


def pattern(w, hh, ch=3):
    """synthPix in resize_test.go."""
    y, x = np.mgrid[0:hh, 0:w]
    planes = [(x * 31 + y * 17 + c * 101 + ((x * y) % 13) * 7 + ((x // 5 + y // 3) % 2) * 90) % 256
              for c in range(ch)]
    return np.stack(planes, -1).astype(np.uint8)


# --- decode samples (testdata/*.webp, *.jpg, *.pil.rgba) --------------------
rng = np.random.default_rng(1)


def photo(w, hh, alpha=False):
    y, x = np.mgrid[0:hh, 0:w]
    r = x * 255 // max(w - 1, 1)
    g = y * 255 // max(hh - 1, 1)
    b = (x * 7 + y * 13) % 256
    a = np.stack([r, g, b], -1).astype(np.uint8)
    a[hh // 3:hh // 2, w // 4:w // 2] = rng.integers(0, 256, (hh // 2 - hh // 3, w // 2 - w // 4, 3))
    if alpha:
        return np.dstack([a, ((x + y) * 255 // (w + hh)).astype(np.uint8)])
    return a


def dump(fn):
    np.asarray(Image.open(fn).convert("RGBA")).tofile(fn.rsplit(".", 1)[0] + ".pil.rgba")


def decode_samples():
    a = photo(61, 37)
    Image.fromarray(a).save("lossy_61x37.webp", quality=80)
    Image.fromarray(photo(61, 37, True)).save("alpha_61x37.webp", quality=80)
    Image.fromarray(photo(20, 14, True)).save("lossless_20x14.webp", lossless=True)
    Image.fromarray(a).save("j420_61x37.jpg", quality=85, subsampling=2)
    Image.fromarray(a).save("j422_61x37.jpg", quality=85, subsampling=1)
    Image.fromarray(a).save("/tmp/golden.ppm")
    subprocess.run(["cjpeg", "-quality", "85", "-sample", "1x2", "-outfile", "j440_61x37.jpg", "/tmp/golden.ppm"], check=True)
    subprocess.run(["cjpeg", "-quality", "85", "-sample", "2x2", "-progressive", "-outfile", "j420p_61x37.jpg",
                    "/tmp/golden.ppm"], check=True)
    for fn in ["lossy_61x37.webp", "alpha_61x37.webp", "lossless_20x14.webp", "j420_61x37.jpg",
               "j422_61x37.jpg", "j440_61x37.jpg", "j420p_61x37.jpg"]:
        dump(fn)
    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(photo(8, 4)).save("exif6_8x4.webp", lossless=True, exif=ex.tobytes())
    assert ImageOps.exif_transpose(Image.open("exif6_8x4.webp")).size == (4, 8)
    f1, f2 = Image.fromarray(photo(8, 8)), Image.fromarray(255 - photo(8, 8))
    f1.save("anim.webp", save_all=True, append_images=[f2], duration=100, lossless=True)


# --- resize (resize_test.go) ------------------------------------------------
def resize_hashes():
    F = {"Lanczos3": Image.LANCZOS, "Bilinear": Image.BILINEAR, "Bicubic": Image.BICUBIC}
    for kind, sw, sh, w, hh, f in [
        ("rgb", 1152, 864, 320, 320, "Lanczos3"), ("rgb", 61, 37, 320, 320, "Lanczos3"),
        ("rgb", 97, 203, 17, 11, "Lanczos3"), ("rgb", 1152, 864, 1024, 1024, "Bilinear"),
        ("rgb", 300, 200, 37, 29, "Bilinear"), ("rgb", 640, 480, 298, 224, "Bicubic"),
        ("rgb", 50, 70, 224, 313, "Bicubic"), ("rgb", 33, 33, 33, 33, "Lanczos3"),
        ("rgb", 33, 40, 33, 20, "Lanczos3"), ("gray", 320, 320, 1152, 864, "Lanczos3"),
        ("gray", 320, 320, 480, 360, "Lanczos3"), ("gray", 320, 320, 100, 77, "Lanczos3"),
        ("gray", 29, 31, 5, 3, "Bicubic"), ("gray", 7, 5, 1, 1, "Lanczos3"), ("gray", 1, 1, 9, 4, "Lanczos3"),
    ]:
        a = pattern(sw, sh)
        im = Image.fromarray(a, "RGB") if kind == "rgb" else Image.fromarray(a[..., 0], "L")
        print("resize", kind, sw, sh, w, hh, f, h(np.asarray(im.resize((w, hh), F[f]))))


# --- tensors (pack_test.go) -------------------------------------------------
def rembg_normalize(img, mean, std, size):
    """rembg.sessions.base.BaseSession.normalize"""
    im = img.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    im_ary = np.array(im)
    im_ary = im_ary / max(np.max(im_ary), 1e-6)
    tmp = np.zeros((im_ary.shape[0], im_ary.shape[1], 3))
    for c in range(3):
        tmp[:, :, c] = (im_ary[:, :, c] - mean[c]) / std[c]
    return np.expand_dims(tmp.transpose((2, 0, 1)), 0).astype(np.float32)


def hf_clip(img, size, mean, std, scale=1 / 255):
    """transformers CLIPImageProcessor: shortest-edge resize, centre crop, rescale, normalize."""
    w, hh = img.size
    short, long = (w, hh) if w <= hh else (hh, w)
    nl = int(size * long / short)
    nw, nh = (size, nl) if w <= hh else (nl, size)
    a = np.array(img.resize((nw, nh), Image.Resampling.BICUBIC))
    top, left = (nh - size) // 2, (nw - size) // 2
    a = a[top:top + size, left:left + size]
    a = (a.astype(np.float64) * scale).astype(np.float32)
    a = (a - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return a.transpose(2, 0, 1)


def pack_hashes():
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    img = Image.fromarray(pattern(1152, 864))
    print("pack rembg", h(rembg_normalize(img, *imagenet, (320, 320)).astype("<f4")))
    dark = Image.fromarray((pattern(200, 150) // 3).astype(np.uint8))
    print("pack rembg dark", h(rembg_normalize(dark, *imagenet, (320, 320)).astype("<f4")))
    print("pack rembg black", h(rembg_normalize(Image.new("RGB", (10, 10)), *imagenet, (8, 8)).astype("<f4")))
    clip = hf_clip(Image.fromarray(pattern(640, 480)), 224, [0.48145466, 0.4578275, 0.40821073],
                   [0.26862954, 0.26130258, 0.27577711])
    print("pack clip", h(clip.astype("<f4")))
    a = np.array(img.resize((1024, 1024), Image.Resampling.BILINEAR)).astype(np.float32)
    print("pack imgly", h(((a - 128) / 256).transpose(2, 0, 1).astype("<f4")))


# --- masks (mask_test.go) ---------------------------------------------------
kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


def post_process(mask):
    """rembg.bg.post_process"""
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.GaussianBlur(mask, (5, 5), sigmaX=2, sigmaY=2, borderType=cv2.BORDER_DEFAULT)
    return np.where(mask < 127, 0, 255).astype(np.uint8)


def blob(w, hh):
    y, x = np.mgrid[0:hh, 0:w]
    d = (2 * x - w) ** 2 + (2 * y - hh) ** 2
    s = pattern(w, hh)[..., 0].astype(int)
    return np.where(d < min(w, hh) ** 2 // 2, 255 - s // 3, s // 2).astype(np.uint8)


def hi(w, hh):
    a = (200 + pattern(w, hh)[..., 0] % 56).astype(np.uint8)
    a[hh // 2:, :w // 2] //= 2
    return a


def mask_hashes():
    i = np.arange(320 * 320, dtype=np.int64)
    pred = (((i * 7919) % 1000).astype(np.float32) / np.float32(1000)).reshape(320, 320)
    ma, mi = np.max(pred), np.min(pred)
    pred = (pred - mi) / (ma - mi)
    m = Image.fromarray((pred * 255).astype("uint8"), mode="L")
    print("mask 320", h(np.asarray(m)))
    for ow, oh in [(480, 360), (1152, 864), (100, 77)]:
        print("mask", ow, oh, h(np.asarray(m.resize((ow, oh), Image.Resampling.LANCZOS))))
    for w, hh in [(64, 48), (301, 217)]:
        print("post pattern", w, hh, h(post_process(pattern(w, hh)[..., 0].copy())))
    for w, hh in [(64, 48), (301, 217), (2, 3)]:
        print("post blob", w, hh, h(post_process(blob(w, hh))))
    for w, hh in [(1, 1), (2, 3), (5, 4), (3, 7), (64, 48), (301, 217)]:
        print("post hi", w, hh, h(post_process(hi(w, hh))))
        print("blur", w, hh, h(cv2.GaussianBlur(pattern(w, hh)[..., 0].copy(), (5, 5), sigmaX=2, sigmaY=2)))


# --- compositing (composite_test.go) ----------------------------------------
def naive_cutout(img, mask):
    """rembg.bg.naive_cutout"""
    return Image.composite(img, Image.new("RGBA", img.size, 0), mask)


def apply_background_color(img, color):
    """rembg.bg.apply_background_color"""
    colored = Image.new("RGBA", img.size, color)
    colored.paste(img, mask=img)
    return colored


def composite_hashes():
    rgb = Image.fromarray(pattern(61, 37))
    m = pattern(61, 37, 4)[..., 3].copy()
    m[:, :5] = 0
    m[:3, :] = 0
    m[-2:, :] = 0
    m[:, -7:] = 0
    m[10:12, 10:20] = 255
    mask = Image.fromarray(m, "L")
    c = naive_cutout(rgb, mask)
    print("cutout rgb", h(np.asarray(c)), "bbox", c.getbbox())
    rgba = Image.fromarray(np.dstack([pattern(61, 37), pattern(61, 37, 5)[..., 4]]), "RGBA")
    c2 = naive_cutout(rgba, mask)
    print("cutout rgba", h(np.asarray(c2)))
    print("bg opaque", h(np.asarray(apply_background_color(c, (10, 200, 30, 255)))))
    print("bg translucent", h(np.asarray(apply_background_color(c, (10, 200, 30, 128)))))
    print("bg transparent", h(np.asarray(apply_background_color(c2, (255, 255, 255, 0)))))


if __name__ == "__main__":
    decode_samples()
    resize_hashes()
    pack_hashes()
    mask_hashes()
    composite_hashes()
