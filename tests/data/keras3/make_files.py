"""How the files here were made: real Keras 3.15.1 (JAX backend) legacy .h5 saved
models. Not run by the tests (Keras is not a dependency); rerun by hand with Keras
installed, then pack the *_x/*_y arrays into predictions.npz."""
import os
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np
import keras
from keras import layers

rng = np.random.default_rng(0)
out = os.path.dirname(os.path.abspath(__file__))

def save(model, name, x):
    model.save(f"{out}/{name}.h5")
    open(f"{out}/{name}.json", "w").write(model.to_json())
    np.save(f"{out}/{name}_x.npy", x)
    np.save(f"{out}/{name}_y.npy", model.predict(x, verbose=0))

m = keras.Sequential([keras.Input((4,)), layers.Dense(5, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01)),
                      layers.Dropout(0.3), layers.Dense(3, activation="softmax")])
save(m, "mlp", rng.normal(size=(6, 4)).astype("f4"))

a = keras.Input((4,), name="a"); b = keras.Input((4,), name="b")
shared = layers.Dense(5, activation="relu", name="shared")
cat = layers.Concatenate(name="cat")([shared(a), shared(b)])
o = layers.Dense(3, activation="softmax", name="out")(cat)
f = keras.Model([a, b], o)
x = rng.normal(size=(6, 4)).astype("f4")
f.save(f"{out}/fun.h5"); open(f"{out}/fun.json", "w").write(f.to_json())
np.save(f"{out}/fun_x.npy", x); np.save(f"{out}/fun_y.npy", f.predict([x, x[::-1]], verbose=0))

c = keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(2, 3, activation="relu"), layers.BatchNormalization(),
                      layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")])
bn = c.layers[1]
bn.set_weights([rng.uniform(0.5, 2, 2), rng.normal(size=2), rng.normal(size=2), rng.uniform(0.5, 2, 2)])
save(c, "cnn", rng.normal(size=(3, 6, 6, 1)).astype("f4"))

l = keras.Sequential([keras.Input((5, 2)), layers.LSTM(3), layers.Dense(2)])
save(l, "lstm", rng.normal(size=(4, 5, 2)).astype("f4"))
g = keras.Sequential([keras.Input((5, 2)), layers.GRU(3), layers.Dense(2)])
save(g, "gru", rng.normal(size=(4, 5, 2)).astype("f4"))
print("ok")
