"""Keras's application families built by our builder: Keras's parameter counts, layer
names and weight shapes, a forward pass at a small size, and weight files in the
layout Keras releases loaded by name (from a path, and as `weights: imagenet` through
Keras's cache / a local mirror)."""

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from application_helpers import build, write_release_file
from conftest import write_config
from fetch_helpers import Files, serve, sha256
from application_shapes import application_graph, parameter_count
from trainer.cli import main
from trainer.errors import ConfigError

#: Keras's parameter counts (keras.io/api/applications and model.summary())
KERAS_PARAMS = {
    "VGG16": 138_357_544, "VGG19": 143_667_240,
    "ResNet50": 25_636_712, "ResNet101": 44_707_176, "ResNet152": 60_419_944,
    "ResNet50V2": 25_613_800, "ResNet101V2": 44_675_560, "ResNet152V2": 60_380_648,
    "MobileNet": 4_253_864, "MobileNetV2": 3_538_984,
    "DenseNet121": 8_062_504, "DenseNet169": 14_307_880, "DenseNet201": 20_242_984,
    "InceptionV3": 23_851_784, "Xception": 22_910_480, "InceptionResNetV2": 55_873_736,
    "EfficientNetB0": 5_330_571, "EfficientNetB1": 7_856_239, "EfficientNetB2": 9_177_569,
    "EfficientNetB3": 12_320_535, "EfficientNetB4": 19_466_823, "EfficientNetB5": 30_562_527,
    "EfficientNetB6": 43_265_143, "EfficientNetB7": 66_658_687,
    "NASNetMobile": 5_326_716, "NASNetLarge": 88_949_818,
}
KERAS_NOTOP_PARAMS = {
    "VGG16": 14_714_688, "ResNet50": 23_587_712, "MobileNet": 3_228_864,
    "MobileNetV2": 2_257_984, "DenseNet121": 7_037_504, "InceptionV3": 21_802_784,
    "Xception": 20_861_480, "InceptionResNetV2": 54_336_736, "EfficientNetB0": 4_049_571,
    "NASNetMobile": 4_269_716, "NASNetLarge": 84_916_818,
}


@pytest.mark.parametrize("name", KERAS_PARAMS)
def test_parameter_count_equals_keras(name):
    assert parameter_count(application_graph(name)) == KERAS_PARAMS[name]


@pytest.mark.parametrize("name", KERAS_NOTOP_PARAMS)
def test_parameter_count_without_top_equals_keras(name):
    graph = application_graph(name, include_top=False)
    assert parameter_count(graph) == KERAS_NOTOP_PARAMS[name]


def _weights(graph):
    return {layer.name: [w.shape for w in layer.get_weights()] for layer in graph.layers()}


def test_resnet50_layer_names_and_weight_shapes():
    graph = application_graph("ResNet50")
    names = [layer.name for layer in graph.layers()]
    assert len(names) == 176  # Keras: 177 with the InputLayer
    assert names[:6] == ["conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pad",
                         "pool1_pool"]
    assert names[-3:] == ["conv5_block3_out", "avg_pool", "predictions"]
    w = _weights(graph)
    assert w["conv1_conv"] == [(7, 7, 3, 64), (64,)]
    assert w["conv2_block1_0_conv"] == [(1, 1, 64, 256), (256,)]
    assert w["conv5_block3_3_bn"] == [(2048,)] * 4
    assert w["predictions"] == [(2048, 1000), (1000,)]
    assert graph.shapes[graph.outputs[0]] == (1000,)


def test_vgg16_mobilenet_densenet_inception_xception_names():
    w = _weights(application_graph("VGG16"))
    assert w["block5_conv3"] == [(3, 3, 512, 512), (512,)]
    assert w["fc1"] == [(25088, 4096), (4096,)]
    w = _weights(application_graph("MobileNet"))
    assert w["conv_dw_1"] == [(3, 3, 32, 1)] and w["conv_pw_13"] == [(1, 1, 1024, 1024)]
    assert w["conv_preds"] == [(1, 1, 1024, 1000), (1000,)]
    w = _weights(application_graph("MobileNetV2"))
    assert w["expanded_conv_project"] == [(1, 1, 32, 16)]
    assert w["block_16_project_BN"] == [(320,)] * 4 and w["Conv_1"] == [(1, 1, 320, 1280)]
    w = _weights(application_graph("DenseNet121"))
    assert w["conv1/conv"] == [(7, 7, 3, 64)] and w["conv5_block16_2_conv"] == [(3, 3, 128, 32)]
    w = _weights(application_graph("InceptionV3"))
    assert w["conv2d_1"] == [(3, 3, 3, 32)] and w["batch_normalization_94"] == [(192,)] * 3
    w = _weights(application_graph("Xception"))
    assert w["block14_sepconv2"] == [(3, 3, 1536, 1), (1, 1, 1536, 2048)]
    assert w["conv2d_4"] == [(1, 1, 728, 1024)]


