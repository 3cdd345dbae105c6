"""Every optimizer against its Keras 2 update rule written out in NumPy, with clipping
and decay; dtypes kept; state saved in checkpoints so training continues exactly."""

import math

import numpy as np
import pytest

from trainer.app.fit import _clean
from trainer.errors import ConfigError
from trainer.optimizers.base import Optimizer
from trainer.config.families import optimizers
from trainer.config.registry import config_of

# Three steps of gradients for two parameters (a 3×2 kernel and a bias of 2).
P0 = [np.array([[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]]), np.array([0.1, -0.2])]
GRADS = [
    [np.array([[0.3, -0.6], [1.2, 0.05], [-0.4, 0.9]]), np.array([0.7, -0.1])],
    [np.array([[-0.2, 0.4], [0.8, -0.3], [0.6, 0.1]]), np.array([-0.5, 0.25])],
    [np.array([[1.5, 0.2], [-0.9, 0.4], [0.3, -2.0]]), np.array([0.05, 0.6])],
]


# -- the rules, one step for one parameter, written from the Keras 2 formulas --------

def sgd(p, g, lr, s, t, momentum=0.0, nesterov=False):
    if momentum == 0:
        return p - lr * g
    v = momentum * s.get("v", 0.0) - lr * g
    s["v"] = v
    return p + momentum * v - lr * g if nesterov else p + v


def rmsprop(p, g, lr, s, t, rho=0.9, epsilon=1e-7, centered=False, momentum=0.0):
    s["ms"] = rho * s.get("ms", 0.0) + (1 - rho) * g ** 2
    d = s["ms"]
    if centered:
        s["mg"] = rho * s.get("mg", 0.0) + (1 - rho) * g
        d = s["ms"] - s["mg"] ** 2
    if momentum:  # tf's fused kernel: ε inside the root
        s["mom"] = momentum * s.get("mom", 0.0) + lr * g / np.sqrt(d + epsilon)
        return p - s["mom"]
    return p - lr * g / (np.sqrt(d) + epsilon)


