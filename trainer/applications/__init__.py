"""Keras's pretrained application families, written as our functional model config.

``model: {application: ResNet50, weights: imagenet, include_top: true, ...}`` is
expanded (``expand``) into ``model: {inputs, layers, outputs, weights}`` before the
builder runs, with Keras's layer names, so that the weight files Keras releases load
by name and ``trainer summary`` reads as Keras's. One file per family; each registers
its models in ``trainer.config.families.applications``. ``weights: imagenet`` is fetched
from Keras's cache or Keras's URL (``trainer.fetch``); the table is ``weights.py``.
"""
