"""How digits_keras3.keras was made: a small CNN trained on trainer's digits split by
real Keras 3.15.1 (torch backend), saved as a Keras 3 archive. configs/keras3_finetune.yaml
imports it. Keras is not a dependency; rerun by hand with Keras installed:
KERAS_BACKEND=torch python configs/data/make_digits_keras3.py"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from trainer.config.families import datasets  # noqa: E402  (trainer's own split, no network)

keras.utils.set_random_seed(0)
x, y = datasets.get({"digits": {"subset": "train"}}).load()
x = x.astype("float32") / 16.0
model = keras.Sequential([
    keras.Input((8, 8)), layers.Reshape((8, 8, 1)),
    layers.Conv2D(8, 3, activation="relu", padding="same"), layers.MaxPooling2D(2),
    layers.Flatten(), layers.Dense(32, activation="relu"), layers.Dropout(0.2),
    layers.Dense(10, activation="softmax")], name="digits_keras3")
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=15, batch_size=32, verbose=0)
xt, yt = datasets.get({"digits": {"subset": "test"}}).load()
print("Keras test accuracy", model.evaluate(xt.astype("float32") / 16.0, yt, verbose=0)[1])
model.save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits_keras3.keras"))