def adam(p, g, lr, s, t, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
    s["m"] = beta_1 * s.get("m", 0.0) + (1 - beta_1) * g
    s["v"] = beta_2 * s.get("v", 0.0) + (1 - beta_2) * g ** 2
    v = s["v"]
    if amsgrad:
        s["vhat"] = np.maximum(s.get("vhat", 0.0), s["v"])
        v = s["vhat"]
    lr_t = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    return p - lr_t * s["m"] / (np.sqrt(v) + epsilon)


def adamw(p, g, lr, s, t, weight_decay=0.004, **kw):
    return adam(p - lr * weight_decay * p, g, lr, s, t, **kw)


def adagrad(p, g, lr, s, t, initial_accumulator_value=0.1, epsilon=1e-7):
    s["a"] = s.get("a", initial_accumulator_value) + g ** 2
    return p - lr * g / (np.sqrt(s["a"]) + epsilon)


def adadelta(p, g, lr, s, t, rho=0.95, epsilon=1e-7):
    s["a"] = rho * s.get("a", 0.0) + (1 - rho) * g ** 2
    delta = np.sqrt(s.get("d", 0.0) + epsilon) / np.sqrt(s["a"] + epsilon) * g
    s["d"] = rho * s.get("d", 0.0) + (1 - rho) * delta ** 2
    return p - lr * delta


def adamax(p, g, lr, s, t, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    s["m"] = beta_1 * s.get("m", 0.0) + (1 - beta_1) * g
    s["u"] = np.maximum(beta_2 * s.get("u", 0.0), np.abs(g))
    return p - lr / (1 - beta_1 ** t) * s["m"] / (s["u"] + epsilon)


def nadam(p, g, lr, s, t, beta_1=0.9, beta_2=0.999, epsilon=1e-7, schedule_decay=0.004):
    # Dozat's momentum schedule; the cache is the product of every μ so far
    mu = [beta_1 * (1 - 0.5 * 0.96 ** (schedule_decay * k)) for k in range(1, t + 2)]
    cache = math.prod(mu[:t])
    s["m"] = beta_1 * s.get("m", 0.0) + (1 - beta_1) * g
    s["v"] = beta_2 * s.get("v", 0.0) + (1 - beta_2) * g ** 2
    g_prime = g / (1 - cache)
    m_prime = s["m"] / (1 - cache * mu[t])
    v_prime = s["v"] / (1 - beta_2 ** t)
    m_bar = (1 - mu[t - 1]) * g_prime + mu[t] * m_prime
    return p - lr * m_bar / (np.sqrt(v_prime) + epsilon)


# (config name, reference rule, arguments, the default lr)
CASES = [
    ("sgd", sgd, {}, 0.01),
    ("SGD", sgd, {"momentum": 0.9}, 0.01),
    ("SGD", sgd, {"momentum": 0.9, "nesterov": True}, 0.01),
    ("rmsprop", rmsprop, {}, 0.001),
    ("RMSprop", rmsprop, {"rho": 0.8, "epsilon": 1e-3}, 0.001),
    ("RMSprop", rmsprop, {"centered": True}, 0.001),
    ("RMSprop", rmsprop, {"momentum": 0.5}, 0.001),
    ("RMSprop", rmsprop, {"momentum": 0.5, "centered": True}, 0.001),
    ("adam", adam, {}, 0.001),
    ("Adam", adam, {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3}, 0.001),
    ("Adam", adam, {"amsgrad": True}, 0.001),
    ("adagrad", adagrad, {}, 0.001),
    ("Adagrad", adagrad, {"initial_accumulator_value": 0.5}, 0.001),
    ("adadelta", adadelta, {}, 0.001),
    ("Adadelta", adadelta, {"rho": 0.9, "epsilon": 1e-6}, 0.001),
    ("adamax", adamax, {}, 0.001),
    ("nadam", nadam, {}, 0.001),
    ("Nadam", nadam, {"schedule_decay": 0.1}, 0.001),
    ("adamw", adamw, {}, 0.001),
    ("AdamW", adamw, {"weight_decay": 0.1, "amsgrad": True}, 0.001),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in a.items()) or 'defaults'}" for n, _, a, _ in CASES]


def clip_ref(grads, clipnorm=None, clipvalue=None, global_clipnorm=None):
    """Keras 2 order: clip_by_value, then clip_by_norm each, then clip_by_global_norm."""
    if clipvalue is not None:
        grads = [np.minimum(np.maximum(g, -clipvalue), clipvalue) for g in grads]
    if clipnorm is not None:
        grads = [g * clipnorm / max(np.sqrt((g ** 2).sum()), clipnorm) for g in grads]
    if global_clipnorm is not None:
        norm = np.sqrt(sum((g ** 2).sum() for g in grads))
        grads = [g * global_clipnorm / max(norm, global_clipnorm) for g in grads]
    return grads


def reference(rule, args, lr, decay=0.0, lr_at=None, **clip):
    params = [p.copy() for p in P0]
    states = [{} for _ in params]
    for step, grads in enumerate(GRADS):
        rate = lr_at(step) if lr_at else lr
        rate = rate / (1 + decay * step)
        for i, g in enumerate(clip_ref(grads, **clip)):
            params[i] = rule(params[i], g, rate, states[i], step + 1, **args)
    return params


def run(spec, dtype=np.float64, steps=3):
    opt = optimizers.get(spec)
    params = [p.astype(dtype) for p in P0]
    for grads in GRADS[:steps]:
        opt.apply(params, [g.astype(dtype) for g in grads])
    return opt, params


VARIANTS = {
    "plain": {},
    "clipnorm": {"clipnorm": 0.9},
    "clipvalue": {"clipvalue": 0.5},
    "global_clipnorm": {"global_clipnorm": 1.5},
    "clipvalue+clipnorm": {"clipvalue": 1.0, "clipnorm": 0.8},
    "decay": {"decay": 0.5},
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name, rule, args, default_lr", CASES, ids=IDS)
def test_three_steps_follow_the_keras2_rule(name, rule, args, default_lr, variant):
    extra = VARIANTS[variant]
    lr = 0.05
    _, got = run({name: {**args, **extra, "learning_rate": lr}})
    clip = {k: v for k, v in extra.items() if k != "decay"}
    want = reference(rule, args, lr, decay=extra.get("decay", 0.0), **clip)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)
    # the clipping and decay variants really change something
    if variant != "plain":
        plain = reference(rule, args, lr)
        assert not all(np.allclose(g, w, rtol=1e-9) for g, w in zip(got, plain))


@pytest.mark.parametrize("name, rule, args, default_lr", CASES, ids=IDS)
def test_defaults_are_keras2s(name, rule, args, default_lr):
    opt = optimizers.get({name: args or None})
    assert opt.current_lr() == default_lr
    _, got = run({name: args or None})
    want = reference(rule, args, default_lr)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


def test_hand_computed_first_steps():
    # SGD: 0.5 - 0.1 * 2 = 0.3; with momentum 0.9: v = -0.2, then v = -0.18 - 0.2
    opt, p = run_scalar({"SGD": {"lr": 0.1, "momentum": 0.9}}, [2.0, 2.0])
    assert p == pytest.approx(0.5 - 0.2 - 0.38)
    # Nesterov: v1 = -0.2, p += 0.9 * -0.2 - 0.2
    opt, p = run_scalar({"SGD": {"lr": 0.1, "momentum": 0.9, "nesterov": True}}, [2.0])
    assert p == pytest.approx(0.5 - 0.38)
    # Adam's first step is lr·sign(g) up to ε: m = 0.1g, v = 0.001g², lr_t = lr·√0.001/0.1
    opt, p = run_scalar({"Adam": {"lr": 0.01, "epsilon": 0.0}}, [4.0])
    assert p == pytest.approx(0.5 - 0.01, rel=1e-12)
    # RMSprop: v = 0.1·g² → step lr·g/(√0.1·|g|) = lr/√0.1
    opt, p = run_scalar({"RMSprop": {"lr": 0.01, "epsilon": 0.0}}, [-3.0])
    assert p == pytest.approx(0.5 + 0.01 / math.sqrt(0.1), rel=1e-12)
    # Adagrad: a = 0.1 + 0.09 = 0.19
    opt, p = run_scalar({"Adagrad": {"lr": 0.1, "epsilon": 0.0}}, [0.3])
    assert p == pytest.approx(0.5 - 0.1 * 0.3 / math.sqrt(0.19), rel=1e-12)
    # clipnorm 1 makes a gradient of 4 into 1; decay 1 halves the second step's lr
    opt, p = run_scalar({"SGD": {"lr": 0.1, "clipnorm": 1.0, "decay": 1.0}}, [4.0, 4.0])
    assert p == pytest.approx(0.5 - 0.1 - 0.05)


@pytest.mark.parametrize("spec, steps, want", [
    ({"SGD": {"learning_rate": 0.1}}, 1, 0.9 * 1.0),
    ({"SGD": {"learning_rate": 0.1, "momentum": 0.9}}, 2, 1.0 - 0.1 - 0.18),
    ({"Adam": {"learning_rate": 0.1}}, 1, 9.9),
    ({"RMSprop": {"learning_rate": 0.1}}, 1, 9.683772),
    ({"Nadam": {"learning_rate": 0.2}}, 1, 9.8),  # printed with "{:.1f}" there
], ids=lambda v: str(v)[:24])
def test_the_examples_in_keras_docstrings(spec, steps, want):
    """tf.keras 2.x docstrings: minimise var²/2 (gradient = var) from var = 1 or 10."""
    opt = optimizers.get(spec)
    var = np.array([1.0 if "SGD" in spec else 10.0])
    for _ in range(steps):
        opt.apply([var], [var.copy()])
    assert float(var[0]) == pytest.approx(want, abs=0.05 if "Nadam" in spec else 1e-6)


def run_scalar(spec, grads):
    opt = optimizers.get(spec)
    p = np.array([0.5])
    for g in grads:
        opt.apply([p], [np.array([g])])
    return opt, float(p[0])


def test_clipping_alone():
    opt = Optimizer(clipnorm=1.0)
    big, small = np.array([3.0, 4.0]), np.array([0.3, 0.4])
    out = opt.clip([big, small])
    np.testing.assert_allclose(out[0], [0.6, 0.8])
    assert out[1] is small  # under the norm: untouched
    out = Optimizer(global_clipnorm=1.0).clip([big, np.array([0.0, 0.0, 0.0])])
    np.testing.assert_allclose(out[0], [0.6, 0.8])
    out = Optimizer(global_clipnorm=10.0).clip([big, np.array([12.0])])  # joint norm 13
    np.testing.assert_allclose(np.concatenate(out), np.array([3.0, 4.0, 12.0]) * 10 / 13)
    out = Optimizer(clipvalue=0.5).clip([np.array([-2.0, 0.1, 0.7])])
    np.testing.assert_allclose(out[0], [-0.5, 0.1, 0.5])
    # clipvalue first, then clipnorm: [3, 4] → [1, 1] → norm √2 → [0.5, 0.5]·√2
    out = Optimizer(clipvalue=1.0, clipnorm=1.0).clip([big])
    np.testing.assert_allclose(out[0], [1 / math.sqrt(2)] * 2)


@pytest.mark.parametrize("name, rule, args, default_lr", CASES, ids=IDS)
def test_float32_stays_float32(name, rule, args, default_lr):
    spec = {name: {**args, "lr": 0.05, "clipnorm": 0.9}}
    opt, params = run(spec, dtype=np.float32)
    originals = [id(p) for p in params]
    opt.apply(params, [g.astype(np.float32) for g in GRADS[0]])
    assert [id(p) for p in params] == originals  # updated in place
    for p in params:
        assert p.dtype == np.float32
    for slots in opt.slots:
        for name_, value in slots.items():
            assert value.dtype == np.float32, name_
    # and the same numbers as float64 up to float32 rounding
    _, want = run(spec, dtype=np.float64, steps=3)
    _, got = run(spec, dtype=np.float32, steps=3)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)


