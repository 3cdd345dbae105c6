"""The layer library. Each module registers its layers in ``registries.layers``."""
