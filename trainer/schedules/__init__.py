"""Learning-rate schedules by Keras name: ``schedule(step) -> lr``.

A schedule is the ``learning_rate`` (or ``lr``) of any optimizer, called with the
optimizer's step count before each step, ``{CosineDecay: {initial_learning_rate:
0.1, decay_steps: 1000}}``; LearningRateScheduler calls the same schedules with the
epoch number instead.
"""

from trainer.config.families import schedules


def get(spec):
    return schedules.get(spec)
