"""Read the arrays a data section names: files by suffix, or built-in datasets.

Each reader turns a file into ``name → array``; ``x``, ``y`` and ``sample_weight`` of
the source then pick arrays by name (npz keys, HDF5 dataset paths, CSV columns).

- ``.npz``: ``{path: d.npz, x: x_train, y: y_train}`` (defaults: x ``x``).
- ``.npy`` holds one array: ``{path: features.npy, y_path: labels.npy,
  sample_weight_path: w.npy}``; memory-mapped and read per batch unless ``lazy: false``.
- ``.csv``: ``{path: d.csv, x: [a, b] | [0, 1] | rest, y: label}``; a header row names
  the columns (``header: false`` names them 0, 1, ...); ``rest`` is every column not
  used for y or sample_weight. Several inputs: ``x: {image: [p0, p1], meta: rest}``. Numeric columns become float32 (whole-number label
  columns int64); text label columns stay strings for ``class_ids``/``one_hot``.
- ``.h5``/``.hdf5``: ``x``/``y`` name dataset paths (``/train/images``); rows are read
  per batch in chunk-aligned blocks unless ``lazy: false``.
"""

import csv
import io
import os
import zipfile

import numpy as np

from trainer.config.loader import resolve_path
from trainer.data.lazy import H5Array, MemmapArray
from trainer.errors import ConfigError, DataError
from trainer.keras_io.h5limits import check_dataset, open_file
from trainer.fileio import regular_file
from trainer.memory import human_size, memory_bytes
from trainer.config.families import datasets


def load_source(cfg, spec, keypath):
    """A source mapping → (x, y, sample_weight), x and y arrays (or name → array
    mappings when the config maps several inputs or outputs)."""
    if "images" in spec:  # a folder of class sub-folders (image_dataset_from_directory)
        from trainer.data.images import image_source
        return image_source(cfg, spec, keypath)
    if "dataset" in spec:
        args = {k: v for k, v in spec.items() if k != "dataset"}
        try:
            ds = datasets.get({spec["dataset"]: args})
        except ConfigError as exc:
            raise ConfigError(f"{'.'.join(map(str, keypath))}: {exc.message}",
                              where=cfg.where(keypath)) from None
        try:
            x, y = ds.load()
        except MemoryError:
            raise ConfigError(
                f"{'.'.join(map(str, keypath))}: the built-in dataset '{spec['dataset']}' "
                f"with these arguments needs more memory than this machine has "
                f"({human_size(memory_bytes())}); lower its sizes (n, n_samples, length, "
                f"...)", where=cfg.where(keypath)) from None
        return x, y, None
    where = f"{'.'.join(keypath)}.path, {cfg.where(keypath + ('path',))}"
    path = _existing(cfg, spec["path"], where)
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ConfigError(f"{'.'.join(keypath)}.path: unsupported file type '{suffix}' "
                          f"(supported: {', '.join(READERS)})",
                          where=cfg.where(keypath + ("path",)))
    if suffix == ".npy":
        return _npy_source(cfg, spec, keypath, path)
    if "y_path" in spec or "sample_weight_path" in spec:
        raise ConfigError(f"{'.'.join(keypath)}: y_path/sample_weight_path are for .npy files; "
                          f"in a {suffix} file name the arrays with y/sample_weight",
                          where=cfg.where(keypath))
    if suffix == ".csv":
        return _csv_source(spec, path)
    arrays = READERS[suffix](path, spec.get("lazy", True))
    pick = lambda ref, role: _select(arrays, ref, role, path)  # noqa: E731
    x = pick(spec.get("x", "x"), "x")
    y = pick(spec["y"], "y") if "y" in spec else None
    sw = pick(spec["sample_weight"], "sample_weight") if "sample_weight" in spec else None
    return x, y, sw


PATH_KEYS = ("path", "y_path", "sample_weight_path", "images")


