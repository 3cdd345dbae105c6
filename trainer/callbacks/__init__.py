"""Callbacks, with Keras 2 names and semantics."""
