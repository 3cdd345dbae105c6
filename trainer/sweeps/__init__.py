"""Sweeps: many runs of one config over a grid or a random search of settings."""
