"""NASNetMobile and NASNetLarge (Zoph et al., CVPR 2018), Keras's ``nasnet.py``: a stem,
then normal and reduction cells, each reading the two previous cells' outputs (the
earlier one adjusted to the later one's size and width). The cells' choices depend on
shapes, so this module follows each tensor's (rows, cols, channels) as Keras's code
reads them."""

from trainer.applications._base import Application
from trainer.fetch import Remote
from trainer.config.families import applications

BN = {"epsilon": 1e-3, "momentum": 0.9997}


def _half(n):
    return -(-n // 2)


class NASNet(Application):
    penultimate_filters = num_blocks = stem_filters = 0
    skip_reduction = False
    multiplier = 2
    min_size = 32
    preprocess_mode = "tf"
    model_name = "NASNet"
    pool_names = (None, None)
    FILES = {}  # include_top → (cache name, file name at Keras's URL, MD5)

    # -- the tensors' shapes, as Keras's code reads them -----------------------
    def _add(self, net, kind, x, name=None, shape=None, **args):
        out = net.add(kind, x, name, **args)
        self.shapes[out] = shape if shape is not None else self.shapes[
            x if isinstance(x, str) else x[0]]
        return out

    def _bn(self, net, x, name):
        return self._add(net, "BatchNormalization", x, name, axis=3, **BN)

    def _relu(self, net, x, name=None):
        return self._add(net, "Activation", x, name, activation="relu")

    def _conv1x1(self, net, x, filters, name):
        h, w, _ = self.shapes[x]
        return self._add(net, "Conv2D", x, name, (h, w, filters), filters=filters,
                         kernel_size=1, padding="same", use_bias=False)

    def _pool(self, net, kind, x, name, strides, padding, size=3):
        h, w, c = self.shapes[x]
        if strides == 2:
            h, w = (h - size) // 2 + 1, (w - size) // 2 + 1
        return self._add(net, kind, x, name, (h, w, c), pool_size=size, strides=strides,
                         padding=padding)

    def _correct_pad(self, net, x, kernel, name):
        h, w, c = self.shapes[x]
        half = kernel // 2
        pad = [[half - (1 - h % 2), half], [half - (1 - w % 2), half]]
        return self._add(net, "ZeroPadding2D", x, name,
                         (h + sum(pad[0]), w + sum(pad[1]), c), padding=pad)

    def _sep_block(self, net, x, filters, kernel, strides, block_id):
        x = self._relu(net, x)
        if strides == 2:
            x = self._correct_pad(net, x, kernel, f"separable_conv_1_pad_{block_id}")
        h, w, _ = self.shapes[x]
        if strides == 2:
            h, w = (h - kernel) // 2 + 1, (w - kernel) // 2 + 1
        x = self._add(net, "SeparableConv2D", x, f"separable_conv_1_{block_id}",
                      (h, w, filters), filters=filters, kernel_size=kernel, strides=strides,
                      padding="valid" if strides == 2 else "same", use_bias=False)
        x = self._relu(net, self._bn(net, x, f"separable_conv_1_bn_{block_id}"))
        x = self._add(net, "SeparableConv2D", x, f"separable_conv_2_{block_id}",
                      (h, w, filters), filters=filters, kernel_size=kernel, padding="same",
                      use_bias=False)
        return self._bn(net, x, f"separable_conv_2_bn_{block_id}")

    def _adjust(self, net, p, ip, filters, block_id):
        if p is None:
            return ip
        (ph, pw, pc), (ih, _, _) = self.shapes[p], self.shapes[ip]
        if pw != self.shapes[ip][1] or ph != ih:
            p = self._relu(net, p, f"adjust_relu_1_{block_id}")
            p1 = self._pool(net, "AveragePooling2D", p, f"adjust_avg_pool_1_{block_id}", 2,
                            "valid", size=1)
            p1 = self._conv1x1(net, p1, filters // 2, f"adjust_conv_1_{block_id}")
            p2 = self._add(net, "ZeroPadding2D", p, None, (ph + 1, pw + 1, pc),
                           padding=[[0, 1], [0, 1]])
            p2 = self._add(net, "Cropping2D", p2, None, (ph, pw, pc), cropping=[[1, 0], [1, 0]])
            p2 = self._pool(net, "AveragePooling2D", p2, f"adjust_avg_pool_2_{block_id}", 2,
                            "valid", size=1)
            p2 = self._conv1x1(net, p2, filters // 2, f"adjust_conv_2_{block_id}")
            h, w, _ = self.shapes[p1]
            p = self._add(net, "Concatenate", [p1, p2], None, (h, w, filters // 2 * 2), axis=3)
            return self._bn(net, p, f"adjust_bn_{block_id}")
        if pc != filters:
            p = self._relu(net, p)
            p = self._conv1x1(net, p, filters, f"adjust_conv_projection_{block_id}")
            return self._bn(net, p, f"adjust_bn_{block_id}")
        return p

    def _normal(self, net, ip, p, filters, block_id):
        p = self._adjust(net, p, ip, filters, block_id)
        h = self._relu(net, ip)
        h = self._bn(net, self._conv1x1(net, h, filters, f"normal_conv_1_{block_id}"),
                     f"normal_bn_1_{block_id}")
        add = lambda a, b, name: self._add(net, "Add", [a, b], name)  # noqa: E731
        def sep(x, k, n):
            return self._sep_block(net, x, filters, k, 1, f"normal_{n}_{block_id}")

        def avg(x, n):
            return self._pool(net, "AveragePooling2D", x, f"normal_{n}_{block_id}", 1, "same")

        x1 = add(sep(h, 5, "left1"), sep(p, 3, "right1"), f"normal_add_1_{block_id}")
        x2 = add(sep(p, 5, "left2"), sep(p, 3, "right2"), f"normal_add_2_{block_id}")
        x3 = add(avg(h, "left3"), p, f"normal_add_3_{block_id}")
        x4 = add(avg(p, "left4"), avg(p, "right4"), f"normal_add_4_{block_id}")
        x5 = add(sep(h, 3, "left5"), h, f"normal_add_5_{block_id}")
        rows, cols, _ = self.shapes[h]
        x = self._add(net, "Concatenate", [p, x1, x2, x3, x4, x5], f"normal_concat_{block_id}",
                      (rows, cols, 6 * filters), axis=3)
        return x, ip

    def _reduction(self, net, ip, p, filters, block_id):
        p = self._adjust(net, p, ip, filters, block_id)
        h = self._relu(net, ip)
        h = self._bn(net, self._conv1x1(net, h, filters, f"reduction_conv_1_{block_id}"),
                     f"reduction_bn_1_{block_id}")
        h3 = self._correct_pad(net, h, 3, f"reduction_pad_1_{block_id}")
        add = lambda a, b, name=None: self._add(net, "Add", [a, b], name)  # noqa: E731
        sep = lambda x, k, n, s=2: self._sep_block(net, x, filters, k, s,  # noqa: E731
                                                    f"reduction_{n}_{block_id}")
        pool = lambda kind, x, n: self._pool(net, kind, x, f"reduction_{n}_{block_id}", 2,  # noqa
                                             "valid")
        x1 = add(sep(h, 5, "left1"), sep(p, 7, "right1"), f"reduction_add_1_{block_id}")
        x2 = add(pool("MaxPooling2D", h3, "left2"), sep(p, 7, "right2"),
                 f"reduction_add_2_{block_id}")
        x3 = add(pool("AveragePooling2D", h3, "left3"), sep(p, 5, "right3"),
                 f"reduction_add3_{block_id}")
        x4 = add(x2, self._pool(net, "AveragePooling2D", x1, f"reduction_left4_{block_id}", 1,
                                "same"))
        x5 = add(sep(x1, 3, "left4", 1), pool("MaxPooling2D", h3, "right5"),
                 f"reduction_add4_{block_id}")
        rows, cols, _ = self.shapes[x1]
        x = self._add(net, "Concatenate", [x2, x3, x4, x5], f"reduction_concat_{block_id}",
                      (rows, cols, 4 * filters), axis=3)
        return x, ip

    def body(self, net, x):
        rows, cols, channels = self.shape()
        self.shapes = {x: (rows, cols, channels)}
        m, n = self.multiplier, self.num_blocks
        filters = self.penultimate_filters // 24
        x = self._add(net, "Conv2D", x, "stem_conv1",
                      ((rows - 3) // 2 + 1, (cols - 3) // 2 + 1, self.stem_filters),
                      filters=self.stem_filters, kernel_size=3, strides=2, padding="valid",
                      use_bias=False)
        x = self._bn(net, x, "stem_bn1")
        x, p = self._reduction(net, x, None, filters // m ** 2, "stem_1")
        x, p = self._reduction(net, x, p, filters // m, "stem_2")
        for i in range(n):
            x, p = self._normal(net, x, p, filters, str(i))
        for stage in (1, 2):
            x, p0 = self._reduction(net, x, p, filters * m ** stage, f"reduce_{stage * n}")
            p = p if self.skip_reduction else p0
            for i in range(n):
                x, p = self._normal(net, x, p, filters * m ** stage, str(stage * n + i + 1))
        return self._relu(net, x)

    def top(self, net, x):
        return self.predictions(net, net.add("GlobalAveragePooling2D", x))

    def weight_remote(self):
        fname, url_name, md5 = self.FILES[bool(self.include_top)]
        return Remote(fname, "https://storage.googleapis.com/tensorflow/keras-applications/"
                      f"nasnet/{url_name}", md5, "models")


@applications.register("NASNetMobile")
class NASNetMobile(NASNet):
    __doc__ = Application.__doc__
    penultimate_filters, num_blocks, stem_filters, skip_reduction = 1056, 4, 32, False
    default_size = 224
    FILES = {True: ("nasnet_mobile.h5", "NASNet-mobile.h5", "020fb642bf7360b370c678b08e0adf61"),
             False: ("nasnet_mobile_no_top.h5", "NASNet-mobile-no-top.h5",
                     "1ed92395b5b598bdda52abe5c0dbfd63")}


@applications.register("NASNetLarge")
class NASNetLarge(NASNet):
    __doc__ = Application.__doc__
    penultimate_filters, num_blocks, stem_filters, skip_reduction = 4032, 6, 96, True
    default_size = 331
    FILES = {True: ("nasnet_large.h5", "NASNet-large.h5", "11577c9a518f0070763c2b964a382f17"),
             False: ("nasnet_large_no_top.h5", "NASNet-large-no-top.h5",
                     "d81d89dc07e6e56530c4e77faddd61b5")}
