"""How the Keras 3 native files here were made: real Keras 3.15.1 (torch backend, CPU),
``model.save("x.keras")`` and ``model.save_weights("x.weights.h5")``. Not run by the
tests (Keras is not a dependency); rerun by hand with Keras installed. Inputs and
Keras's predictions go into native_predictions.npz."""
import os
import sys

os.environ["KERAS_BACKEND"] = "torch"
import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

keras.utils.set_random_seed(0)
rng = np.random.default_rng(3)
out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
arrays = {}


def randomize(model):
    """Non-trivial values everywhere (biases, BN statistics) so a misplaced weight shows."""
    for w in model.weights:
        v = rng.normal(0, 0.5, w.shape)
        if "variance" in w.path or w.path.endswith("gamma"):
            v = rng.uniform(0.5, 1.5, w.shape)
        w.assign(v.astype("float32"))


def save(model, name, *xs):
    randomize(model)
    model.save(f"{out}/{name}.keras")
    for k, x in enumerate(xs):
        arrays[f"{name}_x{k}"] = x
    y = model.predict(list(xs) if len(xs) > 1 else xs[0], verbose=0)
    arrays[f"{name}_y"] = y


f32 = lambda *shape: rng.normal(size=shape).astype("float32")  # noqa: E731

# a Sequential MLP with two Dense (class-name suffixes dense, dense_1) and a Dropout
mlp = keras.Sequential([keras.Input((4,)), layers.Dense(5, activation="relu"),
                        layers.Dropout(0.3), layers.Dense(3, activation="softmax")])
save(mlp, "mlp", f32(6, 4))
mlp.save_weights(f"{out}/mlp.weights.h5")  # the weights alone, same values

cnn = keras.Sequential([
    keras.Input((8, 8, 2)),
    layers.Conv2D(3, 3, padding="same", activation="relu"),
    layers.BatchNormalization(),
    layers.SeparableConv2D(4, 3, depth_multiplier=2),
    layers.DepthwiseConv2D(3, padding="same"),
    layers.Conv2DTranspose(2, 3, strides=2),
    layers.MaxPooling2D(2),
    layers.Conv2D(2, 1),
    layers.GlobalAveragePooling2D(),
    layers.Dense(3, activation="softmax")])
save(cnn, "cnn", f32(3, 8, 8, 2))

tok = keras.Input((7,), dtype="int32", name="tokens")
h = layers.Embedding(20, 6, mask_zero=True, name="emb")(tok)
h = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bi")(h)
h = layers.GRU(5, return_sequences=True, name="gru")(h)
h = layers.SimpleRNN(4, return_sequences=True, name="rnn")(h)
h = layers.TimeDistributed(layers.Dense(3, activation="tanh"), name="td")(h)
h = layers.LSTM(3, name="last")(h)
h = layers.PReLU(name="prelu")(h)
rnn = keras.Model(tok, layers.Dense(2, name="out")(h))
t = rng.integers(1, 20, (4, 7)).astype("int32")
t[0, 5:] = 0  # padding, masked
t[2, 3:] = 0
save(rnn, "rnn", t)

# the classic text classifier: a masked mean over the tokens; and Masking before an LSTM
# (Keras 3 records both masks as ops, NotEqual / Any, passed on as mask= arguments)
ids = keras.Input((6,), dtype="int32", name="ids")
e = layers.Embedding(15, 4, mask_zero=True, name="emb")(ids)
text = keras.Model(ids, layers.Dense(3, activation="softmax", name="out")(
    layers.GlobalAveragePooling1D(name="avg")(e)))
t = rng.integers(1, 15, (4, 6)).astype("int32")
t[0, 2:] = 0
t[3, 4:] = 0
save(text, "text", t)
seq = keras.Input((5, 3), name="x")
h = layers.LSTM(2, name="lstm")(layers.Masking(mask_value=0.0, name="masking")(seq))
masking = keras.Model(seq, h)
s = f32(3, 5, 3)
s[0, 3:] = 0.0
s[2, 1:] = 0.0
save(masking, "masking", s)

