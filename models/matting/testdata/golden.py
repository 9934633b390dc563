#!/usr/bin/env python3
"""Reference hashes for the matting tests, computed the way rembg's sessions
compute them. Not run by the tests; paste the printed lines into the
*_test.go files.

Produced with Debian 12's python3-pil 9.4.0, python3-scipy 1.10.1 and
python3-numpy 1.24:

    /usr/bin/python3 golden.py

Hashes are the first 16 hex digits of SHA-256 over the uint8 masks,
row-major.
"""
import hashlib

import numpy as np
from PIL import Image
from scipy.special import log_softmax


def h(b):
    return hashlib.sha256(np.ascontiguousarray(b).tobytes()).hexdigest()[:16]


def cloth_logits(w, hh):
    """clothLogits in cloth_test.go: four class planes of smooth waves."""
    y, x = np.mgrid[0:hh, 0:w]
    planes = [np.sin(x * (0.3 + 0.1 * c) + y * (0.2 - 0.05 * c) + c) * (1 + c * 0.5) for c in range(4)]
    return np.stack(planes)[None].astype(np.float32)


# rembg's u2net_cloth_seg predict(), from the model's output on.
palettes = {
    "upper": [0, 0, 0, 255, 255, 255, 0, 0, 0, 0, 0, 0],
    "lower": [0, 0, 0, 0, 0, 0, 255, 255, 255, 0, 0, 0],
    "full": [0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255],
}
for (w, hh), size in [((10, 12), (17, 23)), ((40, 30), (13, 9))]:
    pred = log_softmax(cloth_logits(w, hh), 1)
    pred = np.argmax(pred, axis=1, keepdims=True)
    pred = np.squeeze(pred, 0)
    pred = np.squeeze(pred, 0)
    mask = Image.fromarray(pred.astype("uint8"), mode="L")
    mask = mask.resize(size, Image.LANCZOS)
    out = []
    for name in ("upper", "lower", "full"):
        m = mask.copy()
        m.putpalette(palettes[name])
        m = m.convert("RGB").convert("L")
        out.append(h(np.asarray(m)))
    print('{%d, %d, %d, %d, [3]string{"%s", "%s", "%s"}},' % (w, hh, size[0], size[1], *out))


# --- rembg's sessions on the synthetic models (internal/testmodels) ---------
# Writes *.golden.png: the masks rembg's session code computes with the
# synthetic models (run by gen.py's numpy interpreter) on the test images of
# pipeline_test.go.
import json
import os
import sys

import cv2
import onnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../internal/testmodels"))
from gen import run_graph  # noqa: E402

MODELS = "../../../internal/testmodels/"


def model(name):
    return onnx.load(MODELS + name)


def pattern_image():
    """patternImage in pipeline_test.go: 300x200 RGB."""
    y, x = np.mgrid[0:200, 0:300]
    r = np.where((x - 100) ** 2 + (y - 90) ** 2 < 50 ** 2, 255, (x * 7 + y * 3) % 64)
    g = (x + y) % 128
    b = np.where(x > 220, 200, (x * y) % 50)
    return Image.fromarray(np.stack([r, g, b], -1).astype(np.uint8), "RGB")


def garment_image():
    """garmentImage in pipeline_test.go: 160x240, red, green and blue bands on black."""
    a = np.zeros((240, 160, 3), np.uint8)
    a[20:90, 30:130, 0] = 255
    a[100:160, 30:130, 1] = 255
    a[170:230, 30:130, 2] = 255
    return Image.fromarray(a, "RGB")


def normalize(img, mean, std, size):
    """rembg's BaseSession.normalize."""
    im = img.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    im_ary = np.array(im)
    im_ary = im_ary / max(np.max(im_ary), 1e-6)
    tmp = np.zeros((im_ary.shape[0], im_ary.shape[1], 3))
    for c in range(3):
        tmp[:, :, c] = (im_ary[:, :, c] - mean[c]) / std[c]
    return np.expand_dims(tmp.transpose((2, 0, 1)), 0).astype(np.float32)


