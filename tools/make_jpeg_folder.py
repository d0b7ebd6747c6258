"""A large ImageFolder of generated JPEGs, for measuring `msn pretrain` on it.

Writes COUNT 256x256 RGB JPEGs into DIR/class_a and DIR/class_b (half each):
256 distinct images (colour gradients with noise, quality 90) written in
turn under distinct names, so a folder of 200,000 files takes a minute, not
an hour. Nothing here is committed data: generate, measure, delete.

    python tools/make_jpeg_folder.py DIR COUNT
"""
import io
import os
import sys

import numpy as np
from PIL import Image


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    root, count = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256] / 255.0
    encoded = []
    for k in range(256):
        a, b, c = rng.uniform(0, 1, 3)
        rgb = np.stack([a * x + (1 - a) * y, b * (1 - x) + (1 - b) * y, c * x * y], axis=-1)
        rgb = np.clip(rgb * 255 + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
        encoded.append(buf.getvalue())
    for name in ("class_a", "class_b"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(count):
        name = "class_a" if i % 2 == 0 else "class_b"
        with open(os.path.join(root, name, f"img_{i:07d}.jpg"), "wb") as f:
            f.write(encoded[i % len(encoded)])
    print(f"wrote {count} JPEGs (256x256) into {root}/class_a and {root}/class_b")


if __name__ == "__main__":
    main()
