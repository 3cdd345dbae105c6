"""Data-parallel training over MPI (issue 27): `mpiexec -n N trainer fit` reaches what
one process reaches, rank 0 alone writes the run, and faults stop every rank.

Runs real `mpiexec` subprocesses (MPICH from the `mpich` wheel, mpi4py); skipped when
either is missing. The configs are small and float64 (so the float-summation-order
differences between rank counts stay far below the tolerances); 3 ranks on a 2-core
machine oversubscribe, which MPICH handles (its waits yield the core).
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH")

CONFIG = """\
name: mpi
seed: 5
dtype: float64
data:
  train: {path: data.npz, x: x, y: y}
  validation: {path: data.npz, x: xv, y: yv}
model:
  input_shape: [6]
  layers:
    - Dense: {units: 12, activation: relu, kernel_regularizer: {l2: 0.001}}
    - BatchNormalization
    - Dropout: {rate: 0.3}
    - GaussianNoise: {stddev: 0.1}
    - Dense: {units: 3, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  optimizer: {Adam: {lr: 0.01}}
  metrics: [accuracy]
fit: {epochs: 3, batch_size: 16, class_weight: balanced}
"""
TIMEOUT = 120


def _env():
    env = dict(os.environ)
    env.pop("PMI_SIZE", None)  # never inherit a launcher's world
    env.pop("PMI_RANK", None)
    return env


def trainer(folder, *args, ranks=None, timeout=TIMEOUT, mpi=()):
    """`trainer ARGS` in ``folder``, in one process or under mpiexec -n ranks."""
    command = [sys.executable, "-m", "trainer", *map(str, args)]
    if ranks is not None:
        command = [MPIEXEC, *mpi, "-n", str(ranks), *command]
    return subprocess.run(command, cwd=folder, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mpi")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    # 60 training rows: batches of 16, 16, 16, 12 (3 ranks: 6/5/5 and 4/4/4 rows)
    np.savez(folder / "data.npz", x=x[:60], y=y[:60], xv=x[60:], yv=y[60:])
    (folder / "config.yaml").write_text(CONFIG)
    return folder


@pytest.fixture(scope="module")
def runs(project):
    """One process, 2 ranks twice, 3 ranks: each into its own run folder."""
    out = {}
    for key, ranks in (("one", None), ("two", 2), ("two_again", 2), ("three", 3)):
        result = trainer(project, "fit", "config.yaml", "--run-dir", f"run-{key}", "-q",
                         ranks=ranks)
        assert result.returncode == 0, result.stderr
        out[key] = project / f"run-{key}"
    return out


def weights(run):
    import h5py

    found = {}
    with h5py.File(run / "checkpoints" / "final.h5", "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" else None)
    return found


def history(run):
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def max_relative(a, b, floor=1e-3):
    """max |a - b| / max(|a|, |b|, floor), elementwise over matching arrays."""
    worst = 0.0
    for key in a:
        x, y = np.asarray(a[key], float), np.asarray(b[key], float)
        if x.size:
            scale = np.maximum(np.maximum(np.abs(x), np.abs(y)), floor)
            worst = max(worst, float(np.max(np.abs(x - y) / scale)))
    return worst


def assert_same_training(run, reference):
    a, b = weights(reference), weights(run)
    assert set(a) == set(b) and len(a) >= 8  # kernels, biases, gamma/beta, moving stats
    assert max_relative(a, b) <= 1e-5
    ha, hb = history(reference), history(run)
    assert len(ha) == len(hb) == 3
    for ra, rb in zip(ha, hb):
        for key in ("loss", "val_loss"):
            x, y = float(ra[key]), float(rb[key])
            assert abs(x - y) <= 1e-6 * abs(x), (key, x, y)
        assert float(ra["accuracy"]) == pytest.approx(float(rb["accuracy"]), abs=1e-12)


@pytest.mark.parametrize("key", ["two", "three"])
def test_ranks_reach_what_one_process_reaches(runs, key):
    assert_same_training(runs[key], runs["one"])


def test_the_same_rank_count_is_bit_identical(runs):
    a, b = weights(runs["two"]), weights(runs["two_again"])
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert (runs["two"] / "history.csv").read_text() == \
        (runs["two_again"] / "history.csv").read_text()


def test_rank_0_records_the_world_and_the_others_write_nothing(project, runs):
    meta = json.loads((runs["three"] / "run.json").read_text())
    assert meta["world"]["size"] == 3 and len(meta["world"]["ranks"]) == 3
    assert meta["world"]["hosts"] and meta["status"] == "completed"
    # without --run-dir: one run folder, made by rank 0
    result = trainer(project, "fit", "config.yaml", "--set", "fit.epochs=1", "-q", ranks=2)
    assert result.returncode == 0, result.stderr
    assert len(list((project / "runs").iterdir())) == 1


def test_resume_with_another_rank_count(project, runs):
    result = trainer(project, "fit", "config.yaml", "--run-dir", "run-resumed",
                     "--set", "fit.epochs=2", "-q", ranks=2)
    assert result.returncode == 0, result.stderr
    result = trainer(project, "fit", "--resume", "run-resumed", "--set", "fit.epochs=3", "-q",
                     ranks=3)
    assert result.returncode == 0, result.stderr
    assert_same_training(project / "run-resumed", runs["one"])


def test_evaluate_runs_distributed(project, runs):
    one = trainer(project, "evaluate", runs["one"], "--data", "train", "--json")
    three = trainer(project, "evaluate", runs["one"], "--data", "train", "--json", ranks=3)
    assert one.returncode == 0 and three.returncode == 0, three.stderr
    a, b = json.loads(one.stdout), json.loads(three.stdout)  # rank 0 alone prints
    assert a.keys() == b.keys()
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-9)
    assert b["accuracy"] == a["accuracy"]


def test_a_world_larger_than_the_batch_is_refused(project):
    result = trainer(project, "fit", "config.yaml", "--set", "fit.batch_size=2", ranks=3)
    assert result.returncode == 2
    assert "fit.batch_size >= 3" in result.stderr
    assert result.stderr.count("error:") == 1  # reported once, by rank 0
    assert not (project / "runs").exists() or len(list((project / "runs").iterdir())) <= 1


def test_ranks_that_disagree_on_the_config_are_refused(project):
    base = [sys.executable, "-m", "trainer", "fit", "config.yaml", "-q"]
    result = subprocess.run([MPIEXEC, "-n", "1", *base, ":", "-n", "1", *base,
                             "--set", "fit.epochs=4"], cwd=project, env=_env(),
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2
    assert "MPI rank 1 disagrees with rank 0 on the config" in result.stderr


def test_a_sweep_under_mpi_is_refused(project):
    (project / "sweep.yaml").write_text("base: config.yaml\ngrid: {fit.epochs: [1, 2]}\n")
    result = trainer(project, "sweep", "sweep.yaml", ranks=2)
    assert result.returncode == 2
    assert "does not run under MPI" in result.stderr


def test_data_that_cannot_be_read_stops_every_rank_with_exit_3(project):
    """A lazily read .npy with a NaN in a row: the start-up check finds it on every
    rank; all exit 3, the message (naming the rank) printed once."""
    data = np.load(project / "data.npz")
    x = data["x"].copy()
    x[40, 2] = np.nan
    np.save(project / "x_nan.npy", x)
    np.save(project / "y_nan.npy", data["y"])
    config = CONFIG.replace("train: {path: data.npz, x: x, y: y}",
                            "train: {path: x_nan.npy, y_path: y_nan.npy}")
    (project / "nan.yaml").write_text(config)
    result = trainer(project, "fit", "nan.yaml", "--run-dir", "run-nan", "-q", ranks=2)
    assert result.returncode == 3, result.stderr
    assert "MPI rank 0 of 2: data.train: input 'input' holds 1 NaN/Inf" in result.stderr
    assert "first in row 40" in result.stderr and result.stderr.count("error:") == 1


class FakeWorld:
    """What ``startup`` asks of a World, with the other ranks' answers given."""

    def __init__(self, rank, answers):
        self.rank, self.size, self.answers = rank, len(answers), answers

    def allgather(self, value):
        return [value if r == self.rank else a for r, a in enumerate(self.answers)]


def test_one_ranks_data_error_becomes_every_ranks():
    from trainer.distributed.startup import together
    from trainer.errors import DataError

    failure = ("DataError", 3, "data.train: cannot read x.npy")

    def fails():
        raise DataError("data.train: cannot read x.npy")

    for rank in range(3):  # rank 1 fails; ranks 0 and 2 read fine, and stop alike
        world = FakeWorld(rank, [None, failure, None])
        with pytest.raises(DataError) as caught:
            together(world, fails if rank == 1 else (lambda: 7))
        assert caught.value.exit_code == 3 and caught.value.agreed
        assert str(caught.value) == "MPI rank 1 of 3: data.train: cannot read x.npy"
    assert together(FakeWorld(0, [None, None]), lambda: 7) == 7


def test_check_same_names_the_differing_rank():
    from trainer.distributed.startup import check_same
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="MPI rank 2 disagrees with rank 0 on the config "
                                          "\\(hash bbb against aaa\\)") as caught:
        check_same(FakeWorld(0, ["aaa", "aaa", "bbb"]), "config", "aaa")
    assert caught.value.exit_code == 2
    check_same(FakeWorld(1, ["aaa", "aaa"]), "config", "aaa")


