#!/usr/bin/python3
"""Reference CLIP preprocessing for imageconfig_test.go.

Writes two small PNGs and, for each, what Hugging Face's CLIPImageProcessor
(preprocessor_config.json of Xenova/clip-vit-base-patch32) computes, step by
step as transformers does it, with PIL and numpy only (transformers is not
installed here):

  convert("RGB") -> PIL resize so the shortest edge is 224, the long edge
  int(224 * long / short), BICUBIC -> centre crop at ((h-224)//2, (w-224)//2)
  -> float64 * rescale_factor, cast to float32 -> (x - mean) / std in float32.

The golden holds per-channel sums and 256 sampled values of the [3,224,224]
pixel_values, not the whole 600 KB tensor.

Run from the repository root with Debian's python (it has PIL and numpy):
    /usr/bin/python3 models/clip/testdata/gen_pixel_golden.py
"""
import json
import os

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = json.load(open(os.path.join(HERE, "..", "assets", "preprocessor_config.json")))


def make_images():
    rng = np.random.RandomState(7)
    # Landscape, downscaled: smooth gradients, shapes, and a translucent
    # region (alpha must be dropped, not composited).
    w, h = 500, 300
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 0] = (255 * x / (w - 1)).astype(np.uint8)
    rgba[..., 1] = (127 + 120 * np.sin(y / 17.0)).astype(np.uint8)
    rgba[..., 2] = (255 * (x + y) / (w + h)).astype(np.uint8)
    rgba[..., 3] = 255
    rgba[200:260, 30:200, 3] = 90
    img = Image.fromarray(rgba, "RGBA")
    d = ImageDraw.Draw(img)
    d.ellipse((300, 40, 460, 200), fill=(250, 30, 40, 255))
    d.rectangle((60, 60, 160, 140), fill=(10, 200, 90, 255))
    landscape = img

    # Portrait, upscaled from 61x97, with per-pixel noise.
    p = rng.randint(0, 256, size=(97, 61, 3)).astype(np.uint8)
    portrait = Image.fromarray(p, "RGB")
    return {"landscape_500x300.png": landscape, "portrait_61x97.png": portrait}


def clip_pixel_values(img):
    size = CFG["size"]["shortest_edge"]
    crop = CFG["crop_size"]["height"]
    assert CFG["resample"] == 3 and crop == CFG["crop_size"]["width"] == size
    img = img.convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    arr = np.asarray(img.resize((nw, nh), Image.BICUBIC))
    top, left = (nh - crop) // 2, (nw - crop) // 2
    arr = arr[top : top + crop, left : left + crop]
    r = (arr.astype(np.float64) * CFG["rescale_factor"]).astype(np.float32)
    mean = np.array(CFG["image_mean"], dtype=np.float32)
    std = np.array(CFG["image_std"], dtype=np.float32)
    r = (r - mean) / std
    return r.transpose(2, 0, 1)  # CHW


def main():
    rng = np.random.RandomState(11)
    golden = {"note": "CLIPImageProcessor reference, see gen_pixel_golden.py", "images": []}
    for name, img in make_images().items():
        img.save(os.path.join(HERE, name), optimize=True)
        # Re-read the PNG so the reference sees exactly the committed bytes.
        pv = clip_pixel_values(Image.open(os.path.join(HERE, name)))
        idx = [(int(c), int(y), int(x)) for c, y, x in zip(rng.randint(0, 3, 256), rng.randint(0, 224, 256), rng.randint(0, 224, 256))]
        golden["images"].append(
            {
                "file": name,
                "channel_sums": [float(pv[c].astype(np.float64).sum()) for c in range(3)],
                "samples": [[c, y, x, float(pv[c, y, x])] for c, y, x in idx],
            }
        )
    with open(os.path.join(HERE, "pixel_golden.json"), "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
