"""Xception (Chollet, CVPR 2017), Keras's ``xception.py``: 299×299 input, separable
convolutions in 14 blocks with residual 1×1 convolutions (automatically named, from
``conv2d_1`` in the released file)."""

from trainer.applications._base import Application
from trainer.config.families import applications


@applications.register("Xception")
class Xception(Application):
    __doc__ = Application.__doc__
    default_size = 299
    min_size = 71
    preprocess_mode = "tf"
    model_name = "xception"
    first_suffix = 1
    pool_names = (None, None)

    @staticmethod
    def sep(net, x, name, filters):
        x = net.add("SeparableConv2D", x, name, filters=filters, kernel_size=3, padding="same",
                    use_bias=False)
        return net.bn(x, name + "_bn")

    def body(self, net, x):
        x = net.conv(x, "block1_conv1", 32, 3, strides=2, use_bias=False)
        x = net.act(net.bn(x, "block1_conv1_bn"), "relu", "block1_conv1_act")
        x = net.conv(x, "block1_conv2", 64, 3, use_bias=False)
        x = net.act(net.bn(x, "block1_conv2_bn"), "relu", "block1_conv2_act")
        for block, (f1, f2) in ((2, (128, 128)), (3, (256, 256)), (4, (728, 728)),
                                (13, (728, 1024))):
            if block == 13:
                for i in range(5, 13):  # the middle flow, between block 4 and 13
                    residual, p = x, f"block{i}"
                    for k in (1, 2, 3):
                        x = self.sep(net, net.act(x, "relu", f"{p}_sepconv{k}_act"),
                                     f"{p}_sepconv{k}", 728)
                    x = net.add("Add", [x, residual])
            residual = net.conv(x, None, f2, 1, strides=2, padding="same", use_bias=False)
            residual = net.bn(residual)
            p = f"block{block}"
            if block != 2:
                x = net.act(x, "relu", f"{p}_sepconv1_act")
            x = self.sep(net, x, f"{p}_sepconv1", f1)
            x = self.sep(net, net.act(x, "relu", f"{p}_sepconv2_act"), f"{p}_sepconv2", f2)
            x = net.add("MaxPooling2D", x, f"{p}_pool", pool_size=3, strides=2, padding="same")
            x = net.add("Add", [x, residual])
        x = net.act(self.sep(net, x, "block14_sepconv1", 1536), "relu", "block14_sepconv1_act")
        return net.act(self.sep(net, x, "block14_sepconv2", 2048), "relu", "block14_sepconv2_act")
