"""A folder of images as a data source, as Keras's ``image_dataset_from_directory``:

    train: {images: photos/, image_size: [160, 160], validation_split: 0.2,
            subset: training, seed: 1337}

``photos/`` holds one sub-folder per class (class ids in alphanumeric order of the
folder names, or ``class_names``); files ``.bmp .gif .jpeg .jpg .png`` (Keras's
formats). Files are listed, shuffled with ``seed`` and split as Keras does (the last
``validation_split`` of the shuffled list is ``subset: validation``), and decoded and
resized per batch (lazily: memory stays bounded whatever the folder's size) with
TensorFlow's bilinear half-pixel resize, as Keras; x is float32 in 0..255
(``color_mode`` rgb: 3 channels, grayscale: 1, rgba: 4), y int class ids
(``label_mode: int``), one-hot (``categorical``) or float 0/1 (``binary``, two
classes). Needs Pillow (the ``[images]`` extra).
"""

from pathlib import Path

import numpy as np

from trainer.data.lazy import LazyArray
from trainer.errors import ConfigError, DataError

FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
CHANNELS = {"rgb": 3, "grayscale": 1, "rgba": 4}
PIL_MODES = {"rgb": "RGB", "grayscale": "L", "rgba": "RGBA"}


def pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("image files need Pillow: pip install 'trainer[images]'") from None
    return Image


def load_image(path, size, color_mode="rgb", interpolation="bilinear"):
    """One image file → float32 (rows, cols, channels) in 0..255, resized to ``size``
    (rows, cols) as Keras's image_dataset_from_directory does (None: as it is)."""
    from trainer.layers.reshaping import resize_images

    Image = pillow()
    try:
        with Image.open(path) as img:
            x = np.asarray(img.convert(PIL_MODES[color_mode]), np.float32)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not an image Pillow can read ({exc})") from None
    x = x.reshape(x.shape[0], x.shape[1], -1)
    if size is not None and tuple(x.shape[:2]) != tuple(size):
        x, _ = resize_images(x[None], size[0], size[1], interpolation)
        x = x[0]
    return x.astype(np.float32)


def index_directory(directory, class_names=None, shuffle=True, seed=None):
    """(files, labels, class_names) as Keras's ``index_directory``: classes in
    alphanumeric order, files sorted within each, then shuffled with ``seed``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"images: no folder {directory}")
    found = sorted(p.name for p in directory.iterdir() if p.is_dir())
    names = list(class_names) if class_names else found
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"images: {directory} has no class folder {', '.join(missing)} "
                        f"(it has {', '.join(found) or 'none'})")
    files, labels = [], []
    for k, name in enumerate(names):
        for p in sorted((directory / name).rglob("*")):
            if p.is_file() and p.suffix.lower() in FORMATS:
                files.append(p)
                labels.append(k)
    if not files:
        raise DataError(f"images: no {'/'.join(FORMATS)} files in the class folders of "
                        f"{directory}")
    files, labels = np.array(files, dtype=object), np.array(labels, np.int64)
    if shuffle:
        seed = np.random.randint(1e6) if seed is None else seed
        np.random.RandomState(seed).shuffle(files)
        np.random.RandomState(seed).shuffle(labels)
    return files, labels, names


class ImageArray(LazyArray):
    """Image files decoded and resized a block of rows at a time."""

    def __init__(self, files, size, color_mode, interpolation, label):
        super().__init__((len(files), size[0], size[1], CHANNELS[color_mode]), np.float32,
                         32, label)
        self.files, self.size = files, size
        self.color_mode, self.interpolation = color_mode, interpolation

    def _read(self, start, stop):
        return np.stack([load_image(p, self.size, self.color_mode, self.interpolation)
                         for p in self.files[start:stop]])


def image_source(cfg, spec, keypath):
    """The (x, y, None) of an ``images:`` source."""
    from trainer.config.loader import resolve_path

    pillow()
    place = ".".join(map(str, keypath))
    directory = resolve_path(cfg, spec["images"])
    size = spec.get("image_size", [256, 256])
    files, labels, names = index_directory(directory, spec.get("class_names"),
                                           spec.get("shuffle", True), spec.get("seed"))
    split, subset = spec.get("validation_split"), spec.get("subset")
    if (split is None) != (subset is None):
        raise ConfigError(f"{place}: validation_split and subset go together (Keras's "
                          f"image_dataset_from_directory)", where=cfg.where(keypath))
    if split:
        n_val = int(split * len(files))
        keep = slice(len(files) - n_val, None) if subset == "validation" else \
            slice(None, len(files) - n_val)
        files, labels = files[keep], labels[keep]
    x = ImageArray(files, size, spec.get("color_mode", "rgb"),
                   spec.get("interpolation", "bilinear"), str(directory))
    mode = spec.get("label_mode", "int")
    if mode == "categorical":
        labels = np.eye(len(names), dtype=np.float32)[labels]
    elif mode == "binary":
        if len(names) != 2:
            raise DataError(f"{place}: label_mode binary needs 2 classes, {directory} has "
                            f"{len(names)}: {', '.join(names)}")
        labels = labels.astype(np.float32)
    return x, labels, None


def load_img(path, target_size=None, color_mode="rgb"):
    """Keras's ``image.load_img(target_size=...)`` then ``img_to_array``: PIL's nearest
    resize to (rows, cols), float32 in 0..255."""
    Image = pillow()
    try:
        with Image.open(path) as img:
            img = img.convert(PIL_MODES[color_mode])
            if target_size is not None and img.size != (target_size[1], target_size[0]):
                img = img.resize((target_size[1], target_size[0]), Image.NEAREST)
            x = np.asarray(img, np.float32)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not an image Pillow can read ({exc})") from None
    return x.reshape(x.shape[0], x.shape[1], -1)


def image_files(ref):
    """The image files ``ref`` names (a file, a folder's images sorted, or a glob), or
    None when it names none of these."""
    import glob

    path = Path(ref)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in FORMATS)
    if path.suffix.lower() in FORMATS and path.exists():
        return [path]
    if any(c in str(ref) for c in "*?["):
        return sorted(Path(p) for p in glob.glob(str(ref)) if Path(p).suffix.lower() in FORMATS)
    return None


def image_inputs(ref, model):
    """``trainer predict --input`` images → {input name: (n, rows, cols, c)} sized to
    the model's input as Keras's load_img does; None when ``ref`` is not images."""
    files = image_files(ref)
    if files is None:
        return None
    if not files:
        raise DataError(f"--input: no {'/'.join(FORMATS)} files in {ref}")
    if len(model.input_names) != 1:
        raise ConfigError(f"--input: images feed one input; the model has "
                          f"{len(model.input_names)} ({', '.join(model.input_names)})")
    shape = model.graph.shapes[0]
    if len(shape) != 3 or shape[2] not in (1, 3, 4):
        raise ConfigError(f"--input: images need a model input of shape (rows, cols, "
                          f"channels), this model takes {tuple(shape)}")
    mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[shape[2]]
    return {model.input_names[0]: np.stack([load_img(p, shape[:2], mode) for p in files])}
