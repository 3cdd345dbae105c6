"""InceptionV3 (Szegedy et al., CVPR 2016), Keras's ``inception_v3.py``: 299×299 input,
inception modules ``mixed0`` .. ``mixed10`` of Conv-BN(scale off)-ReLU units, whose
layers Keras leaves to automatic names (``conv2d_1`` .. in the released file)."""

from trainer.applications._base import Application
from trainer.config.families import applications


@applications.register("InceptionV3")
class InceptionV3(Application):
    __doc__ = Application.__doc__
    default_size = 299
    min_size = 75
    preprocess_mode = "tf"
    model_name = "inception_v3"
    first_suffix = 1
    pool_names = (None, None)

    @staticmethod
    def unit(net, x, filters, rows, cols, padding="same", strides=1):
        """Keras's conv2d_bn."""
        x = net.add("Conv2D", x, filters=filters, kernel_size=[rows, cols] if rows != cols
                    else rows, strides=strides if strides != 1 else None, padding=padding,
                    use_bias=False)
        x = net.add("BatchNormalization", x, axis=3, scale=False)
        return net.add("Activation", x, activation="relu")

    def body(self, net, x):
        u = lambda *a, **k: self.unit(net, *a, **k)  # noqa: E731
        x = u(x, 32, 3, 3, strides=2, padding="valid")
        x = u(x, 32, 3, 3, padding="valid")
        x = u(x, 64, 3, 3)
        x = net.add("MaxPooling2D", x, pool_size=3, strides=2)
        x = u(x, 80, 1, 1, padding="valid")
        x = u(x, 192, 3, 3, padding="valid")
        x = net.add("MaxPooling2D", x, pool_size=3, strides=2)
        for i, pool_filters in enumerate((32, 64, 64)):  # mixed0..2: 35×35
            b1 = u(x, 64, 1, 1)
            b5 = u(u(x, 48, 1, 1), 64, 5, 5)
            b3 = u(u(u(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
            bp = u(self.avg(net, x), pool_filters, 1, 1)
            x = net.add("Concatenate", [b1, b5, b3, bp], f"mixed{i}", axis=3)
        b3 = u(x, 384, 3, 3, strides=2, padding="valid")  # mixed3: 17×17
        bd = u(u(u(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, strides=2, padding="valid")
        bp = net.add("MaxPooling2D", x, pool_size=3, strides=2)
        x = net.add("Concatenate", [b3, bd, bp], "mixed3", axis=3)
        for i, c in zip(range(4, 8), (128, 160, 160, 192)):  # mixed4..7
            b1 = u(x, 192, 1, 1)
            b7 = u(u(u(x, c, 1, 1), c, 1, 7), 192, 7, 1)
            bd = u(u(u(u(u(x, c, 1, 1), c, 7, 1), c, 1, 7), c, 7, 1), 192, 1, 7)
            bp = u(self.avg(net, x), 192, 1, 1)
            x = net.add("Concatenate", [b1, b7, bd, bp], f"mixed{i}", axis=3)
        b3 = u(u(x, 192, 1, 1), 320, 3, 3, strides=2, padding="valid")  # mixed8: 8×8
        b7 = u(u(u(u(x, 192, 1, 1), 192, 1, 7), 192, 7, 1), 192, 3, 3, strides=2,
               padding="valid")
        bp = net.add("MaxPooling2D", x, pool_size=3, strides=2)
        x = net.add("Concatenate", [b3, b7, bp], "mixed8", axis=3)
        for i in range(2):  # mixed9, mixed10
            b1 = u(x, 320, 1, 1)
            b3 = u(x, 384, 1, 1)
            b3 = net.add("Concatenate", [u(b3, 384, 1, 3), u(b3, 384, 3, 1)], f"mixed9_{i}",
                         axis=3)
            bd = u(u(x, 448, 1, 1), 384, 3, 3)
            bd = net.add("Concatenate", [u(bd, 384, 1, 3), u(bd, 384, 3, 1)], axis=3)
            bp = u(self.avg(net, x), 192, 1, 1)
            x = net.add("Concatenate", [b1, b3, bd, bp], f"mixed{9 + i}", axis=3)
        return x

    @staticmethod
    def avg(net, x):
        return net.add("AveragePooling2D", x, pool_size=3, strides=1, padding="same")
