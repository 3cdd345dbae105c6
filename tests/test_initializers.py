import numpy as np
import pytest

from trainer.initializers import fans
from trainer.config.families import initializers


def test_fans_follow_keras():
    assert fans((3, 5)) == (3, 5)
    assert fans((3, 3, 4, 8)) == (36, 72)


@pytest.mark.parametrize("name,var", [
    ("glorot_uniform", 2 / (200 + 300)), ("he_uniform", 2 / 200), ("lecun_uniform", 1 / 200),
    ("glorot_normal", 2 / (200 + 300)), ("he_normal", 2 / 200), ("lecun_normal", 1 / 200),
])
def test_variance_scaling_variances(name, var):
    w = initializers.get(name)((200, 300), np.random.default_rng(0), np.float64)
    assert w.shape == (200, 300)
    assert abs(w.var() / var - 1) < 0.05


def test_uniform_limits_and_constants():
    rng = np.random.default_rng(0)
    w = initializers.get("glorot_uniform")((10, 30), rng, np.float32)
    assert w.dtype == np.float32 and np.abs(w).max() <= np.sqrt(6 / 40)
    assert np.all(initializers.get({"constant": 0.3})((2,), rng, np.float32) == np.float32(0.3))
    assert np.all(initializers.get("ones")((2,), rng, np.float32) == 1)
    w = initializers.get({"random_uniform": {"minval": 1, "maxval": 2}})((1000,), rng, np.float64)
    assert w.min() >= 1 and w.max() < 2


@pytest.mark.parametrize("spec,match", [
    ({"RandomUniform": {"minval": 1.0, "maxval": 0.0}}, "minval ≤ maxval"),
    ({"RandomUniform": {"minval": float("-inf")}}, "minval ≤ maxval"),
    ({"RandomNormal": {"stddev": -1.0}}, "stddev ≥ 0"),
    ({"TruncatedNormal": {"mean": float("nan")}}, "finite mean"),
])
def test_initializer_arguments_numpy_would_reject_are_config_errors(spec, match):
    """Found by the .keras mutation fuzzer: a reversed range ended as NumPy's
    'high - low < 0', an internal error."""
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        initializers.get(spec)
