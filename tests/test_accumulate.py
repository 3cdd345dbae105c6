"""Gradient accumulation (`fit.accumulate_steps`): batch_size B with k steps is the
k·B batch of one process, run as k micro-batches of B — the same weights and history
within float summation order (float64 here), optimizer steps counted everywhere,
exact resume, a smaller peak; BatchNormalization's statistics per micro-batch."""

import os
import signal
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from data_helpers import cli
from resume_helpers import QUICK, StopAt, assert_same_run, contents, fit, resume
from trainer.app import fit as api
from trainer.build.builder import build_model
from trainer.callbacks.base import Callback
from trainer.config.loader import from_dict
from trainer.errors import ConfigError, InterruptedRun
from trainer.training import data_parallel
from trainer.store import checkpoint
from trainer.training.loop import Loop, random_streams

# float64, Dropout (the noise stream), an L2 penalty, class weights (sample weights of
# every row), Adam (its slots), accuracy (a metric accumulator); the training rows
# are no multiple of 30 or 35, so the epoch's last batch is partial
EXACT = ["fit.epochs=2", "fit.verbose=0", "expect={}", "dtype=float64",
         "model.layers.1.Dense.kernel_regularizer={l2: 0.001}", "fit.class_weight=balanced",
         "compile.weighted_metrics=[accuracy]"]


def run(run_dir, *sets, callbacks=()):
    api.fit(api.load_config(QUICK, [*EXACT, *sets]), run_dir=run_dir, callbacks=callbacks)
    return contents(run_dir / "checkpoints/last.h5"), (run_dir / "history.csv").read_text()


def rows(history):
    lines = history.strip().splitlines()
    return lines[0], [np.array(line.split(","), float) for line in lines[1:]]


@pytest.fixture(scope="module")
def big_batch(tmp_path_factory):
    return run(tmp_path_factory.mktemp("big") / "r", "fit.batch_size=30")


@pytest.mark.parametrize("micro,k", [(10, 3), (7, 5)])  # 7·5 ≠ 30: a partial micro-batch
def test_micro_batches_reach_what_the_big_batch_reaches(tmp_path, big_batch, micro, k):
    weights, history = big_batch
    if micro * k != 30:
        weights, history = run(tmp_path / "big", f"fit.batch_size={micro * k}")
    got, got_history = run(tmp_path / "r", f"fit.batch_size={micro}",
                           f"fit.accumulate_steps={k}")
    assert sorted(got) == sorted(weights)
    floats = [n for n, v in weights.items()
              if not n.endswith("@state") and np.asarray(v).dtype.kind == "f"]
    assert any("kernel" in n for n in floats) and any("slot" in n for n in floats)
    for name in floats:
        a, b = np.asarray(weights[name]), np.asarray(got[name])
        assert np.max(np.abs(a - b)) <= 1e-10 * max(np.max(np.abs(a)), 1e-3), name
    head, want = rows(history)
    got_head, have = rows(got_history)
    assert head == got_head and "weighted_accuracy" in head
    for a, b in zip(want, have):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=0)


def test_accumulating_is_thread_invariant(tmp_path):
    from trainer.engine.kernels import parallel

    before = parallel.num_threads()
    try:
        out = []
        for threads in (1, 2):
            parallel.set_num_threads(threads)
            run_dir = tmp_path / str(threads)
            api.fit(api.load_config(QUICK, [
                "fit.epochs=2", "fit.verbose=0", "expect={}", "fit.class_weight=balanced",
                "fit.batch_size=64", "fit.accumulate_steps=2",
                "model.layers.1.Dense.units=512"]), run_dir=run_dir)
            out.append((contents(run_dir / "checkpoints/last.h5"),
                        (run_dir / "history.csv").read_text()))
    finally:
        parallel.set_num_threads(before)
    (a, ha), (b, hb) = out
    assert ha == hb
    assert all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a
               if not k.endswith("@state"))


class Count(Callback):
    def __init__(self):
        super().__init__()
        self.sizes, self.lrs = [], []

    def on_batch_end(self, batch, logs=None):
        self.sizes.append(logs["size"])
        self.lrs.append(self.model.optimizer.current_lr())

    def on_train_end(self, logs=None):
        self.iterations = self.model.optimizer.iterations


