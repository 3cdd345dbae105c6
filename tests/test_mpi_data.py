"""Under MPI every rank reads only its rows of a lazily read source (issue 27), and the
commands that do not train run once.

The reads are instrumented, not inferred: ``reads.py`` (written below) wraps the lazy
sources' two disk reads (``_read``: a block of rows, ``_read_rows``: exactly the rows
of a batch) to log which rows each rank asked its files for, before training (until
the loop is built) and while training, then runs the `trainer` command. Blocks are made
100 rows long so a 1000-row file has ten of them: rank 0's share is rows 0..499, rank
1's 500..999. The inputs' rows are 4 KB (a page, or an HDF5 chunk of one row: read
row by row while training); the labels' 8-byte rows share pages with the other ranks'
rows and are read in whole blocks. What each rank must read while training is
computed here from the batch plan (``batches``) and the split of each batch over the
ranks (``shard.split``).
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mpi4py")
h5py = pytest.importorskip("h5py")
MPIEXEC = shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH")

N, BLOCK, SEED, BATCH, EPOCHS = 1000, 100, 3, 48, 2
FEATURES = 512
ROW_BYTES = FEATURES * 8  # x: float64 rows of 4 KB (the split's blocks follow the widest)

READS = """\
import atexit, json, os, sys
from trainer.data import lazy
from trainer.training import loop

lazy.BLOCK_BYTES = %d
log = {"phase": "start-up", "reads": []}


def logged(cls, name):
    read = getattr(cls, name, None)
    if read is None:
        return

    def wrapper(self, *args):
        rows = list(range(*args)) if name == "_read" else [int(r) for r in args[0]]
        log["reads"].append([log["phase"], os.path.basename(self.label), name, rows])
        return read(self, *args)
    setattr(cls, name, wrapper)


for cls in (lazy.MemmapArray, lazy.H5Array):
    logged(cls, "_read")
    logged(cls, "_read_rows")
built = loop.Loop.__init__


def init(self, *args, **kwargs):
    built(self, *args, **kwargs)
    log["phase"] = "training"


