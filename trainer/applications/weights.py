"""The weight files Keras's applications load: Keras's file names (its cache names in
``~/.keras/models/``), URLs and the hashes Keras checks (MD5 for most, SHA-256 where
Keras gives one, none where Keras checks none)."""

from trainer.fetch import Remote

BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _pair(folder, stem, top_hash, notop_hash, notop_stem=None):
    """{include_top: Remote} for ``stem.h5`` and ``stem_notop.h5`` under ``folder``."""
    notop = (notop_stem or stem + "_notop") + ".h5"
    return {True: Remote(stem + ".h5", f"{BASE}{folder}/{stem}.h5", top_hash, "models"),
            False: Remote(notop, f"{BASE}{folder}/{notop}", notop_hash, "models")}


WEIGHTS = {
    "VGG16": _pair("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels",
                   "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc"),
    "VGG19": _pair("vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels",
                   "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6"),
}

_RESNET = {
    "ResNet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "ResNet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "ResNet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "ResNet50V2": ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "ResNet101V2": ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "ResNet152V2": ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}
for _name, (_top, _notop) in _RESNET.items():
    WEIGHTS[_name] = _pair("resnet", f"{_name.lower()}_weights_tf_dim_ordering_tf_kernels",
                           _top, _notop)


for _name, _top, _notop in (
        ("DenseNet121", "9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738"),
        ("DenseNet169", "d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b"),
        ("DenseNet201", "1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1")):
    WEIGHTS[_name] = _pair("densenet", f"{_name.lower()}_weights_tf_dim_ordering_tf_kernels",
                           _top, _notop)
WEIGHTS["InceptionV3"] = _pair("inception_v3", "inception_v3_weights_tf_dim_ordering_tf_kernels",
                               "9a0d58056eeedaa3f26cb7ebd46da564",
                               "bcbd6486424b2319ff4ef7d526e38f63")
WEIGHTS["Xception"] = _pair("xception", "xception_weights_tf_dim_ordering_tf_kernels",
                            "0a58e3b7378bc2990ea3b43d5981f1f6", "b0042744bf5b25fce3cb969f33bebb97")
WEIGHTS["InceptionResNetV2"] = _pair(
    "inception_resnet_v2", "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels",
    "e693bd0210a403b3192acc6073ad2e96", "d19885ff4a710c122648d3b5c3b684e4")


def remote_for(app):
    """The Remote of ``app``'s imagenet weights (its family may pick by its arguments)."""
    from trainer.errors import ConfigError

    name = type(app).registered_name
    choose = getattr(app, "weight_remote", None)
    remote = choose() if choose else WEIGHTS.get(name, {}).get(bool(app.include_top))
    if remote is None:
        raise ConfigError(f"{name}: Keras releases no imagenet weights for these arguments; "
                          f"use weights: null or the path of a weight file")
    return remote
