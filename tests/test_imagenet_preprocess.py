"""The `imagenet` preprocessing step: Keras's preprocess_input per family."""

import numpy as np
import pytest

from trainer.errors import ConfigError, DataError
from trainer.config.families import preprocessing

PIXEL = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)  # one 1×1 RGB image


def step(spec):
    return preprocessing.get({"imagenet": spec})


def test_caffe_is_bgr_minus_mean():
    np.testing.assert_allclose(step("caffe")(PIXEL)[0, 0, 0],
                               [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def test_tf_and_torch():
    np.testing.assert_allclose(step("tf")(PIXEL)[0, 0, 0], [10 / 127.5 - 1, 20 / 127.5 - 1,
                                                            30 / 127.5 - 1], rtol=1e-6)
    want = (np.array([10, 20, 30]) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(step({"mode": "torch"})(PIXEL)[0, 0, 0], want, rtol=1e-5)


@pytest.mark.parametrize("family,mode", [("ResNet50", "caffe"), ("VGG16", "caffe"),
                                         ("MobileNetV2", "tf"), ("InceptionV3", "tf"),
                                         ("ResNet50V2", "tf"), ("DenseNet121", "torch"),
                                         ("EfficientNetB0", "none")])
def test_family_picks_keras_mode(family, mode):
    np.testing.assert_array_equal(step(family)(PIXEL), step(mode)(PIXEL))


def test_errors():
    with pytest.raises(ConfigError, match="Did you mean 'ResNet50'"):
        step("ResNet5")
    with pytest.raises(DataError, match="3 channels"):
        step("caffe")(np.zeros((2, 4, 4, 1), np.float32))