loop.Loop.__init__ = init
name = "reads-%%s-%%s.json" %% (os.environ["READS_TAG"], os.environ.get("PMI_RANK", "0"))
atexit.register(lambda: open(name, "w").write(json.dumps(log)))
from trainer.cli import main
main(sys.argv[1:], prog_name="trainer")
""" % (BLOCK * ROW_BYTES)

MODEL = """\
model:
  input_shape: [%d]
  layers:
    - Dense: {units: 8, activation: tanh}
    - Dense: {units: 3, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  optimizer: {Adam: {lr: 0.01}}
  metrics: [accuracy]
""" % FEATURES

SOURCES = {
    # .npy files memory-mapped; validation in memory; class weights from the labels
    "npy": ("""\
  train: {path: x.npy, y_path: y.npy}
  validation: {path: val.npz, x: x, y: y}
  preprocess: {x: [standardize]}
""", "class_weight: balanced, "),
    # one HDF5 file; a stratified validation split of its rows (the labels read at start-up)
    "h5": ("""\
  train: {path: d.h5, x: x, y: y}
  validation: {split: 0.2, mode: stratified}
  preprocess: {x: [{standardize: {per: global}}, {normalize: {low: -1}}]}
""", ""),
}


def config(kind):
    data, extra = SOURCES[kind]
    return (f"seed: {SEED}\ndtype: float64\ndata:\n{data}{MODEL}"
            f"fit: {{epochs: {EPOCHS}, batch_size: {BATCH}, {extra}"
            f"validation_batch_size: 64}}\n")


def _env(tag):
    env = dict(os.environ, READS_TAG=tag)
    env.pop("PMI_SIZE", None)
    env.pop("PMI_RANK", None)
    return env


def run(folder, tag, *args, ranks=None, script=True):
    command = [sys.executable, "reads.py" if script else "-m", *([] if script else ["trainer"]),
               *map(str, args)]
    if ranks is not None:
        command = [MPIEXEC, "-n", str(ranks), *command]
    return subprocess.run(command, cwd=folder, env=_env(tag), capture_output=True,
                          text=True, timeout=180)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mpi_data")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, FEATURES)) * np.linspace(1, 6, FEATURES) + np.arange(FEATURES)
    y = (x[:, 0] > 0.5).astype(np.int64) + (x[:, 1] > 2).astype(np.int64)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    xv = rng.normal(size=(100, FEATURES))
    np.savez(folder / "val.npz", x=xv, y=(xv[:, 0] > 0.5).astype(np.int64))
    with h5py.File(folder / "d.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(1, FEATURES))
        f.create_dataset("y", data=y, chunks=(50,))
    (folder / "reads.py").write_text(READS)
    for kind in SOURCES:
        (folder / f"{kind}.yaml").write_text(config(kind))
    return folder


def reads(folder, tag, rank, phase, method=None):
    log = json.loads((folder / f"reads-{tag}-{rank}.json").read_text())
    return [(file, m, rows) for p, file, m, rows in log["reads"]
            if p == phase and (method is None or m == method)]


def history(run_dir):
    lines = (run_dir / "history.csv").read_text().splitlines()
    names = lines[0].split(",")
    return [dict(zip(names, map(float, line.split(",")))) for line in lines[1:]]


def statistics(run_dir):
    out = {}
    with h5py.File(run_dir / "checkpoints" / "final.h5", "r") as f:
        f["trainer_state/arrays"].visititems(
            lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return out


def expected_training_rows(rank, train_rows, val_rows):
    """The rows of the file rank ``rank`` holds over the run: its part of every batch
    of every epoch (and of every validation batch)."""
    from trainer.data.split import batches
    from trainer.distributed.shard import split

    out = []
    for epoch in range(EPOCHS):
        plans = [(train_rows, batches(len(train_rows), BATCH, True, SEED, epoch, BLOCK))]
        if val_rows is not None:
            plans.append((val_rows, batches(len(val_rows), 64, False, 0, 0)))
        for rows, plan in plans:
            for batch in plan:
                lo, hi = split(len(batch), 2)[rank]
                out.extend(rows[batch[lo:hi]].tolist())
    return sorted(out)


@pytest.mark.parametrize("kind", SOURCES)
def test_each_rank_reads_only_its_rows_and_trains_as_one_process(project, kind):
    one = run(project, f"{kind}-one", "fit", f"{kind}.yaml", "--run-dir", f"{kind}-one", "-q")
    two = run(project, f"{kind}-two", "fit", f"{kind}.yaml", "--run-dir", f"{kind}-two", "-q",
              ranks=2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr

    # the same training: history and the preprocessing statistics
    for a, b in zip(history(project / f"{kind}-one"), history(project / f"{kind}-two"),
                    strict=True):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-12), key
    stats_one, stats_two = statistics(project / f"{kind}-one"), \
        statistics(project / f"{kind}-two")
    assert stats_one.keys() == stats_two.keys() and stats_one
    for key in stats_one:
        np.testing.assert_allclose(stats_two[key], stats_one[key], rtol=1e-12, atol=0)

    val_rows = None
    train_rows = np.arange(N)
    if kind == "h5":
        val_rows = np.load(project / f"{kind}-one" / "validation_rows.npy")
        assert np.array_equal(np.load(project / f"{kind}-two" / "validation_rows.npy"),
                              val_rows)
        train_rows = np.setdiff1d(train_rows, val_rows)
    shares = [(0, N // 2), (N // 2, N)]  # ten blocks of 100 rows: five each
    probed = set() if val_rows is None else set(val_rows[:256].tolist())
    for rank, (lo, hi) in enumerate(shares):
        # before training: only rows of its share (rank 0 also checks the first rows of
        # the validation split: the rows one process checks)
        start = reads(project, f"{kind}-two", rank, "start-up")
        outside = {r for _, _, rows in start for r in rows if not lo <= r < hi}
        assert outside <= (probed if rank == 0 else set()), (rank, sorted(outside)[:10])
        blocks = {r for _, m, rows in start if m == "_read" for r in rows}
        assert blocks == set(range(lo, hi))  # its whole share streamed
        # while training: exactly its rows of each batch of the inputs (4 KB rows);
        # whole blocks of the labels (8-byte rows), each about once per epoch
        train = reads(project, f"{kind}-two", rank, "training")
        inputs = {f for f, _, _ in train if f.startswith("x")}  # x.npy, d.h5:/x
        assert len(inputs) == 1 and len({f for f, _, _ in train}) == 2
        want = expected_training_rows(rank, train_rows, val_rows)
        assert sorted(r for f, m, rows in train if f in inputs for r in rows) == want
        assert {m for f, m, _ in train if f in inputs} == {"_read_rows"}
        labels = [rows for f, m, rows in train if f not in inputs]
        assert all(rows == list(range(rows[0], rows[0] + BLOCK)) and rows[0] % BLOCK == 0
                   for rows in labels)
        assert len(labels) <= 2 * EPOCHS * (N // BLOCK) * (2 if val_rows is not None else 1)
    # one process streams every row before training
    alone = {r for _, m, rows in reads(project, f"{kind}-one", 0, "start-up") if m == "_read"
             for r in rows}
    assert alone == set(range(N))


def test_a_nan_in_the_second_half_is_reported_as_one_process_reports_it(project):
    """Found by rank 1 in its share while the statistics are fitted; every rank stops
    with exit 3, the row and the file named once, as one process names them."""
    x = np.load(project / "x.npy")
    x[731, 400] = np.nan
    np.save(project / "x_nan.npy", x)
    (project / "nan.yaml").write_text(config("npy").replace("x.npy", "x_nan.npy"))
    one = run(project, "nan-one", "fit", "nan.yaml", "--run-dir", "nan-one", "-q")
    two = run(project, "nan-two", "fit", "nan.yaml", "--run-dir", "nan-two", "-q", ranks=2)
    assert one.returncode == 3 and two.returncode == 3, two.stderr
    message = "data.train: input 'input' holds NaN/Inf values (first in row 731 of x_nan.npy)"
    assert one.stderr.strip() == f"error: {message}"
    assert two.stderr.strip() == f"error: MPI rank 1 of 2: {message}"
    for rank, (lo, hi) in enumerate([(0, 500), (500, 1000)]):
        rows = {r for _, _, rs in reads(project, "nan-two", rank, "start-up") for r in rs}
        assert rows and all(lo <= r < hi for r in rows)
    assert not (project / "nan-two").exists() and not (project / "nan-one").exists()


def test_a_nan_under_a_statistic_names_its_row():
    """A standardize step used to learn NaN from a NaN row, which then spoilt every row:
    the error blamed row 0. The statistics pass names the row itself."""
    from trainer.data.pipeline import Preprocessor, Split
    from trainer.errors import DataError

    x = np.ones((300, 2))
    x[201, 1] = np.inf
    pre = Preprocessor({"x": ["standardize"]}, ["a"], [])
    with pytest.raises(DataError, match=r"data.train: input 'a' holds NaN/Inf values "
                                        r"\(first in row 201\)$"):
        pre.fit(Split({"a": x}, {}))
    sub = Split({"a": x}, {}).subset(np.arange(100, 300))  # the row numbers of the source
    with pytest.raises(DataError, match=r"first in row 201\)$"):
        pre.fit(sub)


class FakeWorld:
    """Two ranks, each the other's answers given: what ``gathered`` asks of a World."""

    def __init__(self, rank, size=2):
        self.rank, self.size, self.others = rank, size, None
        self.is_root = rank == 0

    def allgather(self, value):
        return [value if r == self.rank else self.others[r] for r in range(self.size)]


def test_statistics_combined_from_shares_equal_one_pass():
    """Standardize and normalize fitted by two ranks on their shares (combined in rank
    order) equal one process's streaming pass to 1e-12, also on values whose mean is
    2e4 times their spread (a naive sum of squares would lose 8 digits there; the
    pairwise merge's rounding grows with that ratio, ~1e-16 × it)."""
    from trainer.data.preprocessing.statistics import Normalize, Standardize

    rng = np.random.default_rng(1)
    x = rng.normal(size=(5003, 4)) * [0.5, 1, 10, 1e3] + [1e4, -3, 0, 7]
    for make in (lambda: Standardize(), lambda: Standardize(per="global"), Normalize):
        one = make()
        one.begin_fit()
        for start in range(0, len(x), 700):
            one.partial_fit(x[start:start + 700])
        one.end_fit()
        shares = []
        for lo, hi in [(0, 2800), (2800, 5003)]:
            part = make()
            part.begin_fit()
            for start in range(lo, hi, 700):
                part.partial_fit(x[start:min(start + 700, hi)])
            shares.append(part.partial())
        two = make()
        two.merge(shares)
        two.end_fit()
        for key, value in one.get_state().items():
            np.testing.assert_allclose(two.get_state()[key], value, rtol=1e-12, atol=0)


class Center:
    """A user's preprocessing step that cannot be combined from shares (``fit``)."""

    def fit(self, array):
        self.center = array.mean(axis=0)

    def __call__(self, array):
        return array - self.center


def test_a_users_step_is_fitted_by_rank_0_and_its_state_sent(tmp_path):
    from trainer.data.lazy import MemmapArray
    from trainer.data.pipeline import Preprocessor, Split
    from trainer.data.preprocessing.user import UserStep

    np.save(tmp_path / "a.npy", np.arange(2000.0).reshape(1000, 2))
    results = []
    for rank, others in [(0, [None, (None, None)]),
                         (1, [({"center": np.array([7.0, 8.0])}, None), None])]:
        array = MemmapArray(tmp_path / "a.npy", np.load(tmp_path / "a.npy", mmap_mode="r"))
        array.set_block(100)
        pre = Preprocessor({}, ["a"], [])
        pre.steps["x"]["a"] = [UserStep(Center(), "my_steps:Center")]
        world = FakeWorld(rank)
        world.others = others
        pre.fit(Split({"a": array}, {}), world=world)
        results.append((pre.steps["x"]["a"][0].inner.center, array.reads))
    assert results[0][0].tolist() == [999.0, 1000.0] and results[0][1] == 10  # every row
    assert results[1][0].tolist() == [7.0, 8.0] and results[1][1] == 0  # rank 0's state


def test_an_exact_read_reads_the_rows_asked_for_and_no_others():
    """A lazy format without a row picker of its own (image folders) reads each run of
    neighbouring rows; the rows come back in the order asked for."""
    from trainer.data.lazy import LazyArray

    class Logged(LazyArray):
        def __init__(self):
            super().__init__((50, 3), np.float64, 10, "a")
            self.data, self.log = np.arange(150.0).reshape(50, 3), []

        def _read(self, start, stop):
            self.log.append((start, stop))
            return self.data[start:stop]

    array = Logged()
    rows = np.array([7, 3, 4, 5, 40, 41, 3])
    assert np.array_equal(array.take(rows, exact=True), array.data[rows])
    assert array.log == [(3, 6), (7, 8), (40, 42)]


def test_shares_are_whole_blocks_in_rank_order(tmp_path):
    from trainer.data.lazy import MemmapArray
    from trainer.data.ranks import share

    np.save(tmp_path / "a.npy", np.zeros((1050, 2)))
    array = MemmapArray(tmp_path / "a.npy", np.load(tmp_path / "a.npy", mmap_mode="r"))
    array.set_block(100)  # eleven blocks: 6 + 5
    assert [share(array, FakeWorld(r)) for r in range(2)] == [(0, 600), (600, 1050)]
    assert [share(array, FakeWorld(r, 3)) for r in range(3)] == \
        [(0, 400), (400, 800), (800, 1050)]
    view = array.view(np.array([5, 7, 250, 251, 900, 1049]))  # rows in blocks 0, 2, 9, 10
    assert [share(view, FakeWorld(r)) for r in range(2)] == [(0, 4), (4, 6)]
    assert share(array, None) == (0, 1050)


# -- the commands that do not train run on rank 0 alone ---------------------------


@pytest.fixture(scope="module")
def trained(project):
    result = run(project, "cli", "fit", "npy.yaml", "--run-dir", "cli-run", "-q",
                 "--set", "fit.epochs=1", script=False)
    assert result.returncode == 0, result.stderr
    return project / "cli-run"


@pytest.mark.parametrize("args, output", [
    (["validate", "npy.yaml"], "npy.yaml: valid"),
    (["summary", "npy.yaml"], "Total params"),
    (["schema", "Dense"], "Dense (layer)"),
    (["export", "cli-run", "out.keras"], "wrote out.keras"),
    (["plot", "cli-run", "-o", "curves.png"], "wrote curves.png"),
])
def test_a_command_that_does_not_train_runs_once(project, trained, args, output):
    result = run(project, "cli", *args, ranks=2, script=False)
    assert result.returncode == 0, result.stderr
    both = result.stdout + result.stderr
    assert both.count(output) == 1, both
    written = args[2] if args[0] == "export" else "curves.png" if args[0] == "plot" else None
    if written:
        assert (project / written).stat().st_size > 0


def test_a_failing_command_reports_once_with_its_exit_code(project):
    (project / "bad.yaml").write_text(config("npy").replace("units: 8", "units: -8"))
    result = run(project, "cli", "validate", "bad.yaml", ranks=2, script=False)
    assert result.returncode == 2
    assert result.stdout.count("units") == 1 and "MPI" not in result.stdout + result.stderr
    result = run(project, "cli", "export", "no-run", "out.keras", ranks=2, script=False)
    assert result.returncode == 2  # a usage error (click's), printed once too
    assert result.stderr.count("Path 'no-run' does not exist") == 1, result.stderr
    result = run(project, "cli", "export", "cli-run", "out.txt", ranks=2, script=False)
    assert result.returncode == 2
    assert result.stderr.count("error: export: give --format") == 1, result.stderr
    assert "MPI" not in result.stderr and "Abort" not in result.stderr
