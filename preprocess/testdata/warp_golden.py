#!/usr/bin/env python3
"""Reference hashes for warp_test.go: cv2.warpAffine with INTER_LINEAR and
the default constant border, as rembg's SAM session calls it. Not run by the
tests; paste the printed lines into warp_test.go.

Produced with Debian 12's python3-opencv 4.6.0 and python3-numpy 1.24:

    /usr/bin/python3 warp_golden.py

Hashes are the first 16 hex digits of SHA-256 over the output (uint8 RGB
row-major, or little-endian float32).
"""
import hashlib

import cv2
import numpy as np


def h(b):
    return hashlib.sha256(np.ascontiguousarray(b).tobytes()).hexdigest()[:16]


def pattern(w, hh):
    """warpPattern in warp_test.go."""
    y, x = np.mgrid[0:hh, 0:w]
    planes = [(x * 37 + y * 11 + c * 89 + ((x * y) % 17) * 5) % 256 for c in range(3)]
    return np.stack(planes, -1).astype(np.uint8)


def floats(w, hh):
    """warpFloats in warp_test.go."""
    y, x = np.mgrid[0:hh, 0:w]
    return (np.sin(x * 0.37 + y * 0.11) * 3.0 - 0.25).astype(np.float32)


# rembg's SAM: scale the image to fit (dst_h, dst_w), then scale masks back.
for (w, hh), (dw, dh) in [((61, 37), (40, 25)), ((23, 17), (64, 40)), ((50, 50), (1024, 684))]:
    img = pattern(w, hh)
    s = min(dw / w, dh / hh)
    t = np.array([[s, 0, 0], [0, s, 0], [0, 0, 1]])
    out = cv2.warpAffine(img, t[:2], (dw, dh), flags=cv2.INTER_LINEAR)
    inv = np.linalg.inv(t)
    m = floats(dw, dh)
    back = cv2.warpAffine(m, inv[:2], (w, hh), flags=cv2.INTER_LINEAR)
    print('{%d, %d, %d, %d, "%s", "%s"},' % (w, hh, dw, dh, h(out), h(back.astype("<f4"))))
