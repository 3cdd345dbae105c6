"""ResNet50/101/152 (He et al., CVPR 2016) and ResNet50V2/101V2/152V2 (identity
mappings, ECCV 2016), Keras's ``resnet.py``/``resnet_v2.py``: bottleneck blocks named
``conv{stage}_block{i}_{k}_{conv,bn,relu}``."""

from trainer.applications._base import Application
from trainer.config.families import applications


EPS = 1.001e-5  # Keras's BatchNormalization epsilon in these families


class ResNet(Application):
    stacks = ()  # blocks per stage conv2..conv5
    preact = False
    pool_names = ("avg_pool", "max_pool")

    def body(self, net, x):
        x = net.add("ZeroPadding2D", x, "conv1_pad", padding=[[3, 3], [3, 3]])
        x = net.conv(x, "conv1_conv", 64, 7, strides=2)
        if not self.preact:
            x = net.bn(x, "conv1_bn", EPS)
            x = net.act(x, "relu", "conv1_relu")
        x = net.add("ZeroPadding2D", x, "pool1_pad", padding=[[1, 1], [1, 1]])
        x = net.add("MaxPooling2D", x, "pool1_pool", pool_size=3, strides=2)
        for stage, (filters, blocks) in enumerate(zip((64, 128, 256, 512), self.stacks), 2):
            x = self.stack(net, x, filters, blocks, stage)
        if self.preact:
            x = net.bn(x, "post_bn", EPS)
            x = net.act(x, "relu", "post_relu")
        return x

    def stack(self, net, x, filters, blocks, stage):
        name = f"conv{stage}"
        x = self.block_v1(net, x, filters, 1 if stage == 2 else 2, True, f"{name}_block1")
        for i in range(2, blocks + 1):
            x = self.block_v1(net, x, filters, 1, False, f"{name}_block{i}")
        return x

    @staticmethod
    def block_v1(net, x, filters, stride, conv_shortcut, name):
        if conv_shortcut:
            shortcut = net.conv(x, f"{name}_0_conv", 4 * filters, 1, strides=stride)
            shortcut = net.bn(shortcut, f"{name}_0_bn", EPS)
        else:
            shortcut = x
        x = net.conv(x, f"{name}_1_conv", filters, 1, strides=stride)
        x = net.act(net.bn(x, f"{name}_1_bn", EPS), "relu", f"{name}_1_relu")
        x = net.conv(x, f"{name}_2_conv", filters, 3, padding="same")
        x = net.act(net.bn(x, f"{name}_2_bn", EPS), "relu", f"{name}_2_relu")
        x = net.conv(x, f"{name}_3_conv", 4 * filters, 1)
        x = net.bn(x, f"{name}_3_bn", EPS)
        x = net.add("Add", [shortcut, x], f"{name}_add")
        return net.act(x, "relu", f"{name}_out")


class ResNetV2(ResNet):
    preact = True
    preprocess_mode = "tf"

    def stack(self, net, x, filters, blocks, stage):
        name = f"conv{stage}"
        x = self.block_v2(net, x, filters, 1, True, f"{name}_block1")
        for i in range(2, blocks):
            x = self.block_v2(net, x, filters, 1, False, f"{name}_block{i}")
        stride = 1 if stage == 5 else 2
        return self.block_v2(net, x, filters, stride, False, f"{name}_block{blocks}")

    @staticmethod
    def block_v2(net, x, filters, stride, conv_shortcut, name):
        preact = net.act(net.bn(x, f"{name}_preact_bn", EPS), "relu", f"{name}_preact_relu")
        if conv_shortcut:
            shortcut = net.conv(preact, f"{name}_0_conv", 4 * filters, 1, strides=stride)
        elif stride > 1:
            shortcut = net.add("MaxPooling2D", x, pool_size=1, strides=stride)
        else:
            shortcut = x
        x = net.conv(preact, f"{name}_1_conv", filters, 1, use_bias=False)
        x = net.act(net.bn(x, f"{name}_1_bn", EPS), "relu", f"{name}_1_relu")
        x = net.add("ZeroPadding2D", x, f"{name}_2_pad", padding=[[1, 1], [1, 1]])
        x = net.conv(x, f"{name}_2_conv", filters, 3, strides=stride, use_bias=False)
        x = net.act(net.bn(x, f"{name}_2_bn", EPS), "relu", f"{name}_2_relu")
        x = net.conv(x, f"{name}_3_conv", 4 * filters, 1)
        return net.add("Add", [shortcut, x], f"{name}_out")


def _register(name, base, stacks):
    cls = type(name, (base,), {"stacks": stacks, "model_name": name.lower(),
                               "__doc__": Application.__doc__, "__module__": __name__})
    applications.register(name)(cls)
    globals()[name] = cls


for _name, _stacks in (("ResNet50", (3, 4, 6, 3)), ("ResNet101", (3, 4, 23, 3)),
                       ("ResNet152", (3, 8, 36, 3))):
    _register(_name, ResNet, _stacks)
    _register(_name + "V2", ResNetV2, _stacks)
