"""Attention layers (filled in below)."""