q = keras.Input((5, 6), name="q")
v = keras.Input((4, 6), name="v")
a = layers.MultiHeadAttention(num_heads=2, key_dim=3, name="mha")(q, v)
a = layers.Add(name="res")([q, a])
a = layers.LayerNormalization(name="ln")(a)
b = layers.Attention(use_scale=True, name="luong")([a, v])
c = layers.AdditiveAttention(name="bahdanau")([a, v])
m = layers.Concatenate(name="cat")([b, c])
m = layers.GlobalAveragePooling1D(name="pool")(m)
att = keras.Model([q, v], layers.Dense(2, name="head")(m))
save(att, "attention", f32(3, 5, 6), f32(3, 4, 6))

# a frozen Sequential base inside a Sequential, and a functional model inside a
# functional one (class names repeat at both levels: dense inside, dense outside)
base = keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(2, 3, activation="relu"),
                         layers.BatchNormalization(), layers.Flatten()], name="base")
base.trainable = False
nested_seq = keras.Sequential([keras.Input((6, 6, 1)), base, layers.Dense(3)])
save(nested_seq, "nested_seq", f32(3, 6, 6, 1))

i = keras.Input((4,), name="i")
inner = keras.Model(i, layers.Dense(3, activation="tanh", name="inner_dense")(i), name="inner")
x_in = keras.Input((4,), name="x")
shared = layers.Dense(4, activation="relu", name="shared")
s = layers.Add(name="sum")([shared(x_in), shared(layers.Dense(4, name="pre")(x_in))])
nested_fun = keras.Model(x_in, layers.Dense(2, name="head")(inner(s)))
save(nested_fun, "nested_fun", f32(5, 4))

# an encoder block on padded tokens: the mask goes through MultiHeadAttention, the
# residual Add (Keras 3 records a LogicalOr of the two masks) and LayerNormalization to
# the masked mean
tok = keras.Input((6,), dtype="int32", name="tokens")
e = layers.Embedding(12, 4, mask_zero=True, name="emb")(tok)
a = layers.MultiHeadAttention(num_heads=2, key_dim=2, name="mha")(e, e)
n = layers.LayerNormalization(name="norm")(layers.Add(name="residual")([e, a]))
encoder = keras.Model(tok, layers.Dense(2, name="out")(
    layers.GlobalAveragePooling1D(name="avg")(n)))
t = rng.integers(1, 12, (3, 6)).astype("int32")
t[0, 3:] = 0
t[2, 5:] = 0
save(encoder, "encoder", t)

# keras.ops on symbolic tensors: Keras 3 records them as operation nodes
from keras import ops  # noqa: E402

x_in = keras.Input((4,), name="x")
a = layers.Dense(3, name="a")(x_in)
b = layers.Dense(3, name="b")(x_in)
joined = ops.concatenate([a + b, a * b, ops.maximum(a, b) - b], axis=-1)
h = layers.Dense(3, name="h")(ops.relu(joined))
g = ops.leaky_relu(ops.elu(ops.gelu(h)), negative_slope=0.1)  # ops with arguments
g = ops.gelu(g, approximate=False)
ops_model = keras.Model(x_in, ops.softmax(ops.tanh(g) + ops.sigmoid(h)))
save(ops_model, "ops", f32(5, 4))
keras.Model(x_in, layers.Dense(2, name="d")(x_in) * 2.0).save(f"{out}/ops_constant.keras")

# preprocessing layers inside the model: an adapted Normalization (its mean, variance
# and count are weights) and a Rescaling
feats = keras.Input((3,), name="features")
norm = layers.Normalization(name="norm")
norm.adapt(rng.normal(2.0, 3.0, size=(64, 3)).astype("float32"))
pre = keras.Model(feats, layers.Dense(2, name="out")(
    layers.Rescaling(0.5, offset=0.1, name="resc")(norm(feats))))
for w in pre.get_layer("out").weights:
    w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))
pre.save(f"{out}/preprocess.keras")
arrays["preprocess_x0"] = f32(4, 3)
arrays["preprocess_y"] = pre.predict(arrays["preprocess_x0"], verbose=0)

np.savez(f"{out}/native_predictions.npz", **arrays)
print("ok", sorted(os.listdir(out)))
