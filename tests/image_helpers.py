"""A tiny folder of generated images, one sub-folder per class (Pillow)."""

import numpy as np


def make_image_folder(root, classes=("cats", "dogs"), per_class=6, size=(20, 24), seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.zeros((*size, 3), np.uint8)
            base[..., k % 3] = 200  # the class shows in the colour
            noise = rng.integers(0, 40, (*size, 3), dtype=np.uint8)
            fmt = "png" if i % 2 else "jpg"
            Image.fromarray(base + noise).save(folder / f"img_{i}.{fmt}")
    (root / "cats" / "notes.txt").write_text("not an image")
    return root