def test_without_mpi4py_a_launched_world_says_how_to_install(monkeypatch):
    from trainer.distributed import world
    from trainer.errors import ConfigError

    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    monkeypatch.setattr(world, "_state", {"world": None, "checked": False})
    with pytest.raises(ConfigError, match=r"4 ranks but mpi4py is not installed.*"
                                          r"pip install 'trainer\[mpi\]'"):
        world.current()


def test_one_process_is_no_world(monkeypatch):
    from trainer.distributed import world

    for name in world.SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(world, "_state", {"world": None, "checked": False})
    assert world.current() is None
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    monkeypatch.setattr(world, "_state", {"world": None, "checked": False})
    assert world.current() is None


def test_interrupt_checkpoints_every_rank_stops_and_resume_continues(project):
    args = ["fit", "config.yaml", "--run-dir", "run-int", "--set", "fit.epochs=100000", "-q"]
    command = [MPIEXEC, "-n", "2", sys.executable, "-m", "trainer", *args]
    proc = subprocess.Popen(command, cwd=project, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    last = project / "run-int" / "checkpoints" / "last.h5"
    deadline = time.monotonic() + 60
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "continue with `trainer fit --resume" in err
    meta = json.loads((project / "run-int" / "run.json").read_text())
    assert meta["status"] == "interrupted"
    epochs = len(history(project / "run-int"))
    result = trainer(project, "fit", "--resume", "run-int", "--set", f"fit.epochs={epochs + 1}",
                     "-q", ranks=3)
    assert result.returncode == 0, result.stderr
    assert len(history(project / "run-int")) == epochs + 1


def test_a_killed_rank_stops_the_others_within_seconds(project):
    args = ["fit", "config.yaml", "--run-dir", "run-kill", "--set", "fit.epochs=100000", "-q"]
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "trainer", *args],
                            cwd=project, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    last = project / "run-kill" / "checkpoints" / "last.h5"
    deadline = time.monotonic() + 60
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    ranks = json.loads((project / "run-kill" / "run.json").read_text())["world"]["ranks"]
    os.kill(ranks[1]["pid"], signal.SIGKILL)
    start = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 10
    assert proc.returncode != 0
    assert f"PID {ranks[1]['pid']}" in out + err  # MPICH's report names the pid,
    assert f"rank 1 pid {ranks[1]['pid']} on " in err  # our start-up line its rank


