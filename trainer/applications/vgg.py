"""VGG16 and VGG19 (Simonyan & Zisserman, ICLR 2015), Keras's ``vgg16.py``/``vgg19.py``:
five blocks of 3×3 convolutions and 2×2 max pooling, then fc1, fc2, predictions."""

from trainer.applications._base import Application
from trainer.config.families import applications


class VGG(Application):
    blocks = ()  # convolutions per block
    pool_names = ("global_average_pooling2d", "global_max_pooling2d")

    def body(self, net, x):
        for b, (n, filters) in enumerate(zip(self.blocks, (64, 128, 256, 512, 512)), 1):
            for i in range(1, n + 1):
                x = net.conv(x, f"block{b}_conv{i}", filters, 3, padding="same",
                             activation="relu")
            x = net.add("MaxPooling2D", x, f"block{b}_pool", pool_size=2, strides=2)
        return x

    def top(self, net, x):
        x = net.add("Flatten", x, "flatten")
        x = net.add("Dense", x, "fc1", units=4096, activation="relu")
        x = net.add("Dense", x, "fc2", units=4096, activation="relu")
        return self.predictions(net, x)


@applications.register("VGG16")
class VGG16(VGG):
    __doc__ = Application.__doc__
    blocks = (2, 2, 3, 3, 3)
    model_name = "vgg16"


@applications.register("VGG19")
class VGG19(VGG):
    __doc__ = Application.__doc__
    blocks = (2, 2, 4, 4, 4)
    model_name = "vgg19"
