"""`trainer predict`: a run's model on new inputs, with the run's preprocessing."""

import math
from pathlib import Path

import numpy as np

from trainer.errors import ConfigError, DataError
from trainer.fileio import atomic_path
from trainer.fileio import regular_file


def read_inputs(path, input_names):
    """Inputs from .npy (one input), .npz (by input name, or `x`, or its only array)
    or .csv (numeric columns, header optional)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"input file not found: {path}")
    regular_file(path, "--input")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arrays = {"x": _read_npy(path)}
    elif suffix == ".npz":
        from trainer.data.sources import read_npz
        arrays = read_npz(path)
    elif suffix == ".csv":
        arrays = {"x": _read_csv(path)}
    else:
        raise ConfigError(f"--input: unsupported file type '{suffix}' (use .npy, .npz, .csv)")
    if all(n in arrays for n in input_names):
        return {n: arrays[n] for n in input_names}
    if len(input_names) == 1:
        key = "x" if "x" in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)
        if key is not None:
            return {input_names[0]: arrays[key]}
    raise DataError(f"{path}: cannot find the model's inputs {input_names}; the file has "
                    f"{', '.join(sorted(arrays))}")


def _read_npy(path):
    """A .npy input mapped from the file (copy-on-write), not read into fresh memory:
    reading 200 MB of rows took ~0.5 s of CPU in a new process (the copy and the page
    faults of a fresh input-sized array), as long as the model's own work on them
    (issue 28); the batches read the mapped pages, the page cache's own."""
    try:
        x = np.load(path, mmap_mode="c", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "Python objects" in str(exc):
            raise DataError(f"{path}: cannot read without pickle ({exc})") from None
        raise DataError(f"{path}: not a readable .npy file, truncated or corrupt "
                        f"({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    # a plain array over the mapping: a memmap would hand its class to every slice
    return np.asarray(x) if x.dtype.kind in "biuf" and x.ndim >= 1 else np.array(x)


def _read_csv(path):
    import io

    from trainer.data.sources import csv_text

    text = csv_text(path)  # a regular file, bounded by this machine's memory
    first = text.split("\n", 1)[0]
    try:
        [float(v) for v in first.strip().split(",")]
        skip = 0
    except ValueError:
        skip = 1  # a header row
    try:
        return np.loadtxt(io.StringIO(text), delimiter=",", skiprows=skip, dtype=np.float64,
                          ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: not a numeric CSV ({exc})") from None


def write_outputs(path, outputs, names):
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            if len(outputs) != 1:
                raise ConfigError(f"--output: the model has {len(outputs)} outputs; write "
                                  f"them to a .npz file")
            with open(tmp, "wb") as f:
                np.save(f, outputs[0], allow_pickle=False)
        elif suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, **dict(zip(names, outputs)))
        elif suffix == ".csv":
            flat = [o.reshape(len(o), -1) for o in outputs]
            header = ",".join(f"{n}_{i}" for n, o in zip(names, flat) for i in range(o.shape[1]))
            np.savetxt(tmp, np.concatenate(flat, axis=1), delimiter=",", header=header,
                       comments="", fmt="%.8g")
        else:
            raise ConfigError(f"--output: unsupported file type '{suffix}' "
                              f"(use .npy, .npz, .csv)")


#: without --batch-size, predict runs batches of the fit batch size raised to up to
#: this many rows while one batch's inputs stay under PREDICT_BATCH_BYTES: at inference
#: every sample is independent, and bigger batches cost less per row (fewer calls; the
#: engine splits a batch of 128 or more over its threads — at 128 that left 64-row
#: GEMMs per thread, issue 28)
PREDICT_BATCH_ROWS = 1024
PREDICT_BATCH_BYTES = 32 << 20


def default_batch_size(split, fit_batch_size):
    """The batch size of ``trainer predict`` without --batch-size (see above)."""
    row_bytes = sum(x.dtype.itemsize * math.prod(x.shape[1:]) for x in split.x.values())
    rows = min(PREDICT_BATCH_ROWS, PREDICT_BATCH_BYTES // max(row_bytes, 1))
    return max(fit_batch_size, rows)


def _predict_rows(model, split, run_predict, batch_size, where):
    """The model's outputs for every row of ``split``, batch after batch in order, after
    the finite-input check (``model.check_finite_inputs``). Arrays in memory (or mapped)
    go as slices — views, where ``Split.take`` copies each batch's rows (3 MB a batch of
    the MLP's 1024 rows) — else through ``run_predict``. Float32 inputs are checked
    along the way: a batch's sum, taken as the batch is about to be read anyway, is
    finite unless the batch holds NaN/Inf (or finite values whose sum overflows) — and
    only then does the whole input take the model's check, which names the first bad
    row as before (after some batches ran; nothing is written). A separate pass over
    the whole input first cost ~9% of the MLP's predict (issue 28)."""
    simple = not (split.lazy or split.transform is not None or split.check is not None
                  or not len(split))
    along = simple and all(x.dtype == np.float32 for x in split.x.values())
    if not along:
        model.check_finite_inputs(split, where)
    if not simple:
        return run_predict(model, split, batch_size)
    outs = []
    for a in range(0, len(split), batch_size):
        xs = [x[a:a + batch_size] for x in split.x.values()]
        with np.errstate(over="ignore", invalid="ignore"):
            clean = all(np.isfinite(np.add.reduce(x, axis=None)) for x in xs)
        if not clean:
            model.check_finite_inputs(split, where)  # raises, or a sum overflowed
        outs.append(model.predict_on_batch(xs))
    return [np.concatenate(o) for o in zip(*outs)]


def predict(target, input_path, output_path=None, batch_size=None, checkpoint_path=None):
    """Predictions for the inputs in ``input_path`` of a run's final model, or of a
    CONFIG's model (its --checkpoint, or the weights the model names, or a fresh
    initialisation with a warning), with the preprocessing of the run or config."""
    from trainer.app import fit as api
    from trainer.app import evaluate as evaluate_lib
    from trainer.data.pipeline import Split, make_preprocessor, prepare
    from trainer.training.loop import predict as run_predict

    cfg, ckpt = evaluate_lib.final_checkpoint(target, checkpoint_path, command="predict")
    model, arrays = evaluate_lib.model_of(cfg, ckpt, "predict")
    pre = make_preprocessor(cfg, model.input_names, [])
    if arrays:
        pre.set_state(arrays)
    elif any(step.learns for steps in pre.steps["x"].values() for step in steps):
        # statistics (standardize, ...) come from the training data, as fit takes them
        _, pre = prepare(cfg, model.input_names, model.output_names, need=("train",))
    from trainer.data.images import image_inputs

    inputs = image_inputs(input_path, model)  # photo.jpg, a folder or a glob; else None
    if inputs is None:
        inputs = read_inputs(input_path, model.input_names)
    split = pre.apply(Split(inputs, {}))
    api.check_input_shapes(model, split, "--input")
    outputs = _predict_rows(model, split, run_predict,
                            batch_size or default_batch_size(split, cfg["fit"]["batch_size"]),
                            "--input")
    if output_path is not None:
        write_outputs(output_path, outputs, model.output_names)
    return outputs, model.output_names