def test_steps_callbacks_and_schedules_count_optimizer_steps(tmp_path):
    counter = Count()
    schedule = ("compile.optimizer={SGD: {lr: {ExponentialDecay: "
                "{initial_learning_rate: 0.1, decay_steps: 1, decay_rate: 0.5}}}}")
    run(tmp_path / "r", "fit.batch_size=4", "fit.accumulate_steps=3", "fit.steps_per_epoch=5",
        schedule, callbacks=[counter])
    assert counter.params["steps"] == 5 and counter.params["accumulate_steps"] == 3
    assert counter.sizes == [12] * 10  # 2 epochs × 5 steps of 3 micro-batches of 4
    assert counter.iterations == 10
    np.testing.assert_allclose(counter.lrs, 0.1 * 0.5 ** np.arange(1, 11))


# -- exact resume: checkpoints only at optimizer-step boundaries ----------------------
ACC = ["fit.batch_size=8", "fit.accumulate_steps=2"]  # TINY's 16-row steps, halved


@pytest.mark.parametrize("n", [4, 6])  # mid-epoch, and an epoch's last step
def test_interrupt_mid_run_then_resume_is_bit_identical(tmp_path, n):
    fit(tmp_path / "straight", *ACC)
    with pytest.raises(InterruptedRun):
        fit(tmp_path / "stopped", *ACC, callbacks=[StopAt(n)])
    resume(tmp_path / "stopped")
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")


def test_a_signal_between_micro_batches_stops_after_the_whole_step(tmp_path, monkeypatch):
    # Ctrl-C lands while the 2nd micro-batch of the 5th optimizer step is read: the
    # step finishes, the checkpoint is the boundary after it, and resuming from there
    # ends where the straight run ends, bit for bit
    fit(tmp_path / "straight", *ACC)
    reads = []
    original = Loop.take

    def take(self, rows):
        reads.append(len(rows))
        if len(reads) == 10:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, rows)

    monkeypatch.setattr(Loop, "take", take)
    with pytest.raises(InterruptedRun):
        fit(tmp_path / "stopped", *ACC)
    monkeypatch.setattr(Loop, "take", original)
    assert len(reads) == 10  # no micro-batch after the step's last
    state, _ = checkpoint.read_state(tmp_path / "stopped/checkpoints/last.h5")
    assert (state["loop"]["epoch"], state["loop"]["step"]) == (0, 5)
    resume(tmp_path / "stopped")
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")


# -- BatchNormalization: statistics per micro-batch ----------------------------------
def test_batch_normalization_takes_each_micro_batchs_statistics():
    cfg = from_dict({"data": {"train": {"dataset": "iris"}}, "dtype": "float64",
                     "model": {"input_shape": [3], "layers": [
                         {"BatchNormalization": {"momentum": 0.5}},
                         {"Dense": {"units": 2, "activation": "softmax"}}]},
                     "compile": {"loss": "categorical_crossentropy",
                                 "optimizer": {"SGD": {"lr": 0.1}}}}, Path("t.yaml"))
    model = build_model(cfg)
    x = np.random.default_rng(0).normal(size=(6, 3)) * [1, 2, 3] + [1, -1, 5]
    y = np.eye(2)[[0, 1, 0, 0, 1, 1]]
    data_parallel.optimizer_step(model, None, np.arange(6), lambda r: ([x[r]], [y[r]], None),
                                 micro=3, streams=random_streams(model).values())
    bn, = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    # two updates of momentum 0.5, one per micro-batch of 3 rows
    want = 0.25 * 0 + 0.25 * x[:3].mean(0) + 0.5 * x[3:].mean(0)
    np.testing.assert_allclose(bn.buffers["moving_mean"].reshape(-1), want, rtol=1e-12)


def test_batch_normalization_unbiased_variance_counts_the_micro_batch():
    """The fused (4-D float32) path updates the moving variance with the unbiased
    variance, m/(m-1) times the biased: m counts the values of the micro-batch the
    statistics came from (it counted the whole step's k·B rows)."""
    cfg = from_dict({"data": {"train": {"dataset": "iris"}},
                     "model": {"input_shape": [2, 2, 3], "layers": [
                         {"BatchNormalization": {"momentum": 0.5}}, "Flatten",
                         {"Dense": {"units": 2, "activation": "softmax"}}]},
                     "compile": {"loss": "categorical_crossentropy",
                                 "optimizer": {"SGD": {"lr": 0.1}}}}, Path("t.yaml"))
    model = build_model(cfg)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(6, 2, 2, 3)) * [1, 2, 3] + [1, -1, 5]).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[[0, 1, 0, 0, 1, 1]]
    data_parallel.optimizer_step(model, None, np.arange(6), lambda r: ([x[r]], [y[r]], None),
                                 micro=3, streams=random_streams(model).values())
    bn, = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    first, second = (x[:3].reshape(-1, 3).var(0, ddof=1), x[3:].reshape(-1, 3).var(0, ddof=1))
    want = 0.25 * 1 + 0.25 * first + 0.5 * second  # 12 values per feature, not 24
    np.testing.assert_allclose(bn.buffers["moving_variance"].reshape(-1), want, rtol=1e-5)


