"""InceptionResNetV2 (Szegedy et al., AAAI 2017), Keras's ``inception_resnet_v2.py``:
299×299 input, residual inception blocks block35/block17/block8. Keras adds each
block's scaled branch with a Lambda (``x + up · scale``, named ``block35_1`` ...); here
the same sum is a Rescaling (``block35_1_scale``) and an Add named as Keras's Lambda,
neither holding weights, so the released file loads by name."""

from trainer.applications._base import Application
from trainer.config.families import applications


@applications.register("InceptionResNetV2")
class InceptionResNetV2(Application):
    __doc__ = Application.__doc__
    default_size = 299
    min_size = 75
    preprocess_mode = "tf"
    model_name = "inception_resnet_v2"
    first_suffix = 1
    pool_names = (None, None)

    @staticmethod
    def unit(net, x, filters, kernel, strides=1, padding="same", activation="relu",
             use_bias=False, name=None):
        """Keras's conv2d_bn of this family."""
        x = net.add("Conv2D", x, name, filters=filters, kernel_size=kernel,
                    strides=strides if strides != 1 else None, padding=padding,
                    use_bias=None if use_bias else False)
        if not use_bias:
            x = net.add("BatchNormalization", x, name and name + "_bn", axis=3, scale=False)
        if activation is not None:
            x = net.add("Activation", x, name and name + "_ac", activation=activation)
        return x

    def block(self, net, x, channels, scale, kind, idx, activation="relu"):
        u = lambda *a, **k: self.unit(net, *a, **k)  # noqa: E731
        if kind == "block35":
            branches = [u(x, 32, 1), u(u(x, 32, 1), 32, 3), u(u(u(x, 32, 1), 48, 3), 64, 3)]
        elif kind == "block17":
            branches = [u(x, 192, 1), u(u(u(x, 128, 1), 160, [1, 7]), 192, [7, 1])]
        else:
            branches = [u(x, 192, 1), u(u(u(x, 192, 1), 224, [1, 3]), 256, [3, 1])]
        name = f"{kind}_{idx}"
        mixed = net.add("Concatenate", branches, name + "_mixed", axis=3)
        up = u(mixed, channels, 1, activation=None, use_bias=True, name=name + "_conv")
        up = net.add("Rescaling", up, name + "_scale", scale=scale)
        x = net.add("Add", [x, up], name)
        if activation is not None:
            x = net.add("Activation", x, name + "_ac", activation=activation)
        return x

    def body(self, net, x):
        u = lambda *a, **k: self.unit(net, *a, **k)  # noqa: E731
        pool = lambda x, **k: net.add("MaxPooling2D", x, pool_size=3, strides=2, **k)  # noqa
        x = u(x, 32, 3, strides=2, padding="valid")
        x = u(x, 32, 3, padding="valid")
        x = pool(u(x, 64, 3))
        x = u(x, 80, 1, padding="valid")
        x = pool(u(x, 192, 3, padding="valid"))
        b0 = u(x, 96, 1)
        b1 = u(u(x, 48, 1), 64, 5)
        b2 = u(u(u(x, 64, 1), 96, 3), 96, 3)
        bp = u(net.add("AveragePooling2D", x, pool_size=3, strides=1, padding="same"), 64, 1)
        x = net.add("Concatenate", [b0, b1, b2, bp], "mixed_5b", axis=3)
        for i in range(1, 11):
            x = self.block(net, x, 320, 0.17, "block35", i)
        b0 = u(x, 384, 3, strides=2, padding="valid")
        b1 = u(u(u(x, 256, 1), 256, 3), 384, 3, strides=2, padding="valid")
        x = net.add("Concatenate", [b0, b1, pool(x)], "mixed_6a", axis=3)
        for i in range(1, 21):
            x = self.block(net, x, 1088, 0.1, "block17", i)
        b0 = u(u(x, 256, 1), 384, 3, strides=2, padding="valid")
        b1 = u(u(x, 256, 1), 288, 3, strides=2, padding="valid")
        b2 = u(u(u(x, 256, 1), 288, 3), 320, 3, strides=2, padding="valid")
        x = net.add("Concatenate", [b0, b1, b2, pool(x)], "mixed_7a", axis=3)
        for i in range(1, 10):
            x = self.block(net, x, 2080, 0.2, "block8", i)
        x = self.block(net, x, 2080, 1.0, "block8", 10, activation=None)
        return u(x, 1536, 1, name="conv_7b")
