"""Read the arrays a data section names: files by suffix, or built-in datasets."""

import zipfile

import numpy as np

from trainer.config import resolve_path
from trainer.errors import ConfigError, DataError
from trainer.registries import datasets


def load_source(cfg, spec, keypath):
    """A source mapping → (x, y, sample_weight), x and y arrays (or name → array
    mappings when the config maps several inputs or outputs)."""
    if "dataset" in spec:
        args = {k: v for k, v in spec.items() if k != "dataset"}
        try:
            ds = datasets.get({spec["dataset"]: args})
        except ConfigError as exc:
            raise ConfigError(f"{'.'.join(keypath)}: {exc.message}",
                              where=cfg.where(keypath)) from None
        x, y = ds.load()
        return x, y, None
    path = resolve_path(cfg, spec["path"])
    suffix = path.suffix.lower()
    readers = {".npz": read_npz}
    if suffix not in readers:
        raise ConfigError(f"{'.'.join(keypath)}.path: unsupported file type '{suffix}' "
                          f"(supported: {', '.join(readers)})", where=cfg.where(keypath + ("path",)))
    if not path.exists():
        raise DataError(f"data file not found: {path} (from {'.'.join(keypath)}.path, "
                        f"{cfg.where(keypath + ('path',))})")
    arrays = readers[suffix](path)
    pick = lambda ref, role: _select(arrays, ref, role, path)  # noqa: E731
    x = pick(spec.get("x", "x"), "x")
    y = pick(spec["y"], "y") if "y" in spec else None
    sw = pick(spec["sample_weight"], "sample_weight") if "sample_weight" in spec else None
    return x, y, sw


def read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:  # object arrays need pickle, which we never allow
        raise DataError(f"{path}: cannot read without pickle ({exc}); store plain "
                        f"numeric or string arrays") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def _select(arrays, ref, role, path):
    if isinstance(ref, dict):
        return {name: _select(arrays, r, role, path) for name, r in ref.items()}
    if ref not in arrays:
        raise DataError(f"{path}: no array '{ref}' for {role}; the file has: "
                        f"{', '.join(sorted(arrays)) or 'nothing'}")
    return arrays[ref]
