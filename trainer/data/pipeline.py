"""From the data section to ready splits: read, split, preprocess, check.

In-memory sources are preprocessed once, whole. Lazy sources (HDF5, memory-mapped
.npy; see ``trainer.data.lazy``) stay on disk: ``Split.take`` reads the rows of a batch
and preprocesses them then, statistics having been fitted in one streaming pass.
Under MPI each rank streams its share of a lazy file and the ranks combine what they
learnt (``trainer.data.ranks``).
"""

import numpy as np

from trainer.data.lazy import is_lazy
from trainer.data.preprocessor import Preprocessor
from trainer.data.ranks import agree, read_exactly
from trainer.data.sources import load_source
from trainer.data.split import Split, batches, class_ids, sample_weight_array
from trainer.data.validation import validation_rows
from trainer.errors import DataError

__all__ = ["Preprocessor", "Split", "batches", "check_split", "class_ids",
           "make_preprocessor", "prepare", "probes",
           "read_split", "validation_rows"]


def _keyed(value, names, role):
    """An array or a name → array mapping, as a mapping in the model's name order."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        if len(names) != 1:
            raise DataError(f"the model has {len(names)} {role}s ({', '.join(names)}); "
                            f"map the data to them by name, e.g. {role}: {{{names[0]}: ...}}")
        return {names[0]: value}
    missing = [n for n in names if n not in value]
    extra = [k for k in value if k not in names]
    if missing or extra:
        raise DataError(f"data {role}s {sorted(value)} do not match the model's "
                        f"{role}s {names}")
    return {n: value[n] for n in names}


def read_split(cfg, key, input_names, output_names):
    x, y, sw = load_source(cfg, cfg["data"][key], ("data", key))
    if sw is not None and not is_lazy(sw):
        sw = sample_weight_array(sw, ("data", key))
    return Split(_keyed(x, input_names, "input"), _keyed(y, output_names, "output"), sw)


def check_split(split, where, world=None):
    """Problems any split can have, before training: no rows, non-numbers. Under MPI
    rank 0 checks the first rows of a lazy split (the rows one process checks); the
    other ranks read none of them."""
    if len(split) == 0:
        raise DataError(f"{where} holds no rows")
    if not probes(split, world):
        return
    probe = split.probe()
    for role, arrays in (("input", probe.x), ("output", probe.y)):
        for name, a in arrays.items():
            a = np.asarray(a)
            if a.dtype.kind not in "biuf":
                hint = (" — text labels need `class_ids` (for sparse losses) or `one_hot` in "
                        "data.preprocess.y" if role == "output" and a.dtype.kind in "US" else "")
                sample = f" (e.g. {a.reshape(-1)[0].item()!r})" if a.size else ""
                raise DataError(f"{where}: {role} '{name}' holds {a.dtype} values{sample}; "
                                f"numbers are needed{hint}")
            if a.ndim >= 2 and 0 in a.shape[1:]:
                raise DataError(f"{where}: {role} '{name}' has an empty shape {a.shape}")


def probes(split, world):
    """Whether this process checks the first rows of ``split`` (``Split.probe``): one
    process does; under MPI rank 0 does for a lazy split (any rank, whole in memory)."""
    return world is None or world.is_root or not split.lazy


def make_preprocessor(cfg, input_names, output_names):
    """The config's preprocess section as steps; user steps come from its folder."""
    from trainer.errors import ConfigError
    from trainer.config.usercomponents import using

    try:
        with using(cfg):
            return Preprocessor(cfg["data"].get("preprocess", {}), input_names, output_names)
    except ConfigError as exc:
        if exc.where is not None:
            raise
        raise ConfigError(f"data.preprocess: {exc.message}",
                          where=cfg.where(("data", "preprocess"))) from None


def prepare(cfg, input_names, output_names, need=("train", "validation", "test"),
            preprocessor_state=None, world=None):
    """Read and preprocess the splits named in ``need``.

    Returns ``(splits, preprocessor)``; statistics come from the training split, or
    from ``preprocessor_state`` (a saved run) when given. A validation split taken
    from the training data has ``rows``: which rows it took. ``world`` (MPI, every
    rank calls this): each rank reads its share of a lazy training file for the
    statistics, the first rows' checks are rank 0's, and each rank then reads only
    the rows of each batch it holds (trainer.data.ranks); a failure on one rank is
    every rank's.
    """
    data = cfg["data"]
    pre = make_preprocessor(cfg, input_names, output_names)
    raw = {}
    if "train" in need or preprocessor_state is None:
        raw["train"] = agree(world, lambda: read_split(cfg, "train", input_names,
                                                       output_names))
    val_spec = data.get("validation")
    if "validation" in need and val_spec is not None:
        if "split" in val_spec:
            train = raw["train"]
            rows = validation_rows(train, val_spec["split"], val_spec.get("mode", "tail"),
                                   cfg.get("seed", 0), world)
            keep = np.ones(len(train), bool)
            keep[rows] = False
            raw["validation"] = train.subset(rows)
            raw["train"] = train.subset(np.flatnonzero(keep))
        else:
            raw["validation"] = agree(world, lambda: read_split(
                cfg, "validation", input_names, output_names))
    if "test" in need and "test" in data:
        raw["test"] = agree(world, lambda: read_split(cfg, "test", input_names,
                                                      output_names))
    if preprocessor_state is not None:
        pre.set_state(preprocessor_state)
    else:
        if len(raw["train"]) == 0:
            raise DataError("data.train holds no rows")
        pre.fit(raw["train"], "data.train", world)

    def finish():
        splits = {k: pre.apply(v) for k, v in raw.items() if k in need}
        for k, split in splits.items():
            if world is not None:
                read_exactly(split)
            check_split(split, f"data.{k}", world)
        return splits

    return agree(world, finish), pre