@pytest.mark.parametrize("name,args", [
    ("VGG16", {}), ("ResNet50", {}), ("ResNet50V2", {}), ("MobileNet", {"alpha": 0.25}),
    ("MobileNetV2", {"alpha": 0.35}), ("DenseNet121", {}), ("Xception", {"size": 71}),
    ("InceptionV3", {"size": 75}), ("EfficientNetB0", {}),
    ("InceptionResNetV2", {"size": 75}), ("NASNetMobile", {}), ("NASNetMobile", {"size": 45})])
def test_forward_pass_at_a_small_size(name, args, tmp_path):
    size = args.pop("size", 32)
    model, _ = build(tmp_path, application=name, weights=None, include_top=False,
                     pooling="avg", input_shape=[size, size, 3], **args)
    x = np.random.default_rng(0).uniform(0, 1, (2, size, size, 3)).astype(np.float32)
    (y,) = model.predict_on_batch([x])
    assert y.ndim == 2 and y.shape[0] == 2 and np.isfinite(y).all()
    assert not np.allclose(y[0], y[1], rtol=1e-3, atol=0)  # the inputs are told apart


def test_efficientnet_input_scaling_follows_the_weights():
    """Keras adds its per-channel fix after the Normalization only for imagenet weights;
    the Normalization holds Keras's mean/variance/count (7 of B0's 5,330,571)."""
    names = lambda g: [la.name for la in g.layers()][:4]  # noqa: E731
    assert names(application_graph("EfficientNetB0")) == [
        "rescaling", "normalization", "stem_conv_pad", "stem_conv"]
    from trainer.applications.expand import application_model
    spec = application_model("EfficientNetB0", {"weights": "imagenet"}).model_config()
    assert [next(iter(la)) for la in spec["layers"][:3]] == ["Rescaling", "Normalization",
                                                               "Rescaling"]
    assert spec["layers"][2]["Rescaling"]["scale"][0] == pytest.approx(1 / 0.229 ** 0.5)
    w = _weights(application_graph("EfficientNetB0"))
    assert w["normalization"] == [(3,), (3,), ()]
    assert w["block6d_se_reduce"] == [(1, 1, 1152, 48), (48,)]


def test_release_layout_weights_load_by_name(tmp_path):
    """Random weights written as Keras releases them load into the right layers."""
    model, _ = build(tmp_path, application="ResNet50", weights=None, include_top=False,
                     input_shape=[32, 32, 3], pooling="avg")
    path = tmp_path / "resnet50_notop.h5"
    written = write_release_file(path, model, np.random.default_rng(1))
    loaded, cfg = build(tmp_path, application="ResNet50", weights=str(path),
                        include_top=False, input_shape=[32, 32, 3], pooling="avg")
    assert cfg["model"]["weights"] == str(path)
    for layer in loaded.layers:
        for got, want in zip(layer.get_weights(), written[layer.name]):
            np.testing.assert_array_equal(got, want)
    x = np.random.default_rng(2).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    model.set_weights(loaded.get_weights())
    np.testing.assert_allclose(model.predict_on_batch([x])[0], loaded.predict_on_batch([x])[0])


def test_densenet_slash_names_load_from_release_layout(tmp_path):
    model, _ = build(tmp_path, application="DenseNet121", weights=None, include_top=False,
                     input_shape=[32, 32, 3])
    path = tmp_path / "densenet.h5"
    written = write_release_file(path, model, np.random.default_rng(3))
    loaded, _ = build(tmp_path, application="DenseNet121", weights=str(path),
                      include_top=False, input_shape=[32, 32, 3])
    conv = next(la for la in loaded.layers if la.name == "conv1/conv")
    np.testing.assert_array_equal(conv.get_weights()[0], written["conv1/conv"][0])


