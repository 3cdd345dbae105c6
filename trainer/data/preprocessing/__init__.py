"""Preprocessing steps for x and y, by name."""
