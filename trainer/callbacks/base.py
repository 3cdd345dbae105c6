"""The callback contract, as Keras 2: empty ``on_*`` hooks that receive ``logs``.

A callback stops training by setting ``self.model.stop_training = True``; the loop
reads the flag at the end of each batch and epoch. ``get_state``/``set_state`` carry
what a callback must remember across a resume (best value, wait counters).
"""


class Callback:
    def __init__(self):
        self.model = None
        self.run = None  # the run folder (trainer.runs.Run) when training from a config
        self.params = {}

    def set_context(self, model, run, params):
        self.model = model
        self.run = run
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass

    def get_state(self):
        """JSON-able state saved in last.h5 (see trainer.checkpoint)."""
        return {}

    def set_state(self, state):
        pass


class CallbackList:
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def __iter__(self):
        return iter(self.callbacks)

    def set_context(self, model, run, params):
        for c in self.callbacks:
            c.set_context(model, run, params)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for c in self.callbacks:
                getattr(c, hook)(*args, **kwargs)

        return call
