"""Every registered component round-trips through its config, as Keras's
``run_class_serialization_test``: build it, read its resolved config back
(``config_of``), build again from that, and the config is the same.

The components that need arguments get them from REQUIRED; a new component with a
required argument must be added there (the test says which)."""

import pytest

from trainer.config import families
from trainer.config.registry import config_of

#: (family, name) -> the arguments a component cannot be built without
REQUIRED = {
    ("layer", "Dense"): {"units": 3},
    ("layer", "Activation"): {"activation": "relu"},
    ("layer", "Dropout"): {"rate": 0.5},
    ("layer", "SpatialDropout1D"): {"rate": 0.5},
    ("layer", "SpatialDropout2D"): {"rate": 0.5},
    ("layer", "SpatialDropout3D"): {"rate": 0.5},
    ("layer", "GaussianNoise"): {"stddev": 0.1},
    ("layer", "GaussianDropout"): {"rate": 0.5},
    ("layer", "AlphaDropout"): {"rate": 0.5},
    ("layer", "Conv1D"): {"filters": 2, "kernel_size": 3},
    ("layer", "Conv2D"): {"filters": 2, "kernel_size": 3},
    ("layer", "Conv3D"): {"filters": 2, "kernel_size": 3},
    ("layer", "Conv1DTranspose"): {"filters": 2, "kernel_size": 3},
    ("layer", "Conv2DTranspose"): {"filters": 2, "kernel_size": 3},
    ("layer", "Conv3DTranspose"): {"filters": 2, "kernel_size": 3},
    ("layer", "DepthwiseConv1D"): {"kernel_size": 3},
    ("layer", "DepthwiseConv2D"): {"kernel_size": 3},
    ("layer", "SeparableConv1D"): {"filters": 2, "kernel_size": 3},
    ("layer", "SeparableConv2D"): {"filters": 2, "kernel_size": 3},
    ("layer", "Embedding"): {"input_dim": 10, "output_dim": 4},
    ("layer", "MultiHeadAttention"): {"num_heads": 2, "key_dim": 4},
    ("layer", "Dot"): {"axes": 1},
    ("layer", "Rescaling"): {"scale": 0.5},
    ("layer", "Resizing"): {"height": 4, "width": 4},
    ("layer", "CenterCrop"): {"height": 4, "width": 4},
    ("layer", "SimpleRNN"): {"units": 3},
    ("layer", "LSTM"): {"units": 3},
    ("layer", "GRU"): {"units": 3},
    ("layer", "Reshape"): {"target_shape": [2, 3]},
    ("layer", "Permute"): {"dims": [2, 1]},
    ("layer", "RepeatVector"): {"n": 2},
    ("layer", "Bidirectional"): {"layer": {"LSTM": {"units": 3}}},
    ("layer", "TimeDistributed"): {"layer": {"Dense": {"units": 3}}},
    ("schedule", "CosineDecay"): {"initial_learning_rate": 0.1, "decay_steps": 10},
    ("schedule", "CosineDecayRestarts"): {"initial_learning_rate": 0.1,
                                          "first_decay_steps": 10},
    ("schedule", "ExponentialDecay"): {"initial_learning_rate": 0.1, "decay_steps": 10,
                                       "decay_rate": 0.9},
    ("schedule", "InverseTimeDecay"): {"initial_learning_rate": 0.1, "decay_steps": 10,
                                       "decay_rate": 0.5},
    ("schedule", "PiecewiseConstantDecay"): {"boundaries": [10.0], "values": [0.1, 0.01]},
    ("schedule", "PolynomialDecay"): {"initial_learning_rate": 0.1, "decay_steps": 10},
    ("schedule", "StepDecay"): {"initial_learning_rate": 0.1},
    ("callback", "CSVLogger"): {"filename": "log.csv"},
    ("callback", "ModelCheckpoint"): {"filepath": "w.h5"},
    ("callback", "LearningRateScheduler"): {"schedule": {"StepDecay": {
        "initial_learning_rate": 0.1}}},
    ("preprocessing step", "rescale"): {"scale": 0.5},
    ("preprocessing step", "reshape"): {"target_shape": [2, 3]},
    ("preprocessing step", "cast"): {"dtype": "float32"},
    ("preprocessing step", "clip"): {"min": 0.0},
}

CASES = [(kind, name) for kind, registry in sorted(families.ALL.items())
         for name in registry.names()]


def test_the_table_names_only_registered_components():
    assert set(REQUIRED) <= set(CASES)


@pytest.mark.parametrize("kind,name", CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_round_trip(kind, name):
    registry = families.ALL[kind]
    args = REQUIRED.get((kind, name))
    first = registry.get({name: args} if args else name)
    config = config_of(first)
    again = registry.get(config)
    assert type(again) is type(first)
    assert config_of(again) == config, f"{kind} {name}: {config} != {config_of(again)}"
    if args:  # the given arguments are in the resolved config (normalised: 3 -> [3, 3])
        assert set(args) <= set(config[registry.canonical(name)])
