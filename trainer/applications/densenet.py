"""DenseNet121/169/201 (Huang et al., CVPR 2017), Keras's ``densenet.py``: dense blocks
of BN-ReLU-Conv pairs concatenated onto their input (growth rate 32), with transition
blocks halving the channels and the size between them."""

from trainer.applications._base import Application
from trainer.config.families import applications

EPS = 1.001e-5


class DenseNet(Application):
    blocks = ()
    preprocess_mode = "torch"
    pool_names = ("avg_pool", "max_pool")

    def body(self, net, x):
        x = net.add("ZeroPadding2D", x, padding=[[3, 3], [3, 3]])
        x = net.conv(x, "conv1/conv", 64, 7, strides=2, use_bias=False)
        x = net.act(net.bn(x, "conv1/bn", EPS), "relu", "conv1/relu")
        x = net.add("ZeroPadding2D", x, padding=[[1, 1], [1, 1]])
        x = net.add("MaxPooling2D", x, "pool1", pool_size=3, strides=2)
        channels = 64
        for stage, blocks in enumerate(self.blocks, 2):
            for i in range(1, blocks + 1):
                x = self.conv_block(net, x, f"conv{stage}_block{i}")
            channels += 32 * blocks
            if stage < 5:
                channels = int(channels * 0.5)
                x = self.transition(net, x, channels, f"pool{stage}")
        return net.act(net.bn(x, "bn", EPS), "relu", "relu")

    @staticmethod
    def conv_block(net, x, name):
        x1 = net.act(net.bn(x, f"{name}_0_bn", EPS), "relu", f"{name}_0_relu")
        x1 = net.conv(x1, f"{name}_1_conv", 128, 1, use_bias=False)
        x1 = net.act(net.bn(x1, f"{name}_1_bn", EPS), "relu", f"{name}_1_relu")
        x1 = net.conv(x1, f"{name}_2_conv", 32, 3, padding="same", use_bias=False)
        return net.add("Concatenate", [x, x1], f"{name}_concat", axis=3)

    @staticmethod
    def transition(net, x, channels, name):
        x = net.act(net.bn(x, f"{name}_bn", EPS), "relu", f"{name}_relu")
        x = net.conv(x, f"{name}_conv", channels, 1, use_bias=False)
        return net.add("AveragePooling2D", x, f"{name}_pool", pool_size=2, strides=2)


for _name, _blocks in (("DenseNet121", (6, 12, 24, 16)), ("DenseNet169", (6, 12, 32, 32)),
                       ("DenseNet201", (6, 12, 48, 32))):
    globals()[_name] = applications.register(_name)(type(_name, (DenseNet,), {
        "blocks": _blocks, "model_name": _name.lower(), "__doc__": Application.__doc__,
        "__module__": __name__}))