def minmax_mask(pred, size):
    ma, mi = np.max(pred), np.min(pred)
    pred = np.squeeze((pred - mi) / (ma - mi))
    mask = Image.fromarray((pred * 255).astype("uint8"), mode="L")
    return mask.resize(size, Image.Resampling.LANCZOS)


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
img = pattern_image()
for file, inp, mean, std, sigmoid in [
    ("birefnet_synth.onnx", "input_image", IMAGENET[0], IMAGENET[1], True),
    ("isnet_anime_synth.onnx", "img", IMAGENET[0], (1.0, 1.0, 1.0), False),
    ("bria_rmbg_synth.onnx", "pixel_values", IMAGENET[0], IMAGENET[1], False),
    ("ben2_synth.onnx", "input", (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), False),
]:
    m = model(file)
    out = list(run_graph(m, {inp: normalize(img, mean, std, (1024, 1024))}).values())[0]
    pred = out[:, 0, :, :]
    if sigmoid:
        pred = 1 / (1 + np.exp(-pred))
    minmax_mask(pred, img.size).save(file.replace(".onnx", ".golden.png"))

# u2net_cloth_seg: all three masks, concatenated as rembg's remove() does.
garment = garment_image()
out = run_graph(model("u2net_cloth_seg_synth.onnx"), {"input.1": normalize(garment, *IMAGENET, (768, 768))})
pred = np.argmax(log_softmax(out["d0"], 1), axis=1, keepdims=True)[0, 0]
cmask = Image.fromarray(pred.astype("uint8"), mode="L").resize(garment.size, Image.LANCZOS)

masks = []
for name in ("upper", "lower", "full"):
    m2 = cmask.copy()
    m2.putpalette(palettes[name])
    masks.append(np.asarray(m2.convert("RGB").convert("L")))
Image.fromarray(np.concatenate(masks), "L").save("u2net_cloth_seg_synth.golden.png")

# SAM: rembg's SamSession.predict with the synthetic encoder and decoder.
enc, dec = model("sam_encoder_synth.onnx"), model("sam_decoder_synth.onnx")


def sam(img, prompt):
    target_size, input_size = 1024, (684, 1024)
    cv_image = np.array(img.convert("RGB"))
    original_size = cv_image.shape[:2]
    scale = min(input_size[1] / cv_image.shape[1], input_size[0] / cv_image.shape[0])
    t = np.array([[scale, 0, 0], [0, scale, 0], [0, 0, 1]])
    cv_image = cv2.warpAffine(cv_image, t[:2], (input_size[1], input_size[0]), flags=cv2.INTER_LINEAR)
    emb = run_graph(enc, {"input_image": cv_image.astype(np.float32)})["image_embeddings"]
    points, labels = [], []
    for mark in prompt:
        if mark["type"] == "point":
            points.append(mark["data"])
            labels.append(mark["label"])
        elif mark["type"] == "rectangle":
            points += [mark["data"][:2], mark["data"][2:]]
            labels += [2, 3]
    coord = np.concatenate([np.array(points), np.array([[0.0, 0.0]])], axis=0)[None, :, :]
    label = np.concatenate([np.array(labels), np.array([-1])], axis=0)[None, :].astype(np.float32)
    coord = coord.astype(float).astype(np.float32)  # apply_coords with a scale of exactly 1
    coord = np.concatenate([coord, np.ones((1, coord.shape[1], 1), dtype=np.float32)], axis=2)
    coord = np.matmul(coord, t.T)[:, :, :2].astype(np.float32)
    masks = run_graph(dec, {
        "image_embeddings": emb, "point_coords": coord, "point_labels": label,
        "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array(input_size, dtype=np.float32),
    })["masks"]
    inv = np.linalg.inv(t)
    mask = np.zeros((original_size[0], original_size[1], 3), np.uint8)
    for m in masks[0]:
        back = cv2.warpAffine(m, inv[:2], (original_size[1], original_size[0]), flags=cv2.INTER_LINEAR)
        mask[back > 0.0] = [255, 255, 255]
    return Image.fromarray(mask).convert("L")


PROMPTS = {
    "point": [{"type": "point", "data": [100, 90], "label": 1}],
    "box": [{"type": "rectangle", "data": [200, 50, 280, 150]}, {"type": "point", "data": [270, 60], "label": 0}],
}
for key, prompt in PROMPTS.items():
    sam(img, prompt).save("sam_%s.golden.png" % key)
    print("sam", key, json.dumps(prompt))
