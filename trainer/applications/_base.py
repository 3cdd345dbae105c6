"""What every application family shares: Keras's arguments, its input-shape rules
(``imagenet_utils.obtain_input_shape``), the classifier top or pooling, and the weight
file to load."""

from typing import Literal

from trainer.applications._net import Net
from trainer.errors import ConfigError
from trainer.config.registry import PositiveInt


class Application:
    """A Keras application as our functional model config.

    Args (Keras's):
        weights: ``imagenet`` (Keras's released file, from Keras's cache or URL), the
            path of a weight file in Keras's HDF5 layout, or null (random init).
            Default imagenet, as Keras.
        include_top: the classifier on top (default true).
        pooling: without the top: null (the 4-D feature map), avg or max (a vector).
        classes: with the top and no imagenet weights: the classifier's size (1000).
        input_shape: [rows, cols, 3]; with the top and imagenet weights it must be the
            family's default size (224 for most). Default: the default size.
        classifier_activation: the top's activation (softmax; null for logits).
    """

    default_size = 224
    min_size = 32
    #: the family's ``preprocess_input`` mode: caffe, tf or torch
    preprocess_mode = "caffe"
    #: Keras's model name (the Functional's name)
    model_name = ""
    #: 1 where Keras's released weight file was written by standalone Keras 2.0, whose
    #: automatic layer names start at ``_1`` (``conv2d_1``); 0 for tf.keras's
    first_suffix = 0

    def __init__(self, weights: str | None = "imagenet", include_top: bool = True,
                 pooling: Literal["avg", "max"] | None = None, classes: PositiveInt = 1000,
                 input_shape: list[PositiveInt] | None = None,
                 classifier_activation: str | None = "softmax"):
        self.weights, self.include_top, self.pooling = weights, include_top, pooling
        self.classes, self.input_shape = classes, input_shape
        self.classifier_activation = classifier_activation

    # -- the pieces a family writes ----------------------------------------
    def body(self, net, x):
        """The layers from the input to the last feature map; returns its name."""
        raise NotImplementedError

    def top(self, net, x):
        """Keras's classifier: global average pooling, then the predictions layer."""
        x = net.add("GlobalAveragePooling2D", x, "avg_pool")
        return self.predictions(net, x)

    def predictions(self, net, x):
        return net.add("Dense", x, "predictions", units=self.classes,
                       activation=self.classifier_activation or "linear")

    def pool(self, net, x):
        """Keras's ``pooling`` without the top."""
        if self.pooling == "avg":
            return net.add("GlobalAveragePooling2D", x, self.pool_names[0])
        if self.pooling == "max":
            return net.add("GlobalMaxPooling2D", x, self.pool_names[1])
        return x

    pool_names = (None, None)  # Keras's names of the avg/max pooling layers

    def weight_file(self):
        """The ``trainer.fetch.Remote`` of the imagenet weights for these arguments."""
        from trainer.applications.weights import remote_for

        return remote_for(self)

    # -- the model ---------------------------------------------------------
    def shape(self):
        """Keras's obtain_input_shape, for channels_last."""
        default = [self.default_size, self.default_size, 3]
        if self.input_shape is None:
            return default
        shape = list(self.input_shape)
        name = type(self).registered_name
        if len(shape) != 3:
            raise ConfigError(f"{name}: input_shape must be [rows, cols, channels], got {shape}")
        if self.weights == "imagenet" and shape[2] != 3:
            raise ConfigError(f"{name}: with imagenet weights the input must have 3 "
                              f"channels, got input_shape {shape}")
        if self.include_top and self.weights == "imagenet" and shape != default:
            raise ConfigError(f"{name}: with include_top and imagenet weights the input "
                              f"shape must be {default}, got {shape}; use include_top: "
                              f"false for other sizes")
        if min(shape[:2]) < self.min_size:
            raise ConfigError(f"{name}: input rows and cols must be at least "
                              f"{self.min_size}, got input_shape {shape}")
        return shape

    def check(self):
        name = type(self).registered_name
        if self.weights == "imagenet" and self.include_top and self.classes != 1000:
            raise ConfigError(f"{name}: with imagenet weights and include_top, classes must "
                              f"be 1000 (got {self.classes}); use include_top: false and "
                              f"your own classifier")
        if self.weights == "imagenet" and self.include_top and \
                self.classifier_activation not in ("softmax", None):
            raise ConfigError(f"{name}: with imagenet weights the classifier_activation "
                              f"must be softmax or null, got {self.classifier_activation!r}")

    def model_config(self):
        """``{name, inputs, layers, outputs}``: the functional model section."""
        self.check()
        net = Net(first_suffix=self.first_suffix)
        shape = self.shape()
        x = self.body(net, net.input_name)
        x = self.top(net, x) if self.include_top else self.pool(net, x)
        return {"name": self.model_name or type(self).registered_name.lower(),
                "inputs": {net.input_name: {"shape": shape}},
                "layers": net.layers, "outputs": [x]}