def test_imagenet_weights_through_keras_cache_and_mirror(tmp_path, monkeypatch):
    """`weights: imagenet` fetches Keras's file name from Keras's URL (here a local
    mirror) into KERAS_HOME/models, then loads it; a second build is a cache hit."""
    from trainer.applications import mobilenet

    args = dict(application="MobileNet", alpha=0.25, input_shape=[128, 128, 3])
    model, _ = build(tmp_path, weights=None, **args)
    blob_path = tmp_path / "release.h5"
    written = write_release_file(blob_path, model, np.random.default_rng(4))
    blob = blob_path.read_bytes()
    real = mobilenet.MobileNet.weight_remote
    monkeypatch.setattr(mobilenet.MobileNet, "weight_remote", lambda self: dataclasses.replace(
        real(self), file_hash=sha256(blob)))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    files = Files({"/tensorflow/keras-applications/mobilenet/mobilenet_2_5_128_tf.h5": blob})
    with serve(files) as base:
        monkeypatch.setenv("TRAINER_MIRROR", base)
        loaded, cfg = build(tmp_path, weights="imagenet", **args)
        build(tmp_path, weights="imagenet", **args)
    assert len(files.requests) == 1
    assert cfg["model"]["weights"] == str(tmp_path / "kh" / "models" / "mobilenet_2_5_128_tf.h5")
    preds = next(la for la in loaded.layers if la.name == "conv_preds")
    np.testing.assert_array_equal(preds.get_weights()[0], written["conv_preds"][0])


def test_mobilenet_weight_file_names_follow_keras():
    from trainer.config.families import applications

    def fname(**args):
        return applications.get({args.pop("name"): args}).weight_file().fname

    assert fname(name="MobileNet") == "mobilenet_1_0_224_tf.h5"
    assert fname(name="MobileNet", alpha=0.5, include_top=False,
                 input_shape=[160, 160, 3]) == "mobilenet_5_0_160_tf_no_top.h5"
    assert fname(name="MobileNetV2", alpha=0.35, include_top=False, input_shape=[96, 96, 3]) \
        == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    assert fname(name="ResNet50") == "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    assert fname(name="DenseNet121", include_top=False) == \
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert fname(name="NASNetMobile") == "nasnet_mobile.h5"  # cache name ≠ URL's name
    assert applications.get({"NASNetMobile": {}}).weight_file().origin.endswith(
        "/nasnet/NASNet-mobile.h5")
    assert fname(name="EfficientNetB3", include_top=False) == "efficientnetb3_notop.h5"


@pytest.mark.parametrize("args,message", [
    ({"input_shape": [160, 160, 3]}, "must be [224, 224, 3]"),
    ({"classes": 10}, "classes must be 1000"),
    ({"include_top": False, "input_shape": [16, 16, 3]}, "at least 32"),
    ({"weights": "missing.h5"}, "file not found"),
    ({"alpha": 0.3, "application": "MobileNet"}, "alpha 0.25, 0.5"),
    ({"weights": {"path": "w.h5"}}, "weights is imagenet, null"),
    ({"application": "VGG16", "alpha": 0.5}, "VGG16 takes no argument 'alpha'"),
])
def test_bad_arguments_are_config_errors(args, message, tmp_path):
    model = {"application": "ResNet50", "weights": "imagenet", **args}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(tmp_path, **model)


def test_mobilenet_dropout_argument(tmp_path):
    model, _ = build(tmp_path, application="MobileNet", alpha=0.25, dropout=0.5,
                     input_shape=[128, 128, 3], weights=None)
    assert next(la for la in model.layers if la.name == "dropout").rate == 0.5


def test_summary_shows_keras_counts(workdir):
    path = write_config(workdir, """
data: {train: {dataset: iris}}
model: {application: ResNet50, weights: null}
compile: {loss: categorical_crossentropy}
""")
    r = CliRunner().invoke(main, ["summary", str(path)])
    assert r.exit_code == 0, r.output
    assert "Total params: 25,636,712" in r.output
    assert "conv5_block3_out" in r.output


def test_unknown_application_suggests(workdir):
    path = write_config(workdir, """
data: {train: {dataset: iris}}
model: {application: ResNet05, weights: null}
compile: {loss: mse}
""")
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 2 and "ResNet50" in r.output, r.output
