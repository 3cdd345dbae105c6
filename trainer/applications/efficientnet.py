"""EfficientNetB0..B7 (Tan & Le, ICML 2019), Keras's ``efficientnet.py``: the input
scaling inside the model (Rescaling 1/255, Normalization, and for imagenet weights
Keras's per-channel fix), MBConv blocks ``block{i}{a,b,..}_`` with squeeze-and-excite,
widths and depths scaled per variant."""

import math

from trainer.applications._base import Application
from trainer.applications.mobilenet import make_divisible
from trainer.config.families import applications

IMAGENET_STDDEV_RGB = [0.229, 0.224, 0.225]
#: kernel, repeats, filters in, filters out, expand ratio, strides (se_ratio 0.25)
BLOCKS = [(3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2),
          (3, 3, 40, 80, 6, 2), (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2),
          (3, 1, 192, 320, 6, 1)]


class EfficientNet(Application):
    width = depth = 1.0
    dropout_rate = 0.2
    drop_connect_rate = 0.2
    preprocess_mode = "none"  # inside the model
    pool_names = ("avg_pool", "max_pool")

    def filters(self, n):
        return make_divisible(n * self.width)

    def repeats(self, n):
        return int(math.ceil(self.depth * n))

    def body(self, net, x):
        rows, cols = self.shape()[:2]
        x = net.add("Rescaling", x, scale=1.0 / 255.0)
        x = net.add("Normalization", x, axis=-1)
        if self.weights == "imagenet":
            x = net.add("Rescaling", x, scale=[1.0 / math.sqrt(s) for s in IMAGENET_STDDEV_RGB])
        x = net.add("ZeroPadding2D", x, "stem_conv_pad",
                    padding=[[rows % 2, 1], [cols % 2, 1]])
        size = [-(-rows // 2), -(-cols // 2)]
        x = net.conv(x, "stem_conv", self.filters(32), 3, strides=2, use_bias=False)
        x = net.act(net.bn(x, "stem_bn"), "swish", "stem_activation")
        total = float(sum(self.repeats(b[1]) for b in BLOCKS))
        done = 0
        for i, (kernel, repeats, f_in, f_out, expand, strides) in enumerate(BLOCKS):
            f_in, f_out = self.filters(f_in), self.filters(f_out)
            for j in range(self.repeats(repeats)):
                if j > 0:
                    strides, f_in = 1, f_out
                x = self.block(net, x, size, self.drop_connect_rate * done / total,
                               f"block{i + 1}{chr(j + 97)}_", f_in, f_out, kernel, strides,
                               expand)
                done += 1
        x = net.conv(x, "top_conv", self.filters(1280), 1, padding="same", use_bias=False)
        return net.act(net.bn(x, "top_bn"), "swish", "top_activation")

    @staticmethod
    def block(net, inputs, size, drop_rate, name, f_in, f_out, kernel, strides, expand):
        filters = f_in * expand
        x = inputs
        if expand != 1:
            x = net.conv(x, name + "expand_conv", filters, 1, padding="same", use_bias=False)
            x = net.act(net.bn(x, name + "expand_bn"), "swish", name + "expand_activation")
        if strides == 2:  # imagenet_utils.correct_pad
            half = kernel // 2
            pad = [[half - (1 - size[0] % 2), half], [half - (1 - size[1] % 2), half]]
            x = net.add("ZeroPadding2D", x, name + "dwconv_pad", padding=pad)
            size[:] = [-(-size[0] // 2), -(-size[1] // 2)]
        x = net.add("DepthwiseConv2D", x, name + "dwconv", kernel_size=kernel, strides=strides,
                    padding="valid" if strides == 2 else "same", use_bias=False)
        x = net.act(net.bn(x, name + "bn"), "swish", name + "activation")
        se = net.add("GlobalAveragePooling2D", x, name + "se_squeeze")
        se = net.add("Reshape", se, name + "se_reshape", target_shape=[1, 1, filters])
        se = net.conv(se, name + "se_reduce", max(1, int(f_in * 0.25)), 1, padding="same",
                      activation="swish")
        se = net.conv(se, name + "se_expand", filters, 1, padding="same", activation="sigmoid")
        x = net.add("Multiply", [x, se], name + "se_excite")
        x = net.conv(x, name + "project_conv", f_out, 1, padding="same", use_bias=False)
        x = net.bn(x, name + "project_bn")
        if strides == 1 and f_in == f_out:
            if drop_rate > 0:
                x = net.add("Dropout", x, name + "drop", rate=drop_rate,
                            noise_shape=[None, 1, 1, 1])
            x = net.add("Add", [x, inputs], name + "add")
        return x

    def top(self, net, x):
        x = net.add("GlobalAveragePooling2D", x, "avg_pool")
        if self.dropout_rate > 0:
            x = net.add("Dropout", x, "top_dropout", rate=self.dropout_rate)
        return self.predictions(net, x)


HASHES = {
    "b0": ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
    "b1": ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432"),
    "b2": ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39"),
    "b3": ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226"),
    "b4": ("18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "b5": ("ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f"),
    "b6": ("165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743"),
    "b7": ("8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a"),
}
VARIANTS = {  # width, depth, default size, dropout
    "B0": (1.0, 1.0, 224, 0.2), "B1": (1.0, 1.1, 240, 0.2), "B2": (1.1, 1.2, 260, 0.3),
    "B3": (1.2, 1.4, 300, 0.3), "B4": (1.4, 1.8, 380, 0.4), "B5": (1.6, 2.2, 456, 0.4),
    "B6": (1.8, 2.6, 528, 0.5), "B7": (2.0, 3.1, 600, 0.5),
}


def _weight_remote(self):
    """Keras's file (``efficientnetb0.h5`` / ``_notop.h5``) under keras-applications/."""
    from trainer.fetch import Remote

    top, notop = HASHES[self.model_name[-2:]]
    fname = self.model_name + (".h5" if self.include_top else "_notop.h5")
    return Remote(fname, "https://storage.googleapis.com/keras-applications/" + fname,
                  top if self.include_top else notop, "models")


for _v, (_w, _d, _size, _drop) in VARIANTS.items():
    _name = "EfficientNet" + _v
    globals()[_name] = applications.register(_name)(type(_name, (EfficientNet,), {
        "width": _w, "depth": _d, "default_size": _size, "dropout_rate": _drop,
        "model_name": _name.lower(), "weight_remote": _weight_remote,
        "__doc__": Application.__doc__, "__module__": __name__}))
