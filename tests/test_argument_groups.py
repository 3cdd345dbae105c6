"""Shared Keras arguments are declared once (layers/argument_groups.py, the optimizers'
COMMON) and composed into each signature by ``@arguments``; the schema, the scalar
shorthand and ``config_of`` read the composed signature (test_config proves the schema
file did not change)."""

import inspect
from pathlib import Path

import pytest

import trainer
from trainer.config.registry import Args, arguments, parameters
from trainer.layers.core import Dense
from trainer.layers.recurrent import GRU, LSTM
from trainer.optimizers.adamw import AdamW


def test_composed_signature_keeps_the_keras_order():
    assert list(parameters(Dense)) == [
        "units", "activation", "use_bias", "kernel_initializer", "bias_initializer",
        "kernel_regularizer", "bias_regularizer", "name", "trainable",
        "activity_regularizer"]
    lstm = list(parameters(LSTM))
    assert lstm[lstm.index("bias_initializer") + 1] == "unit_forget_bias"
    gru = list(parameters(GRU))
    assert gru[gru.index("unroll") + 1] == "reset_after"
    assert list(parameters(AdamW))[-5:] == ["decay", "clipnorm", "clipvalue",
                                           "global_clipnorm", "lr"]


def test_composed_init_takes_positional_and_keyword_arguments_with_defaults():
    layer = Dense(3, "relu", False, "zeros", name="d", kernel_regularizer="l2")
    assert (layer.units, layer.use_bias, layer.name) == (3, False, "d")
    assert layer.kernel_initializer.registered_name == "zeros"
    assert layer.bias_initializer.registered_name == "zeros"
    assert layer.kernel_regularizer.registered_name == "l2"
    assert Dense(2).bias_regularizer is None and Dense(2).trainable is True
    opt = AdamW(learning_rate=0.01, clipnorm=1.0, lr=0.5)
    assert opt.clipnorm == 1.0 and opt.learning_rate == 0.5  # lr wins, as Keras 2


def test_composed_init_errors_name_the_class():
    with pytest.raises(TypeError, match=r"Dense.__init__\(\) .*units"):
        Dense()
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        Dense(3, bogus=1)


def test_every_own_parameter_is_placed():
    group = Args(b=(int, 1))
    with pytest.raises(AssertionError, match="name every own parameter"):
        @arguments("a", group)
        def init(self, a, c=2, **args):
            pass


def test_shared_arguments_are_declared_once():
    root = Path(trainer.__file__).parent
    lines = ('kernel_initializer: component("initializer")',
             'kernel_regularizer: component("regularizer")', "clipnorm: Clip")
    found = [f"{p.relative_to(root)}: {line}" for p in root.rglob("*.py")
             for line in lines if line in p.read_text(encoding="utf-8")]
    assert found == [], found
    assert inspect.signature(Dense.__init__).parameters["kernel_initializer"].default == \
        "glorot_uniform"
