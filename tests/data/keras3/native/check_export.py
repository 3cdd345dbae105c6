"""Check trainer's Keras exports with real Keras 3 (run by hand; Keras is not a
dependency). Two steps, in two environments:

    python tests/data/keras3/native/check_export.py write /tmp/out     # with trainer
    python tests/data/keras3/native/check_export.py check /tmp/out     # with keras 3
                                                   (KERAS_BACKEND=torch or jax)

``write`` builds models covering every family of layers, gives them random weights,
and writes each as .keras and .h5 with its inputs and trainer's predictions; ``check``
loads every file with keras.saving.load_model and compares predictions. Seen with Keras
3.15.1 (torch backend), 2026-11-27: every .keras matches within 1e-5 (float32 rounding) except
self_attention (Keras 3's MultiHeadAttention drops the masks of its input tensors once
it has run, so the second attention layer on the same Embedding attends to padding;
trainer keeps the mask, as tf.keras 2); the .h5 files load except where Keras 3's
legacy reader can't: ThresholdedReLU (gone in Keras 3), tensor keywords (attention's
value=) and initial states, and hard_sigmoid computes Keras 3's function.
"""
import sys
from pathlib import Path

import numpy as np


def seq(shape, layers):
    return {"input_shape": shape, "layers": layers}

