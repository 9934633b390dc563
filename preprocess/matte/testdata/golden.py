#!/usr/bin/env python3
"""Reference values for the matte tests, from the Python stack rembg runs on.
Not run by the tests: the file it writes is checked in, and the hashes it
prints are pasted into trimap_test.go.

Produced with Debian 12 packages python3-pil 9.4.0 (libjpeg-turbo 2.1.5),
python3-scipy 1.10.1 and python3-numpy 1.24. Run from this directory:

    apt-get install python3-pil python3-scipy
    /usr/bin/python3 golden.py

- car-1.pil.png: rembg's test image car-1.jpg as PIL decodes it
  (Image.open(...).convert("RGB")), stored losslessly, so the tests can run
  the matting on exactly the pixels pymatting saw, whatever our own JPEG
  decoder does.
- trimap hashes: rembg's alpha_matting_cutout trimap (scipy binary_erosion)
  of car-1's u2netp mask for several (af, ab, ae); the first 16 hex digits
  of SHA-256 over the uint8 trimap, row-major.
"""
import hashlib

import numpy as np
from PIL import Image
from scipy.ndimage import binary_erosion

REMBG = "../../../internal/testfiles/rembg/"

Image.open(REMBG + "car-1.jpg").convert("RGB").save("car-1.pil.png", optimize=True)

mask = np.asarray(Image.open(REMBG + "car-1.u2netp.png"))[:, :, 3]


def trimap(mask, fg, bg, erode):
    structure = None
    if erode > 0:
        structure = np.ones((erode, erode), dtype=np.uint8)
    is_fg = binary_erosion(mask > fg, structure=structure)
    is_bg = binary_erosion(mask < bg, structure=structure, border_value=1)
    t = np.full(mask.shape, dtype=np.uint8, fill_value=128)
    t[is_fg] = 255
    t[is_bg] = 0
    return t


for fg, bg, erode in [(240, 10, 10), (240, 10, 0), (240, 10, 1), (240, 10, 2),
                      (200, 50, 3), (128, 128, 7), (10, 240, 4), (250, 5, 25)]:
    t = trimap(mask, fg, bg, erode)
    digest = hashlib.sha256(np.ascontiguousarray(t).tobytes()).hexdigest()[:16]
    print('{%d, %d, %d, "%s"},' % (fg, bg, erode, digest))
