"""trainer: declarative neural-network training with Keras 2 vocabulary."""

__version__ = "0.1.0"