MODELS = {
 "conv1d": seq([12, 3], [{"Conv1D": {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu", "kernel_regularizer": {"l2": 0.01}}},
                         {"MaxPooling1D": {"pool_size": 2}}, {"ZeroPadding1D": {"padding": 1}}, {"Cropping1D": {"cropping": [1, 0]}},
                         {"UpSampling1D": {"size": 2}}, {"AveragePooling1D": {"pool_size": 2}}, {"SpatialDropout1D": {"rate": 0.2}},
                         {"GlobalMaxPooling1D": {}}, {"Dense": {"units": 3, "activation": "softmax"}}]),
 "conv2d": seq([8, 8, 2], [{"RandomFlip": {"mode": "horizontal"}}, {"Resizing": {"height": 9, "width": 7}},
                          {"CenterCrop": {"height": 8, "width": 6}}, {"ZeroPadding2D": {"padding": 1}}, {"Conv2D": {"filters": 3, "kernel_size": 3, "strides": 2, "dilation_rate": 1}},
                          {"Cropping2D": {"cropping": [[1, 0], [0, 1]]}}, {"UpSampling2D": {"size": 2}}, {"AveragePooling2D": {"pool_size": 2}},
                          {"SpatialDropout2D": {"rate": 0.1}}, {"GlobalMaxPooling2D": {}}, {"Dense": {"units": 2}}]),
 "shapes": seq([6], [{"Dense": {"units": 8, "activation": "elu"}}, {"Reshape": {"target_shape": [4, 2]}}, {"Permute": {"dims": [2, 1]}},
                     {"Flatten": {}}, {"RepeatVector": {"n": 3}}, {"SimpleRNN": {"units": 2, "return_sequences": True}},
                     {"GlobalAveragePooling1D": {}}]),
 "acts": seq([5], [{"Dense": {"units": 6}}, {"LeakyReLU": {"alpha": 0.2}}, {"Dense": {"units": 6}}, {"ELU": {"alpha": 0.7}},
                   {"Dense": {"units": 6}}, {"ReLU": {"max_value": 2.0, "negative_slope": 0.1}}, {"Dense": {"units": 6}},
                   {"PReLU": {}}, {"Dense": {"units": 6, "activation": "selu"}}, {"Dense": {"units": 6, "activation": "gelu"}},
                   {"Dense": {"units": 6, "activation": "swish"}}, {"Dense": {"units": 6, "activation": "softsign"}},
                   {"Dense": {"units": 6, "activation": "softplus"}},
                   {"ThresholdedReLU": {"theta": 0.1}}, {"GaussianNoise": {"stddev": 0.1}}, {"GaussianDropout": {"rate": 0.1}},
                   {"AlphaDropout": {"rate": 0.1}}, {"ActivityRegularization": {"l1": 0.01}},
                   {"Dense": {"units": 4}}, {"Softmax": {}}]),
 "norm": seq([4, 5], [{"BatchNormalization": {"momentum": 0.9, "epsilon": 0.01}}, {"LayerNormalization": {}},
                      {"Masking": {"mask_value": 0.0}}, {"GRU": {"units": 3, "return_sequences": True, "reset_after": False}},
                      {"Bidirectional": {"layer": {"SimpleRNN": {"units": 2}}, "merge_mode": "sum"}}, {"Dense": {"units": 2}}]),
 "merges": {"inputs": {"a": {"shape": [4]}, "b": {"shape": [4]}}, "layers": [
      {"Dense": {"name": "da", "units": 3, "inputs": "a"}}, {"Dense": {"name": "db", "units": 3, "inputs": "b"}},
      {"Add": {"name": "add", "inputs": ["da", "db"]}}, {"Subtract": {"name": "sub", "inputs": ["da", "db"]}},
      {"Multiply": {"name": "mul", "inputs": ["add", "sub"]}}, {"Average": {"name": "avg", "inputs": ["mul", "da"]}},
      {"Maximum": {"name": "mx", "inputs": ["avg", "db"]}}, {"Minimum": {"name": "mn", "inputs": ["avg", "da"]}},
      {"Dot": {"name": "dot", "axes": 1, "normalize": True, "inputs": ["mx", "mn"]}},
      {"Concatenate": {"name": "cat", "inputs": ["mx", "mn", "dot"]}}, {"Dense": {"name": "out", "units": 2, "inputs": "cat"}}],
      "outputs": ["out"]},
 "states": {"inputs": {"x": {"shape": [5, 3]}, "y": {"shape": [4, 3]}}, "layers": [
      {"LSTM": {"name": "enc", "units": 4, "return_state": True, "inputs": "x"}},
      {"LSTM": {"name": "dec", "units": 4, "return_sequences": True, "inputs": ["y", "enc:1", "enc:2"]}},
      {"TimeDistributed": {"name": "td", "layer": {"Dense": {"units": 2}}, "inputs": "dec"}}],
      "outputs": ["td"]},
 "self_attention": {"inputs": {"ids": {"shape": [6]}}, "layers": [
      {"Embedding": {"name": "emb", "input_dim": 10, "output_dim": 4, "mask_zero": True, "inputs": "ids"}},
      {"MultiHeadAttention": {"name": "mha", "num_heads": 2, "key_dim": 2, "use_causal_mask": True, "inputs": "emb"}},
      {"MultiHeadAttention": {"name": "mha3", "num_heads": 1, "key_dim": 3, "value_dim": 2, "output_shape": 5, "inputs": ["mha", "emb"]}},
      {"Attention": {"name": "att", "use_scale": True, "inputs": ["mha3", "mha3"]}} ,
      {"GlobalAveragePooling1D": {"name": "pool", "inputs": "att"}}, {"Dense": {"name": "out", "units": 2, "inputs": "pool"}}],
      "outputs": ["out"]},
 "conv1d_more": seq([9, 3], [{"SeparableConv1D": {"filters": 4, "kernel_size": 3, "depth_multiplier": 2, "padding": "same"}},
                            {"DepthwiseConv1D": {"kernel_size": 2, "strides": 2, "depth_multiplier": 2}},
                            {"Conv1DTranspose": {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"}},
                            {"Conv1DTranspose": {"filters": 2, "kernel_size": 2, "dilation_rate": 2}},
                            {"GlobalMaxPooling1D": {}}]),
 "volumetric": seq([6, 7, 5, 2], [{"ZeroPadding3D": {"padding": [[1, 0], [0, 1], [1, 1]]}},
                                 {"Conv3D": {"filters": 3, "kernel_size": [2, 3, 2], "strides": [1, 2, 1], "padding": "same", "activation": "relu"}},
                                 {"MaxPooling3D": {"pool_size": 2, "padding": "same"}},
                                 {"UpSampling3D": {"size": [1, 2, 2]}}, {"SpatialDropout3D": {"rate": 0.2}},
                                 {"AveragePooling3D": {"pool_size": [1, 3, 2], "strides": 1, "padding": "same"}},
                                 {"Cropping3D": {"cropping": [[0, 1], [1, 0], [0, 0]]}},
                                 {"Conv3D": {"filters": 2, "kernel_size": 2, "dilation_rate": [1, 1, 2]}},
                                 {"GlobalAveragePooling3D": {}}]),
 "volumetric_max": seq([4, 4, 4, 1], [{"Conv3D": {"filters": 2, "kernel_size": 3}}, {"GlobalMaxPooling3D": {}}]),
 "volumetric_up": seq([3, 4, 2, 2], [{"Conv3DTranspose": {"filters": 3, "kernel_size": [3, 2, 2], "strides": [2, 1, 2], "padding": "same"}},
                                    {"Conv3DTranspose": {"filters": 2, "kernel_size": 2, "strides": 3, "activation": "relu"}},
                                    {"Conv3DTranspose": {"filters": 2, "kernel_size": 2, "dilation_rate": [2, 1, 1]}},
                                    {"GlobalAveragePooling3D": {}}]),
 "preprocess": seq([5], [{"Normalization": {}}, {"Rescaling": {"scale": 0.5, "offset": 0.2}},
                         {"Normalization": {"mean": [1.0, 0.0, 2.0, 0.5, -1.0], "variance": [4.0, 1.0, 0.25, 2.0, 9.0]}},
                         {"Normalization": {"mean": 0.5, "variance": 2.0, "invert": True}}, {"Dense": {"units": 2}}]),
 "groupnorm": seq([4, 5, 6], [{"GroupNormalization": {"groups": 3}}, {"Conv2D": {"filters": 4, "kernel_size": 2}},
                              {"GroupNormalization": {"groups": -1, "epsilon": 0.01, "center": False}},
                              {"UnitNormalization": {}}, {"GlobalAveragePooling2D": {}}, {"UnitNormalization": {"axis": -1}}]),
 "sepconv": seq([7, 7, 3], [{"SeparableConv2D": {"filters": 4, "kernel_size": 3, "depth_multiplier": 2, "padding": "same"}},
                           {"DepthwiseConv2D": {"kernel_size": 2, "depth_multiplier": 2}},
                           {"Conv2DTranspose": {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"}},
                           {"GlobalAveragePooling2D": {}}]),
}

def write(out):
    from trainer.build.builder import build_model
    from trainer.config.loader import from_dict
    from trainer.keras_io import export, keras3

    rng = np.random.default_rng(0)
    arrays = {}
    for name, model_cfg in MODELS.items():
        model = build_model(from_dict({"data": {"train": {"dataset": "iris"}}, "model": model_cfg,
                                       "compile": {"loss": "mse", "optimizer": "sgd"}},
                                      Path("t.yaml")))
        for layer in model.layers:  # non-trivial weights everywhere
            layer.set_weights([
                (rng.uniform(0.5, 1.5, w.shape) if ("variance" in n or "gamma" in n)
                 else rng.normal(0, 0.5, w.shape)).astype(w.dtype)
                for n, w in zip(layer.weight_names(), layer.get_weights())])
        xs = []
        for shape in model.graph.shapes[:model.graph.n_inputs]:
            x = rng.normal(size=(3, *shape)).astype("float32")
            if name == "self_attention":
                x = rng.integers(1, 10, (3, *shape)).astype("float32")
                x[0, 4:] = 0
            xs.append(x)
        for k, x in enumerate(xs):
            arrays[f"{name}_x{k}"] = x
        arrays[f"{name}_y"] = model.predict_on_batch(xs)[0]
        keras3.write_keras(model, out / f"{name}.keras")
        export.write_h5(model, out / f"{name}.h5")
    np.savez(out / "predictions.npz", **arrays)


def check(out):
    import keras

    d = np.load(out / "predictions.npz")
    for ext in ("keras", "h5"):
        for name in MODELS:
            xs = [d[k] for k in sorted(d) if k.startswith(name + "_x")]
            try:
                m = keras.saving.load_model(out / f"{name}.{ext}", compile=False)
                y = m.predict(xs if len(xs) > 1 else xs[0], verbose=0)
                print(f"{ext:5} {name:15} max |keras - trainer| {np.abs(y - d[name + '_y']).max():.2g}")
            except Exception as exc:  # noqa: BLE001 - a report, not a test
                print(f"{ext:5} {name:15} not loaded: {type(exc).__name__}: {str(exc)[:160]}")


if __name__ == "__main__":
    folder = Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    {"write": write, "check": check}[sys.argv[1]](folder)