def absolute_paths(cfg, data):
    """The data section with every file path made absolute: a run folder's config.yaml
    lives elsewhere than the config it was made from, and must still find the data."""
    out = dict(data)
    for key in ("train", "validation", "test"):
        if isinstance(data.get(key), dict):
            out[key] = {k: str(resolve_path(cfg, v).resolve()) if k in PATH_KEYS else v
                        for k, v in data[key].items()}
    return out


def _existing(cfg, ref, where):
    """The data file ``ref`` names: it must exist and be a regular file (not a device
    such as /dev/zero, not a FIFO), checked before it is opened."""
    path = resolve_path(cfg, ref)
    if not path.exists():
        raise DataError(f"data file not found: {path} (from {where})")
    return regular_file(path, f"data file (from {where})")


def read_npz(path, lazy=False):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:  # object arrays need pickle, which we never allow
        raise DataError(f"{path}: cannot read without pickle ({exc}); store plain "
                        f"numeric or string arrays") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def read_npy(path, lazy=True):
    try:
        array = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "Python objects" in str(exc):
            raise DataError(f"{path}: holds Python objects, which need pickle (never "
                            f"allowed); store a plain numeric or string array") from None
        raise DataError(f"{path}: not a readable .npy file, truncated or corrupt "
                        f"({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    if lazy and array.ndim >= 1 and array.dtype.kind in "biuf":
        return MemmapArray(path, array)
    return np.asarray(array)


def _npy_source(cfg, spec, keypath, path):
    if "x" in spec or "y" in spec or "sample_weight" in spec:
        raise ConfigError(f"{'.'.join(keypath)}: a .npy file holds one array; give x's file "
                          f"as path and the others as y_path / sample_weight_path",
                          where=cfg.where(keypath))
    lazy = spec.get("lazy", True)
    out = [read_npy(path, lazy)]
    for key in ("y_path", "sample_weight_path"):
        if key in spec:
            other = _existing(cfg, spec[key], f"{'.'.join(keypath)}.{key}, "
                              f"{cfg.where(keypath + (key,))}")
            out.append(read_npy(other, lazy))
        else:
            out.append(None)
    return tuple(out)


def read_hdf5(path, lazy=True):
    import h5py

    try:
        f = open_file(path)
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file, truncated or corrupt "
                        f"({exc})") from None
    with f:
        names = []
        f.visititems(lambda k, v: names.append(k) if isinstance(v, h5py.Dataset) else None)
        out = {}
        for name in names:
            ds = f[name]
            lazy_ds = ds.dtype.kind in "biuf" and ds.ndim >= 1 and lazy
            check_dataset(ds, f"{path}:/{name}", whole=not lazy_ds)
            if lazy_ds:
                out[name] = H5Array(str(path), name, ds)
            else:
                try:
                    if h5py.check_string_dtype(ds.dtype) is not None:
                        out[name] = np.asarray(ds.asstr()[()], dtype=str)
                    else:
                        out[name] = np.asarray(ds[()])
                except OSError as exc:
                    raise DataError(f"{path}:/{name}: cannot read ({exc})") from None
    return out


def _select(arrays, ref, role, path):
    if isinstance(ref, dict):
        return {name: _select(arrays, r, role, path) for name, r in ref.items()}
    if isinstance(ref, str) and ref.startswith("/"):
        ref = ref[1:]
    if ref not in arrays:
        raise DataError(f"{path}: no array '{ref}' for {role}; the file has: "
                        f"{', '.join(sorted(arrays)) or 'nothing'}")
    return arrays[ref]


# -- CSV ---------------------------------------------------------------------------

#: a CSV file may hold this share of the machine's memory: parsed into Python strings
#: and then float64 columns, a cell costs up to ~60 bytes (a one-digit cell is 2 bytes)
CSV_MEMORY_SHARE = 64


