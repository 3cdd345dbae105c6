import os
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np
import keras
from keras import layers

rng = np.random.default_rng(1)
out = os.path.dirname(os.path.abspath(__file__))

def save(model, name, x):
    model.save(f"{out}/{name}.h5")
    np.save(f"{out}/{name}_x.npy", x)
    np.save(f"{out}/{name}_y.npy", model.predict(x, verbose=0))

base = keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(2, 3, activation="relu"),
                         layers.BatchNormalization(), layers.Flatten()], name="base")
base.layers[1].set_weights([rng.uniform(0.5, 2, 2), rng.normal(size=2), rng.normal(size=2), rng.uniform(0.5, 2, 2)])
base.trainable = False
m = keras.Sequential([keras.Input((6, 6, 1)), base, layers.Dense(3, activation="softmax")])
save(m, "nested_seq", rng.normal(size=(3, 6, 6, 1)).astype("f4"))

i = keras.Input((4,), name="i")
inner_f = keras.Model(i, layers.Dense(3, activation="tanh", name="inner_dense")(i), name="innerf")
inner_s = keras.Sequential([keras.Input((3,)), layers.Dense(5, activation="relu", name="s1"), layers.BatchNormalization(name="s_bn")], name="inners")
x_in = keras.Input((4,), name="x")
o = layers.Dense(2, name="head")(inner_s(inner_f(x_in)))
f = keras.Model(x_in, o)
save(f, "nested_fun", rng.normal(size=(5, 4)).astype("f4"))
print("ok")
