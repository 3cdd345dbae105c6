"""The training runtime: the epoch loop and resuming a run."""