def test_a_config_error_is_reported_once_with_its_exit_code(project):
    (project / "bad.yaml").write_text(CONFIG.replace("units: 12", "units: -12"))
    result = trainer(project, "fit", "bad.yaml", ranks=2)
    assert result.returncode == 2
    assert result.stderr.count("error:") == 1
    assert "MPI rank 0 of 2: " in result.stderr and "(bad.yaml:10:22)" in result.stderr
    assert "Abort" not in result.stderr


def test_the_quickstart_config_trains_alike_on_two_ranks(tmp_path):
    """An example config as shipped (digits, Dropout), 3 epochs in float64."""
    config = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
    args = ["fit", config, "--set", "fit.epochs=3", "--set", "dtype=float64",
            "--set", "expect={}", "-q"]
    one = trainer(tmp_path, *args, "--run-dir", "one")
    two = trainer(tmp_path, *args, "--run-dir", "two", ranks=2)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max_relative(a, b) <= 1e-5
    for ra, rb in zip(history(tmp_path / "one"), history(tmp_path / "two")):
        assert float(rb["loss"]) == pytest.approx(float(ra["loss"]), rel=1e-6)
        assert float(rb["val_loss"]) == pytest.approx(float(ra["val_loss"]), rel=1e-6)


def test_a_rank_that_cannot_read_its_rows_mid_run_stops_every_rank(tmp_path):
    """A NaN the start-up check does not reach (a lazily read .npy, row 4000 of 5000):
    the rank whose share of a batch holds it reports it, rank and pid named, and MPI
    stops every rank with its exit code 3."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 6))
    x[4000, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x[:, 0] > 0).astype(np.int64))
    config = CONFIG.replace("train: {path: data.npz, x: x, y: y}",
                            "train: {path: x.npy, y_path: y.npy}")
    config = config.replace("  validation: {path: data.npz, x: xv, y: yv}\n", "")
    (tmp_path / "config.yaml").write_text(config.replace("batch_size: 16", "batch_size: 64")
                                          .replace("units: 3", "units: 2"))
    result = trainer(tmp_path, "fit", "config.yaml", "--run-dir", "run", "-q", ranks=2)
    assert result.returncode == 3, result.stderr
    assert "holds NaN/Inf values in 1 rows of a batch (first in row 4000)" in result.stderr
    assert "error: MPI rank " in result.stderr and "stopping every rank" in result.stderr


def test_predict_under_mpi_runs_once_on_rank_0(project, runs):
    np.save(project / "new.npy", np.load(project / "data.npz")["xv"][:5])
    result = trainer(project, "predict", runs["one"], "--input", "new.npy", "--output",
                     "preds.csv", ranks=2)
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).count("5 predictions") == 1
    assert len((project / "preds.csv").read_text().splitlines()) == 6  # header + 5 rows