def test_every_update_computes_in_the_parameter_dtype(monkeypatch):
    """No float64 temporaries: every array an update produces from float32 inputs is
    float32 (a float64 one would mean a silent promotion, then a cast back)."""
    seen = []
    real = np.ndarray.__isub__

    class Spy(np.ndarray):
        def __isub__(self, other):
            seen.append(np.asarray(other).dtype)
            return real(self, other)

        def __iadd__(self, other):
            seen.append(np.asarray(other).dtype)
            return np.ndarray.__iadd__(self, other)

    extras = [{"clipnorm": 0.5, "clipvalue": 1.0},
              {"global_clipnorm": 0.5, "decay": 0.1, "learning_rate": {"CosineDecay": {
                  "initial_learning_rate": 0.1, "decay_steps": 5}}}]
    for name, _, args, _ in CASES:
        for extra in extras:
            opt = optimizers.get({name: {**args, **extra}})
            params = [p.astype(np.float32).view(Spy) for p in P0]
            for grads in GRADS:
                opt.apply(params, [g.astype(np.float32) for g in grads])
    assert seen and set(seen) == {np.dtype(np.float32)}


@pytest.mark.parametrize("name", optimizers.names())
def test_config_round_trips_and_keeps_learning_rate_only(name):
    opt = optimizers.get({name: {"lr": 0.02}})
    cfg = config_of(opt)
    args = cfg[name]
    assert args["learning_rate"] == 0.02 and args["lr"] is None
    assert "lr" not in _clean(cfg)[name]
    again = optimizers.get(_clean(cfg))
    assert config_of(again) == cfg


