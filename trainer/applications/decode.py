"""Keras's ``decode_predictions``: the top classes of ImageNet predictions with their
WordNet ids and names, from Keras's ``imagenet_class_index.json`` (fetched into and
read from Keras's cache, ``models/``, as Keras does)."""

import json

import numpy as np

from trainer.errors import DataError
from trainer.fetch import Remote, get_file

CLASS_INDEX = Remote(
    "imagenet_class_index.json",
    "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
    "c2c37ea517e94d9795004a39431a14cb", "models")


def class_index(mirror=None):
    """[(wnid, name)] for the 1000 ImageNet classes, in class-id order."""
    path = get_file(CLASS_INDEX, mirror=mirror)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        return [tuple(raw[str(i)]) for i in range(1000)]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not Keras's ImageNet class index ({exc}); delete it to "
                        f"download it again") from None


def top_classes(preds, top=5):
    """Per row: [(class id, probability)] of the ``top`` highest, best first."""
    preds = np.asarray(preds)
    if preds.ndim != 2:
        raise DataError(f"--top: expects one row of class scores per sample, got "
                        f"predictions of shape {preds.shape}")
    order = np.argsort(-preds, axis=1, kind="stable")[:, :top]
    return [[(int(c), float(row[c])) for c in idx] for row, idx in zip(preds, order)]


def decode_predictions(preds, top=5, mirror=None):
    """Keras's decode_predictions: per row [(wnid, name, probability)], best first."""
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise DataError(f"decode_predictions expects ImageNet predictions of shape (n, 1000), "
                        f"got {preds.shape}")
    names = class_index(mirror)
    return [[(*names[c], p) for c, p in row] for row in top_classes(preds, top)]
