"""Argument and shape helpers shared by the convolution and pooling layers."""

from trainer.engine.kernels.conv import out_size


def ntuple(value, rank, what, layer):
    """An int or a list of ``rank`` ints → a tuple of ``rank`` positive ints."""
    values = [value] * rank if isinstance(value, int) else list(value)
    if len(values) != rank or not all(isinstance(v, int) and v > 0 for v in values):
        raise layer.error(f"{what} must be a positive integer or a list of {rank} of them, "
                          f"got {value!r}")
    return tuple(values)


def check_padding(padding, layer, allowed=("valid", "same")):
    if padding not in allowed:
        raise layer.error(f"padding must be one of {', '.join(allowed)}, got {padding!r}")


#: names of the spatial axes, by rank
SPATIAL = {1: ("steps",), 2: ("rows", "cols"), 3: ("depth", "rows", "cols")}


def check_data_format(data_format, layer):
    if data_format not in (None, "channels_last"):
        raise layer.error(f"only data_format channels_last is supported, got {data_format!r}")


def window_output(layer, input_shape, rank, kernel, strides, dilation, padding, what):
    """Spatial output sizes of a window op on ``input_shape`` (without batch, channels
    last), with a clear error when the window does not fit the input."""
    layer.expect_rank(input_shape, SPATIAL[rank] + ("channels",))
    out = []
    for a in range(rank):
        n = input_shape[a]
        k_eff = (kernel[a] - 1) * dilation[a] + 1
        if n is not None and padding == "valid" and n < k_eff:
            dil = f" (dilated to {k_eff})" if dilation[a] > 1 else ""
            raise layer.error(f"{what} {kernel[a]}{dil} is larger than the input's size "
                              f"{n} along spatial axis {a + 1} (input shape {tuple(input_shape)}) "
                              f"with padding 'valid'; use padding 'same' or a smaller {what}")
        size = out_size(n, kernel[a], strides[a], dilation[a], padding)[0]
        if size is not None and size <= 0:
            raise layer.error(f"output size {size} along spatial axis {a + 1} is not positive "
                              f"(input shape {tuple(input_shape)})")
        out.append(size)
    return tuple(out)
