"""Writes configs/data/shapes/: 2 classes × 10 generated 32×32 PNG images (a filled
circle or square of a random colour, place and size on a light background), the tiny
image folder of configs/finetune_images.yaml. Run from the repository root:

    python configs/data/make_shapes.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent / "shapes"


def main():
    rng = np.random.default_rng(25)
    yy, xx = np.mgrid[0:32, 0:32]
    for cls in ("circles", "squares"):
        (ROOT / cls).mkdir(parents=True, exist_ok=True)
        for i in range(10):
            img = np.full((32, 32, 3), 235, np.uint8)
            cy, cx, r = rng.integers(10, 22), rng.integers(10, 22), rng.integers(5, 9)
            if cls == "circles":
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:
                mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
            img[mask] = rng.integers(0, 160, 3)
            Image.fromarray(img).save(ROOT / cls / f"{cls[:-1]}_{i}.png", optimize=True)


if __name__ == "__main__":
    main()
