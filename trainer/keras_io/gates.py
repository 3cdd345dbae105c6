"""Keras 3's hard_sigmoid is relu6(x + 3) / 6, Keras 2's (ours) clip(0.2 x + 0.5, 0, 1)
= relu6(1.2 x + 3) / 6: an LSTM's or GRU's gate columns go out to Keras 3 scaled by 1.2
(``to_keras3_gates``) and come back divided (``from_keras3_gates``).

Apart from keras3.py so that reading weights (h5.py) does not import the writers."""

import numpy as np


#: the gates a recurrent layer's recurrent_activation applies to (weight column blocks)
GATES = {"LSTM": (0, 1, 3), "GRU": (0, 1)}  # LSTM i, f, (c), o; GRU z, r, (h)
#: Keras 2's hard_sigmoid clip(0.2 z + 0.5, 0, 1) is Keras 3's relu6(1.2 z + 3) / 6
HARD_SIGMOID_SCALE = 1.2


def scale_gates(layer, values, factor):
    """``values`` (an LSTM's or GRU's weights) with the gate columns under a
    hard_sigmoid recurrent activation multiplied by ``factor``; unchanged otherwise."""
    act = getattr(getattr(layer, "recurrent_activation", None), "registered_name", None)
    gates = GATES.get(getattr(type(layer), "registered_name", ""))
    if act != "hard_sigmoid" or gates is None:
        return values
    out = []
    for w in values:
        w = np.array(w, dtype=np.float64)
        for g in gates:
            w[..., g * layer.units:(g + 1) * layer.units] *= factor
        out.append(w.astype(layer.dtype))
    return out


def to_keras3_gates(layer):
    """A recurrent layer's weights for Keras 3: with ``recurrent_activation:
    hard_sigmoid`` (our default, as Keras 2.2) the gates' columns scaled by 1.2, so
    that Keras 3's hard_sigmoid of them is Keras 2's of ours."""
    return scale_gates(layer, layer.get_weights(), HARD_SIGMOID_SCALE)


def from_keras3_gates(layer, values):
    """The inverse, for weights read from Keras 3's native layout into ``layer`` (an
    LSTM or GRU, or one inside Bidirectional or TimeDistributed)."""
    from trainer.layers.recurrent import RNN
    from trainer.layers.wrappers import Bidirectional, TimeDistributed

    if isinstance(layer, Bidirectional):
        half = len(values) // 2
        return (from_keras3_gates(layer.forward_layer, values[:half])
                + from_keras3_gates(layer.backward_, values[half:]))
    if isinstance(layer, TimeDistributed):
        return from_keras3_gates(layer.layer, values)
    if not isinstance(layer, RNN):
        return values
    return scale_gates(layer, values, 1 / HARD_SIGMOID_SCALE)
