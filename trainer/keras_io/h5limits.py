"""Checks made before anything is read from an HDF5 file (data, checkpoint, Keras file).

Every HDF5 file trainer reads is opened with ``open_file``, which refuses what would
make it read another file's bytes: a dataset with external storage (h5py
``external=[('/etc/passwd', 0, 800)]``), a virtual dataset (rows mapped from other
files) and an external link (a name in this file that opens another file).

An HDF5 dataset declares its shape apart from what it stores: a chunked dataset of
shape (10**12, 10**6) costs a few bytes on disk and reads as fill values. Reading it
whole would allocate its declared size, and training on it would train on fill
values. So, before reading:

- a dataset read whole must fit in this machine's memory;
- one row of a dataset read per batch must fit in a fraction of it;
- every chunk of a numeric or fixed-length text dataset (all its bytes, when not
  chunked) must be stored: fewer means a writer died mid-way, and the missing rows
  would read as fill values;
- an attribute must be smaller than ``MAX_ATTR_BYTES``.
"""

import math

import numpy as np

from trainer.errors import DataError
from trainer.memory import human_size as _size
from trainer.memory import memory_bytes

MAX_ATTR_BYTES = 16 << 20


def open_file(path):
    """``path`` opened read-only with h5py, once ``check_file`` passed (closed on a
    DataError). h5py's OSError for an unreadable file passes through."""
    import h5py

    f = h5py.File(path, "r")
    try:
        check_file(f, path)
    except BaseException:
        f.close()
        raise
    return f


def check_file(f, label):
    """DataError naming ``label`` if any name in the open file ``f`` leads to another
    file's bytes (``check_storage``, external links)."""
    import h5py

    links, datasets = [], []  # collected, then checked: h5py's visitors mangle exceptions
    f.visititems_links(lambda name, info: links.append((name, info))
                       if isinstance(info, h5py.ExternalLink) else None)
    if links:
        name, info = links[0]
        raise DataError(f"{label}:/{name} is an external link to {info.filename}:"
                        f"{info.path}; trainer reads only the file it is given: refused")
    f.visititems(lambda name, obj: datasets.append((name, obj))
                 if isinstance(obj, h5py.Dataset) else None)
    for name, ds in datasets:
        check_storage(ds, f"{label}:/{name}")


def check_storage(ds, label):
    """DataError unless dataset ``ds`` keeps its bytes in its own file: external
    storage and virtual datasets read other files."""
    if ds.external:
        files = ", ".join(sorted({name.decode(errors="replace") if isinstance(name, bytes)
                                  else str(name) for name, *_ in ds.external}))
        raise DataError(f"{label}: its data is stored in other files ({files}), not in "
                        f"this one (HDF5 external storage); refused")
    if ds.is_virtual:
        raise DataError(f"{label}: a virtual dataset (its rows are mapped from other "
                        f"files); refused")


def check_dataset(ds, label, whole=True):
    """DataError naming ``label`` unless dataset ``ds`` can be read safely: whole
    (``whole=True``) or a row at a time."""
    check_storage(ds, label)
    shape = tuple(int(n) for n in ds.shape or ())
    declared = math.prod(shape) * ds.dtype.itemsize
    memory = memory_bytes()
    if whole and declared > memory:
        raise DataError(f"{label}: declares shape {shape} ({_size(declared)}), more than "
                        f"this machine's memory ({_size(memory)}); refused before reading")
    row = math.prod(shape[1:]) * ds.dtype.itemsize if shape else declared
    if row > memory // 8:
        raise DataError(f"{label}: one row of shape {shape[1:]} is {_size(row)}, more than "
                        f"an eighth of this machine's memory; refused before reading")
    if ds.dtype.kind in "biufcS" and declared:
        if ds.chunks:  # compressed or not: count the chunks written
            want = math.prod(-(-n // c) for n, c in zip(shape, ds.chunks))
            have = ds.id.get_num_chunks()
            missing = f"{want - have} of its {want} chunks were never written"
        else:
            want, have = declared, ds.id.get_storage_size()
            missing = f"only {_size(have)} of its {_size(declared)} are stored"
        if have < want:
            raise DataError(f"{label}: declares shape {shape} ({_size(declared)}) but "
                            f"{missing}: the file was not completely written (those rows "
                            f"would read as fill values); refused")


def check_attr(obj, name, label):
    """DataError unless attribute ``name`` of ``obj`` is small enough to read."""
    aid = obj.attrs.get_id(name)
    declared = math.prod(int(n) for n in (aid.shape or ())) * aid.dtype.itemsize
    try:
        stored = aid.get_storage_size()
    except RuntimeError:  # an empty attribute
        stored = 0
    if max(declared, stored) > MAX_ATTR_BYTES:
        raise DataError(f"{label}: attribute '{name}' is {_size(max(declared, stored))}, "
                        f"more than the {_size(MAX_ATTR_BYTES)} a trainer file may hold; "
                        f"refused before reading")


def attr(obj, name, label, default=None):
    """``obj.attrs[name]`` (or ``default`` when absent), its size checked first."""
    if name not in obj.attrs:
        return default
    check_attr(obj, name, label)
    return obj.attrs[name]


def read_dataset(ds):
    """A weight dataset, its declared size checked before it is read."""
    check_dataset(ds, f"{ds.file.filename}:{ds.name}")
    return np.asarray(ds)
