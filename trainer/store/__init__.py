"""Persistence of a run: the run folder and its checkpoints."""
