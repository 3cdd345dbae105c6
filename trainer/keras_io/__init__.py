"""Keras interop: ``model: {keras: PATH}`` imports a Keras model (``to_json()`` file,
``.h5`` saved model or Keras 3 ``.keras`` archive), ``model.weights`` reads Keras HDF5
weights (legacy ``.h5`` or Keras 3 ``.weights.h5``), ``trainer export`` writes a run
back as Keras files.

- translate.py: a Keras model config → our ``model:`` section (the builder builds it);
  arguments.py: one Keras layer → our layer spec, generically, with a few exceptions.
- h5.py: the HDF5 weight layout, read and written; native.py: Keras 3's ``.keras``
  archives and ``.weights.h5`` tree, read; keras3.py: ``.keras`` archives written, and
  where Keras 3 computes something else under a Keras 2 name.
- export.py: a built model → Keras 2 JSON and ``.h5``.

A format library: it imports nothing of the config loader, the builders, the store or
the commands (tests/test_layout.py); the config options that use it live in
trainer/build/keras_model.py, ``trainer export`` in trainer/app/export.py.
"""

import json
import zipfile
from pathlib import Path

from trainer.errors import ConfigError
from trainer.keras_io.h5limits import open_file
from trainer.fileio import regular_file


def read_model_file(path, where=None):
    """(Keras model config dict, whether the file holds weights) of a ``to_json()`` file,
    an HDF5 saved model or a Keras 3 ``.keras`` archive."""
    import h5py

    from trainer.keras_io.native import read_archive_config

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model.keras: file not found: {path}", where=where)
    regular_file(path, "model.keras")
    version = None  # the Keras that wrote the file, where the file says it
    if zipfile.is_zipfile(path):
        try:
            keras, has_weights = read_archive_config(path)
        except ConfigError as exc:
            raise ConfigError(f"model.keras: {exc.message}", where=where) from None
        text, version = None, "3"  # .keras archives are Keras 3's
    elif h5py.is_hdf5(path):
        with open_file(path) as f:
            text = f.attrs.get("model_config")
            version = f.attrs.get("keras_version")
            if text is None:
                raise ConfigError(
                    f"model.keras: {path} has no 'model_config' attribute: it holds weights "
                    f"only (save_weights). Give the architecture (a to_json file in "
                    f"model.keras, or model.layers) and this file as model.weights",
                    where=where)
            text = text.decode("utf8") if isinstance(text, bytes) else str(text)
            has_weights = "model_weights" in f
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"model.keras: cannot read {path}: {exc}", where=where) from None
        has_weights = False
    if text is not None:
        try:
            keras = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model.keras: {path} is neither an HDF5 file, a .keras "
                              f"archive nor Keras JSON ({exc})", where=where) from None
    if not isinstance(keras, dict) or "class_name" not in keras:
        raise ConfigError(f"model.keras: {path} is not a Keras model config (no class_name)",
                          where=where)
    if version is not None and "keras_version" not in keras:
        keras["keras_version"] = version.decode() if isinstance(version, bytes) else str(version)
    return keras, has_weights
