"""The files behind Keras's datasets: cache names, URLs and the hashes Keras checks
(keras/datasets/*.py), so a user who ran ``keras.datasets.X.load_data()`` once
already has them in ``~/.keras/datasets/``. ``trainer fetch dataset NAME`` fetches
them ahead of time."""

from trainer.fetch import Remote, get_file

TF = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
KRIZ = "https://www.cs.toronto.edu/~kriz/"

FASHION = {  # file → SHA-256
    "train-labels-idx1-ubyte.gz":
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "train-images-idx3-ubyte.gz":
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "t10k-labels-idx1-ubyte.gz":
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "t10k-images-idx3-ubyte.gz":
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
}

#: dataset name → the files it reads, in the order its loader wants them
KERAS_FILES = {
    "mnist": [Remote("mnist.npz", TF + "mnist.npz",
                     "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")],
    "fashion_mnist": [Remote(name, TF + name, digest, "datasets/fashion-mnist")
                      for name, digest in FASHION.items()],
    "cifar10": [Remote("cifar-10-batches-py", KRIZ + "cifar-10-python.tar.gz",
                       "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                       extract=True)],
    "cifar100": [Remote("cifar-100-python", KRIZ + "cifar-100-python.tar.gz",
                        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
                        extract=True, keras3_dir="cifar-100-python-target")],
    "imdb": [Remote("imdb.npz", TF + "imdb.npz",
                    "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f")],
    "reuters": [Remote("reuters.npz", TF + "reuters.npz",
                       "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916")],
    "boston_housing": [Remote("boston_housing.npz", TF + "boston_housing.npz",
                              "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5")],
}


def fetch(name, mirror=None, progress=None):
    """The local paths of dataset ``name``'s files (cache hit or download)."""
    return [get_file(r, mirror=mirror, progress=progress) for r in KERAS_FILES[name]]