def csv_text(path):
    """The text of a CSV file (a regular file), refused before reading when it is larger
    than ``1/CSV_MEMORY_SHARE`` of this machine's memory, and while reading if it
    grows past that."""
    regular_file(path, "CSV file")
    limit = memory_bytes() // CSV_MEMORY_SHARE
    too_big = (f"more than a CSV file may hold on this machine ({human_size(limit)}, "
               f"1/{CSV_MEMORY_SHARE} of its memory: parsed, a CSV takes up to "
               f"{CSV_MEMORY_SHARE}× its size); store the data as .npy or .h5, which are "
               f"read in batches")
    size = os.stat(path).st_size
    if size > limit:
        raise DataError(f"{path}: {human_size(size)}, {too_big}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read(limit + 1)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if len(text) > limit:
        raise DataError(f"{path}: grew while it was read to {too_big}")
    return text


def read_csv(path, header=True, delimiter=","):
    """(column names, list of column value lists) of a CSV file."""
    text = csv_text(path)
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
                if r]
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows:
        raise DataError(f"{path}: the CSV file is empty")
    names = [c.strip() for c in rows[0]] if header else [str(i) for i in range(len(rows[0]))]
    body = rows[1:] if header else rows
    for i, r in enumerate(body):
        if len(r) != len(names):
            line = i + (2 if header else 1)
            raise DataError(f"{path}:{line}: {len(r)} fields, but the "
                            f"{'header has' if header else 'first row has'} {len(names)}")
    return names, [list(col) for col in zip(*body)] if body else [[] for _ in names]


def _column(values):
    """A CSV column as numbers (blank → NaN) when every non-blank value is one, else text."""
    try:
        nums = np.array([float(v) if v.strip() else np.nan for v in values], np.float64)
    except ValueError:
        return np.array([v.strip() for v in values])
    return nums


def _csv_source(spec, path):
    names, cols = read_csv(path, spec.get("header", True), spec.get("delimiter", ","))

    def index(ref, role):
        if isinstance(ref, int) and not isinstance(ref, bool):
            if not 0 <= ref < len(names):
                raise DataError(f"{path}: column {ref} for {role} does not exist; the file has "
                                f"{len(names)} columns (0..{len(names) - 1})")
            return ref
        if str(ref) not in names:
            raise DataError(f"{path}: no column '{ref}' for {role}; the columns are: "
                            f"{', '.join(names)}")
        return names.index(str(ref))

    def label_column(ref):
        if isinstance(ref, list):
            raise DataError(f"{path}: y names one column of a CSV file, got {ref!r}")
        j = index(ref, "y")
        used.add(j)
        y = _column(cols[j])
        if y.dtype.kind != "f":
            return y
        if len(y) and np.isfinite(y).all() and np.all(np.mod(y, 1) == 0):
            return y.astype(np.int64)
        return y.astype(np.float32)

    def features(ref):
        if ref == "rest":
            js = [j for j in range(len(names)) if j not in used]
        else:
            js = [index(r, "x") for r in (ref if isinstance(ref, list) else [ref])]
        columns = []
        for j in js:
            c = _column(cols[j])
            if c.dtype.kind != "f":
                raise DataError(f"{path}: x column '{names[j]}' holds text (e.g. {c[0]!r}); "
                                f"x columns must be numbers (leave it out of x, or make it y)")
            columns.append(c)
        if not columns:
            return np.zeros((len(cols[0]) if cols else 0, 0), np.float32)
        return np.stack(columns, axis=1).astype(np.float32)

    used = set()
    y = sw = None
    if "y" in spec:
        ref = spec["y"]
        y = {k: label_column(v) for k, v in ref.items()} if isinstance(ref, dict) \
            else label_column(ref)
    if "sample_weight" in spec:
        j = index(spec["sample_weight"], "sample_weight")
        used.add(j)
        sw = _column(cols[j])
        if sw.dtype.kind != "f":
            raise DataError(f"{path}: sample_weight column '{names[j]}' holds text "
                            f"(e.g. {sw[0]!r}); it must be numbers")
    ref = spec.get("x", "rest")
    x = {k: features(v) for k, v in ref.items()} if isinstance(ref, dict) else features(ref)
    return x, y, sw


READERS = {".npz": read_npz, ".npy": read_npy, ".csv": read_csv,
           ".h5": read_hdf5, ".hdf5": read_hdf5}