def test_lr_and_learning_rate_and_a_schedule():
    assert optimizers.get({"adam": {"learning_rate": 0.3}}).current_lr() == 0.3
    assert optimizers.get({"adam": {"lr": 0.2, "learning_rate": 0.3}}).current_lr() == 0.2
    assert optimizers.get({"adam": 0.25}).current_lr() == 0.25  # the bare-value shorthand
    opt = optimizers.get({"SGD": {"lr": {"ExponentialDecay": {
        "initial_learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.5}}, "decay": 1.0}})
    lrs, bases = [], []
    for _ in range(3):
        lrs.append(opt.current_lr())
        bases.append(opt.base_lr())
        opt.apply([np.zeros(1)], [np.ones(1)])
    # schedule at iterations 0, 1, 2, then time decay 1/(1 + iterations)
    assert bases == pytest.approx([0.1, 0.05, 0.025])
    assert lrs == pytest.approx([0.1, 0.05 / 2, 0.025 / 3])
    opt.lr_override = 0.4  # a callback's value replaces the schedule; decay still applies
    assert (opt.base_lr(), opt.current_lr()) == pytest.approx((0.4, 0.4 / 4))
    cfg = config_of(opt)["SGD"]["learning_rate"]
    assert cfg == {"ExponentialDecay": {"initial_learning_rate": 0.1, "decay_steps": 1,
                                        "decay_rate": 0.5, "staircase": False}}


def test_schedule_as_lr_follows_the_rule():
    lr_at = lambda step: 0.1 * 0.5 ** step  # noqa: E731
    sched = {"ExponentialDecay": {"initial_learning_rate": 0.1, "decay_steps": 1,
                                  "decay_rate": 0.5}}
    _, got = run({"Adam": {"learning_rate": sched, "clipvalue": 1.0}})
    want = reference(adam, {}, None, lr_at=lr_at, clipvalue=1.0)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


@pytest.mark.parametrize("spec, words", [
    ({"SGD": {"clipnorm": 1.0, "global_clipnorm": 1.0}}, "clipnorm or global_clipnorm"),
    ({"SGD": {"momentum": 1.5}}, "SGD.momentum: expected a number <= 1.0, got 1.5"),
    ({"Adam": {"clipvalue": 0}}, "Adam.clipvalue: expected a number > 0, got 0"),
    ({"Adam": {"lr": -1}}, "Adam.learning_rate: expected a number >= 0.0, got -1"),
    ({"Adagrad": {"initial_accumulator_value": -0.1}}, "initial_accumulator_value"),
    ({"SGD": {"lr": {"CosineDecai": {}}}}, "Did you mean 'CosineDecay'?"),
    ({"SGD": {"lr": "banana"}}, "unknown schedule 'banana'"),
])
def test_bad_arguments_are_config_errors(spec, words):
    with pytest.raises(ConfigError) as e:
        optimizers.get(spec)
    assert words in str(e.value)


# -- checkpoints: state saved, restored, and training continues exactly ---------------

def test_state_round_trips_through_get_and_set():
    opt, params = run("nadam")
    opt.lr_override = 0.0125
    state = opt.get_state()
    assert {"iterations", "lr_override", "scalar/momentum_cache", "slot/0/m", "slot/1/v"} \
        <= set(state)
    fresh = optimizers.get("nadam")
    fresh.set_state({k: np.array(v) for k, v in state.items()}, params)
    assert fresh.iterations == 3 and fresh.current_lr() == 0.0125
    assert fresh.scalars == opt.scalars
    for a, b in zip(opt.slots, fresh.slots):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    state["slot/0/m"] = np.zeros((2, 2))
    with pytest.raises(ConfigError, match=r"'slot/0/m': the model needs shape \(3, 2\)"):
        fresh.set_state(state, params)


def small_config(optimizer):
    from trainer.config import loader as config
    return config.from_dict({
        "seed": 3,
        "data": {"train": {"dataset": "iris"}},
        "model": {"input_shape": [4], "layers": [
            {"Dense": {"units": 5, "activation": "tanh"}},
            {"Dense": {"units": 3, "activation": "softmax"}}]},
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": optimizer},
        "fit": {"epochs": 1},
    }, "test.yaml")


def batches(n):
    rng = np.random.default_rng(7)
    return [([rng.normal(size=(8, 4)).astype(np.float32)],
             [rng.integers(0, 3, size=(8,))]) for _ in range(n)]


OPTIMIZER_SPECS = [
    {"SGD": {"lr": 0.1, "momentum": 0.9, "nesterov": True}},
    {"RMSprop": {"centered": True, "momentum": 0.5, "decay": 0.01}},
    {"Adam": {"amsgrad": True, "lr": {"CosineDecay": {
        "initial_learning_rate": 0.0, "warmup_target": 0.05, "warmup_steps": 3,
        "decay_steps": 10}}}},
    "adagrad", "adadelta", "adamax", "nadam", {"AdamW": {"weight_decay": 0.1}},
]


@pytest.mark.parametrize("spec", OPTIMIZER_SPECS, ids=lambda s: str(s)[:30])
def test_training_continued_from_a_checkpoint_is_bit_identical(spec, tmp_path):
    from trainer.store import checkpoint
    from trainer.build.builder import build_model

    data = batches(7)
    straight = build_model(small_config(spec))
    for xs, ys in data:
        straight.train_on_batch(xs, ys)

    first = build_model(small_config(spec))
    for xs, ys in data[:4]:
        first.train_on_batch(xs, ys)
    checkpoint.save(tmp_path / "k.h5", first)
    resumed = build_model(small_config(spec))
    checkpoint.load(tmp_path / "k.h5", resumed)
    assert resumed.optimizer.iterations == 4
    assert resumed.optimizer.current_lr() == first.optimizer.current_lr()
    for xs, ys in data[4:]:
        resumed.train_on_batch(xs, ys)

    for a, b in zip(straight.params(), resumed.params()):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    for sa, sb in zip(straight.optimizer.slots, resumed.optimizer.slots):
        assert sa.keys() == sb.keys()
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k])
    assert straight.optimizer.scalars == resumed.optimizer.scalars


def test_loading_state_of_another_optimizer_names_the_key(tmp_path):
    from trainer.store import checkpoint
    from trainer.build.builder import build_model

    model = build_model(small_config("adam"))
    xs, ys = batches(1)[0]
    model.train_on_batch(xs, ys)
    checkpoint.save(tmp_path / "k.h5", model)
    other = build_model(small_config("nadam"))
    with pytest.raises(ConfigError, match="Nadam state lacks 'scalar/momentum_cache'"):
        checkpoint.load(tmp_path / "k.h5", other)


@pytest.mark.parametrize("spec", [
    {"Adam": {}}, {"Adam": {"beta_1": 0.8, "epsilon": 1e-3, "decay": 0.01}},
    {"AdamW": {}}, {"RMSprop": {}}, {"RMSprop": {"rho": 0.5, "learning_rate": 0.1}},
    {"RMSprop": {"learning_rate": {"ExponentialDecay": {
        "initial_learning_rate": 0.01, "decay_steps": 2, "decay_rate": 0.5}}}}])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_updates_give_the_numpy_numbers_bit_for_bit(spec, threads, monkeypatch):
    """Adam and RMSprop take a one-pass compiled update for big float32 parameters
    (trainer/engine/kernels/fused.py); it must give exactly the NumPy rule's numbers,
    whatever the thread split — a run's numbers must not depend on a layer's size."""
    from trainer.engine.kernels import fused, parallel

    r = np.random.default_rng(7)
    shapes = [(33, 17), (40,), (3, 5, 7)]
    start = [r.normal(size=s).astype(np.float32) for s in shapes]
    grads = [[r.normal(size=s).astype(np.float32) * 10 ** e for s in shapes]
             for e in (-3, 0, 2, -1)]
    results, calls = [], []
    original = fused._update
    monkeypatch.setattr(fused, "_update",
                        lambda *a: calls.append(1) or original(*a))
    before = parallel.num_threads()
    try:
        parallel.set_num_threads(threads)
        for compiled in (False, True):
            monkeypatch.setattr(fused, "MIN_ELEMENTS", 2 if compiled else 1 << 40)
            monkeypatch.setattr(fused, "SMALL", 1 if compiled else 1 << 40)
            opt = optimizers.get(spec)
            params = [p.copy() for p in start]
            for g in grads:
                opt.apply(params, g)
            results.append((params, [dict(s) for s in opt.slots]))
    finally:
        parallel.set_num_threads(before)
    assert calls  # the compiled path ran
    (p0, s0), (p1, s1) = results
    for a, b in zip(p0, p1):
        np.testing.assert_array_equal(a, b)
        assert b.dtype == np.float32
    for a, b in zip(s0, s1):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
