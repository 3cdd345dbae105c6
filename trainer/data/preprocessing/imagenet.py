"""Keras's ``preprocess_input`` of the application families, as a preprocessing step:
``{imagenet: {mode: caffe}}``, or ``{imagenet: ResNet50}`` for that family's mode.

Modes (Keras's ``imagenet_utils.preprocess_input`` on channels-last RGB in 0..255):

- ``caffe`` (VGG, ResNet): RGB → BGR, then minus the ImageNet mean per channel
  (103.939, 116.779, 123.68), no scaling;
- ``tf`` (MobileNet, ResNetV2, Inception, Xception): x / 127.5 − 1, into [−1, 1];
- ``torch`` (DenseNet): x / 255, minus (0.485, 0.456, 0.406), divided by
  (0.229, 0.224, 0.225);
- ``none`` (EfficientNet, which scales inside the model): unchanged, as float32.
"""

import numpy as np

from trainer.data.preprocessing.steps import Step
from trainer.errors import ConfigError, DataError
from trainer.config.families import preprocessing

MODES = ("caffe", "tf", "torch", "none")
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _mode_of(name):
    from trainer.config.families import applications
    from trainer.config.registry import suggest

    if name in MODES:
        return name
    if name in applications:
        return applications.lookup(name).preprocess_mode
    choices = list(MODES) + applications.names()
    raise ConfigError(f"imagenet: expected a mode ({', '.join(MODES)}) or an application "
                      f"name, got {name!r}.{suggest(name, choices)}")


@preprocessing.register("imagenet", "preprocess_input")
class ImagenetPreprocess(Step):
    """Keras's ``preprocess_input``: ``mode`` is caffe, tf, torch or none, or an
    application's name (its family's mode). Images channels-last with 3 channels."""

    def __init__(self, mode: str = "caffe"):
        self.mode = mode
        self._mode = _mode_of(mode)

    def __call__(self, array):
        x = np.asarray(array, np.float32)
        if self._mode == "none":
            return x
        if x.ndim < 1 or x.shape[-1] != 3:
            raise DataError(f"imagenet: expects images with 3 channels last (RGB), got "
                            f"samples of shape {x.shape[1:]}")
        if self._mode == "tf":
            return x / np.float32(127.5) - np.float32(1.0)
        if self._mode == "torch":
            return (x / np.float32(255.0) - TORCH_MEAN) / TORCH_STD
        return x[..., ::-1] - CAFFE_MEAN_BGR
