"""LambdaCallback: Keras's callback of plain functions, named instead of written.

A config holds no code, so each hook names a function as ``module:function``, imported
the way user callbacks are (the config's folder first, then the Python path;
trainer/config/usercode.py)::

    callbacks:
      - LambdaCallback: {on_epoch_end: "my_hooks:plot_loss", on_batch_begin: "my_hooks:show"}

The functions get Keras's arguments: ``on_epoch_begin/end(epoch, logs)``,
``on_batch_begin/end(batch, logs)``, ``on_train_begin/end(logs)``. Keras code stops
training from such a function through the model it closes over
(``model.stop_training = True``); a named function has no closure, so one that
declares a parameter called ``model`` is given the model as that keyword, and stops
training the same way.
"""

import inspect
from typing import Annotated

from trainer.callbacks.base import Callback
from trainer.config.usercode import USER_CODE_PATTERN
from trainer.errors import ConfigError
from trainer.config.families import callbacks
from trainer.config.registry import Schema

#: ``module:function``
Function = Annotated[str, Schema(pattern=USER_CODE_PATTERN)]

#: each hook and the arguments Keras passes it (names for messages)
HOOKS = {"on_epoch_begin": ("epoch", "logs"), "on_epoch_end": ("epoch", "logs"),
         "on_batch_begin": ("batch", "logs"), "on_batch_end": ("batch", "logs"),
         "on_train_begin": ("logs",), "on_train_end": ("logs",)}


@callbacks.register("LambdaCallback")
class LambdaCallback(Callback):
    """Functions called at Keras's hooks, each named ``module:function``.

    Args (each optional, default none):
        on_epoch_begin, on_epoch_end: ``fn(epoch, logs)``, epoch counted from 0.
        on_batch_begin, on_batch_end: ``fn(batch, logs)``.
        on_train_begin, on_train_end: ``fn(logs)``.

    logs are a copy of what the other callbacks see (loss, metrics, val_ values, lr).
    A function with a parameter named ``model`` also gets the model (keyword):
    ``model.stop_training = True`` stops training after the current batch or epoch.
    """

    def __init__(self, on_epoch_begin: Function | None = None,
                 on_epoch_end: Function | None = None,
                 on_batch_begin: Function | None = None,
                 on_batch_end: Function | None = None,
                 on_train_begin: Function | None = None,
                 on_train_end: Function | None = None):
        super().__init__()
        self.on_epoch_begin_ref, self.on_epoch_end_ref = on_epoch_begin, on_epoch_end
        self.on_batch_begin_ref, self.on_batch_end_ref = on_batch_begin, on_batch_end
        self.on_train_begin_ref, self.on_train_end_ref = on_train_begin, on_train_end
        for hook in HOOKS:
            ref = self.ref(hook)
            if ref is not None and (not isinstance(ref, str) or ref.count(":") != 1):
                raise ConfigError(f"LambdaCallback {hook}: expected module:function, "
                                  f"got {ref!r}")
        self._functions = None  # hook → (function, whether it takes `model`)

    #: the arguments are read back from the *_ref attributes (the hooks are methods)
    config_attributes = {hook: f"{hook}_ref" for hook in HOOKS}

    def ref(self, hook):
        return getattr(self, f"{hook}_ref")

    def resolve_user_code(self, folder):
        """Import every named function (from ``folder`` first) and check it takes the
        hook's arguments; called when the callbacks are built, before any data."""
        from trainer.config.usercode import load_function

        functions = {}
        for hook, args in HOOKS.items():
            ref = self.ref(hook)
            if ref is None:
                continue
            fn = load_function(ref, folder, f"LambdaCallback {hook}")
            try:
                params = inspect.signature(fn).parameters
            except (TypeError, ValueError):
                params = {}
            wants_model = "model" in params or any(
                p.kind is p.VAR_KEYWORD for p in params.values())
            try:
                inspect.signature(fn).bind(*args, **({"model": None} if wants_model else {}))
            except TypeError as exc:
                raise ConfigError(f"LambdaCallback {hook}: {ref} cannot be called as Keras "
                                  f"calls it, {hook}({', '.join(args)}): {exc}") from None
            except ValueError:
                pass  # no signature to check (a builtin): called as is
            functions[hook] = (fn, wants_model)
        self._functions = functions

    def _call(self, hook, *args):
        if self._functions is None:
            self.resolve_user_code(None)
        entry = self._functions.get(hook)
        if entry is None:
            return
        fn, wants_model = entry
        *rest, logs = args
        fn(*rest, dict(logs or {}), **({"model": self.model} if wants_model else {}))

    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs)
    def on_batch_begin(self, batch, logs=None): self._call("on_batch_begin", batch, logs)
    def on_batch_end(self, batch, logs=None): self._call("on_batch_end", batch, logs)
    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
