"""Learning-rate schedules by name: ``schedule(step) -> lr``."""