# -- refused: a loss masked per timestep ---------------------------------------------
def test_a_timestep_masked_loss_is_refused():
    layers = [{"Embedding": {"input_dim": 5, "output_dim": 3, "mask_zero": True}},
              {"LSTM": {"units": 2, "return_sequences": True}},
              {"TimeDistributed": {"layer": {"Dense": {"units": 3,
                                                        "activation": "softmax"}}}}]
    cfg = from_dict({"data": {"train": {"dataset": "iris"}},
                     "model": {"input_shape": [4], "layers": layers},
                     "compile": {"loss": "sparse_categorical_crossentropy",
                                 "optimizer": "sgd"}}, Path("t.yaml"))
    model = build_model(cfg)
    ids = np.array([[1, 2, 0, 0], [3, 0, 0, 0], [4, 4, 4, 0], [1, 1, 1, 1]], np.int32)
    labels = np.ones((4, 4), np.int64)
    before = [p.copy() for p in model.params()]
    with pytest.raises(ConfigError, match="fit.accumulate_steps > 1 cannot train output"):
        data_parallel.optimizer_step(model, None, np.arange(4),
                                     lambda r: ([ids[r]], [labels[r]], None), micro=2)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.params()))  # no update


# -- bad values: exit 2 with the config path and file:line ---------------------------
@pytest.mark.parametrize("value", ["0", "-2", "2.5", "'3'", "true"])
def test_a_bad_accumulate_steps_exits_2_naming_it(tmp_path, value):
    text = QUICK.read_text().replace("  batch_size: 32",
                                     f"  batch_size: 32\n  accumulate_steps: {value}")
    (tmp_path / "c.yaml").write_text(text)
    r = cli("fit", tmp_path / "c.yaml", "--run-dir", tmp_path / "r", "-q")
    assert r.exit_code == 2, r.output
    line = text.splitlines().index(f"  accumulate_steps: {value}") + 1
    assert "fit.accumulate_steps: expected" in r.output and f"c.yaml:{line}:" in r.output
    assert "Traceback" not in r.output


def test_a_bad_allreduce_dtype_exits_2_naming_it(tmp_path):
    text = QUICK.read_text().replace("  batch_size: 32",
                                     "  batch_size: 32\n  allreduce_dtype: float16")
    (tmp_path / "c.yaml").write_text(text)
    r = cli("fit", tmp_path / "c.yaml", "--run-dir", tmp_path / "r", "-q")
    assert r.exit_code == 2 and "fit.allreduce_dtype" in r.output, r.output


# -- the point of it: a smaller peak -------------------------------------------------
class Peak(Callback):
    """The most memory (tracemalloc: NumPy's arrays included) any step but the first
    allocated on top of what was live when it began."""

    def __init__(self):
        super().__init__()
        self.peak = 0

    def on_batch_begin(self, batch, logs=None):
        tracemalloc.reset_peak()
        self.start = tracemalloc.get_traced_memory()[0]

    def on_batch_end(self, batch, logs=None):
        if batch:
            self.peak = max(self.peak, tracemalloc.get_traced_memory()[1] - self.start)


def test_peak_memory_falls_with_accumulate_steps(tmp_path):
    def peak(*sets):
        p = Peak()
        api.fit(api.load_config(QUICK, ["fit.epochs=1", "fit.steps_per_epoch=3",
                                        "fit.verbose=0", "expect={}",
                                        "model.layers.1.Dense.units=1024", *sets]),
                run_dir=tmp_path / str(len(sets)) / sets[-1], callbacks=[p])
        return p.peak

    tracemalloc.start()
    try:
        whole = peak("fit.batch_size=256")
        split = peak("fit.batch_size=32", "fit.accumulate_steps=8")
    finally:
        tracemalloc.stop()
    assert split < 0.5 * whole, (split, whole)


def test_the_new_keys_stay_out_of_a_resolved_config_unless_set():
    # runs stored before they existed (no such keys in their config.yaml) resume: a
    # filled-in default would be a config difference a resume refuses
    fit_cfg = api.load_config(QUICK, [])["fit"]
    assert "accumulate_steps" not in fit_cfg and "allreduce_dtype" not in fit_cfg
    fit_cfg = api.load_config(QUICK, ["fit.accumulate_steps=2"])["fit"]
    assert fit_cfg["accumulate_steps"] == 2
