"""Fast array kernels of the engine (im2col convolution, pooling), each beside a
plain reference version (``*_reference.py``) that the tests compare it with."""
