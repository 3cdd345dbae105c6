"""MobileNet (Howard et al., 2017) and MobileNetV2 (Sandler et al., CVPR 2018), Keras's
``mobilenet.py``/``mobilenet_v2.py``: depthwise-separable blocks with ReLU6; ``alpha``
scales the widths. Keras releases weights per alpha and input size (no hashes)."""

from typing import Literal

from trainer.applications._base import Application
from trainer.errors import ConfigError
from trainer.fetch import Remote
from trainer.config.families import applications
from trainer.config.registry import PositiveInt

BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _square_size(app, sizes):
    """Keras's rule: the weights of the input's size if square and released, else 224's."""
    rows, cols = app.shape()[:2]
    return rows if rows == cols and rows in sizes else 224


@applications.register("MobileNet")
class MobileNet(Application):
    """Keras's MobileNet, and:

    Args:
        alpha: width multiplier (1.0; imagenet weights for 0.25, 0.5, 0.75, 1.0).
        depth_multiplier: of the depthwise convolutions (1; imagenet needs 1).
        dropout: before the classifier (0.001).
    """

    preprocess_mode = "tf"
    pool_names = ("global_average_pooling2d", "global_max_pooling2d")
    SIZES = (128, 160, 192, 224)

    def __init__(self, weights: str | None = "imagenet", include_top: bool = True,
                 pooling: Literal["avg", "max"] | None = None, classes: PositiveInt = 1000,
                 input_shape: list[PositiveInt] | None = None,
                 classifier_activation: str | None = "softmax", alpha: float = 1.0,
                 depth_multiplier: PositiveInt = 1, dropout: float = 1e-3):
        super().__init__(weights, include_top, pooling, classes, input_shape,
                         classifier_activation)
        self.alpha, self.depth_multiplier, self.dropout = alpha, depth_multiplier, dropout
        if input_shape is not None and input_shape[0] == input_shape[1] and \
                input_shape[0] in self.SIZES:
            self.default_size = input_shape[0]

    def check(self):
        super().check()
        if self.weights == "imagenet":
            if self.depth_multiplier != 1:
                raise ConfigError(f"MobileNet: imagenet weights need depth_multiplier 1, got "
                                  f"{self.depth_multiplier}")
            if self.alpha not in (0.25, 0.5, 0.75, 1.0):
                raise ConfigError(f"MobileNet: imagenet weights exist for alpha 0.25, 0.5, "
                                  f"0.75 and 1.0, got {self.alpha}")

    @property
    def model_name(self):
        return f"mobilenet_{self.alpha:0.2f}_{self.shape()[0]}"

    def body(self, net, x):
        a = self.alpha
        x = net.conv(x, "conv1", int(32 * a), 3, strides=2, padding="same", use_bias=False)
        x = net.add("ReLU", net.bn(x, "conv1_bn"), "conv1_relu", max_value=6.0)
        plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + \
            [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
        for block, (filters, stride) in enumerate(plan, 1):
            x = self.block(net, x, int(filters * a), stride, block)
        return x

    def block(self, net, x, filters, stride, i):
        if stride == 2:
            x = net.add("ZeroPadding2D", x, f"conv_pad_{i}", padding=[[0, 1], [0, 1]])
        x = net.add("DepthwiseConv2D", x, f"conv_dw_{i}", kernel_size=3, strides=stride,
                    padding="same" if stride == 1 else "valid",
                    depth_multiplier=self.depth_multiplier if self.depth_multiplier != 1
                    else None, use_bias=False)
        x = net.add("ReLU", net.bn(x, f"conv_dw_{i}_bn"), f"conv_dw_{i}_relu", max_value=6.0)
        x = net.conv(x, f"conv_pw_{i}", filters, 1, padding="same", use_bias=False)
        return net.add("ReLU", net.bn(x, f"conv_pw_{i}_bn"), f"conv_pw_{i}_relu",
                       max_value=6.0)

    def top(self, net, x):
        channels = int(1024 * self.alpha)
        x = net.add("GlobalAveragePooling2D", x)
        x = net.add("Reshape", x, "reshape_1", target_shape=[1, 1, channels])
        x = net.add("Dropout", x, "dropout", rate=self.dropout)
        x = net.conv(x, "conv_preds", self.classes, 1, padding="same")
        x = net.add("Reshape", x, "reshape_2", target_shape=[self.classes])
        return net.add("Activation", x, "predictions",
                       activation=self.classifier_activation or "linear")

    def weight_remote(self):
        text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[self.alpha]
        rows = _square_size(self, self.SIZES)
        fname = f"mobilenet_{text}_{rows}_tf{'' if self.include_top else '_no_top'}.h5"
        return Remote(fname, f"{BASE}mobilenet/{fname}", None, "models")


def make_divisible(v, divisor=8):
    """Keras's _make_divisible: the nearest multiple of 8, never 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


@applications.register("MobileNetV2")
class MobileNetV2(MobileNet):
    """Keras's MobileNetV2, and:

    Args:
        alpha: width multiplier (1.0; imagenet weights for 0.35, 0.5, 0.75, 1.0, 1.3, 1.4).
    """

    pool_names = ("global_average_pooling2d", "global_max_pooling2d")
    SIZES = (96, 128, 160, 192, 224)
    PLAN = [(16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
            (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6),
            (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6)]

    def __init__(self, weights: str | None = "imagenet", include_top: bool = True,
                 pooling: Literal["avg", "max"] | None = None, classes: PositiveInt = 1000,
                 input_shape: list[PositiveInt] | None = None,
                 classifier_activation: str | None = "softmax", alpha: float = 1.0):
        super().__init__(weights, include_top, pooling, classes, input_shape,
                         classifier_activation, alpha)

    def check(self):
        Application.check(self)
        if self.weights == "imagenet" and self.alpha not in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
            raise ConfigError(f"MobileNetV2: imagenet weights exist for alpha 0.35, 0.5, "
                              f"0.75, 1.0, 1.3 and 1.4, got {self.alpha}")

    @property
    def model_name(self):
        return f"mobilenetv2_{self.alpha:0.2f}_{self.shape()[0]}"

    def body(self, net, x):
        rows, cols = self.shape()[:2]
        bn = dict(epsilon=1e-3, momentum=0.999)
        x = net.conv(x, "Conv1", make_divisible(32 * self.alpha), 3, strides=2,
                     padding="same", use_bias=False)
        x = net.add("ReLU", net.bn(x, "bn_Conv1", **bn), "Conv1_relu", max_value=6.0)
        size, channels = [-(-rows // 2), -(-cols // 2)], make_divisible(32 * self.alpha)
        for block, (filters, stride, expansion) in enumerate(self.PLAN):
            x, channels = self.inverted(net, x, channels, size, filters, stride, expansion,
                                        block, bn)
        last = make_divisible(1280 * self.alpha) if self.alpha > 1.0 else 1280
        x = net.conv(x, "Conv_1", last, 1, use_bias=False)
        return net.add("ReLU", net.bn(x, "Conv_1_bn", **bn), "out_relu", max_value=6.0)

    def inverted(self, net, inputs, channels, size, filters, stride, expansion, block, bn):
        """Keras's _inverted_res_block; ``size`` (rows, cols) is updated in place."""
        out = make_divisible(int(filters * self.alpha))
        prefix = f"block_{block}_" if block else "expanded_conv_"
        x = inputs
        if block:
            x = net.conv(x, prefix + "expand", expansion * channels, 1, padding="same",
                         use_bias=False)
            x = net.add("ReLU", net.bn(x, prefix + "expand_BN", **bn), prefix + "expand_relu",
                        max_value=6.0)
        if stride == 2:  # imagenet_utils.correct_pad
            pad = [[1 - (1 - size[0] % 2), 1], [1 - (1 - size[1] % 2), 1]]
            x = net.add("ZeroPadding2D", x, prefix + "pad", padding=pad)
            size[:] = [-(-size[0] // 2), -(-size[1] // 2)]
        x = net.add("DepthwiseConv2D", x, prefix + "depthwise", kernel_size=3, strides=stride,
                    padding="same" if stride == 1 else "valid", use_bias=False)
        x = net.add("ReLU", net.bn(x, prefix + "depthwise_BN", **bn), prefix + "depthwise_relu",
                    max_value=6.0)
        x = net.conv(x, prefix + "project", out, 1, padding="same", use_bias=False)
        x = net.bn(x, prefix + "project_BN", **bn)
        if channels == out and stride == 1:
            x = net.add("Add", [inputs, x], prefix + "add")
        return x, out

    def top(self, net, x):
        x = net.add("GlobalAveragePooling2D", x)
        return self.predictions(net, x)

    def weight_remote(self):
        rows = _square_size(self, self.SIZES)
        stem = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(self.alpha)}_{rows}"
        fname = stem + ("" if self.include_top else "_no_top") + ".h5"
        return Remote(fname, f"{BASE}mobilenet_v2/{fname}", None, "models")
