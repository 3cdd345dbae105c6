"""User components of the families a config names inside other components: losses,
metrics, initializers, regularizers, learning-rate schedules and preprocessing steps,
written ``{loss: "my_losses:FocalLoss", args: {gamma: 2.0}}``.

They are looked up through their registry (``Registry.get``) from deep inside the
components that take them (a Dense's kernel_initializer, an optimizer's
learning_rate), which know nothing of the config: the config's folder reaches them
through ``using(cfg)``, held around building the model, the callbacks and the
preprocessing. Modules are imported as for user layers and callbacks
(``trainer.config.usercode``): from the config's folder first, else the Python path.

Each family's adapter (``trainer.losses.user``, ...) checks the user's code against
the family's contract when it is named (signature, methods) and when it runs (shapes,
NaN from finite inputs), raising one clear message naming ``file:line``.
"""

import contextlib
import contextvars
import copy
import functools
import importlib
import inspect

import numpy as np

from trainer.errors import ConfigError, suggest
from trainer.config.usercode import import_module

_FOLDER = contextvars.ContextVar("user_code_folder", default=None)


@contextlib.contextmanager
def using(cfg):
    """User code named while this block runs is imported from ``cfg``'s folder first."""
    token = _FOLDER.set(cfg.folder if getattr(cfg, "path", None) is not None else None)
    try:
        yield
    finally:
        _FOLDER.reset(token)


def is_user_spec(spec, key):
    """Whether a config value is the user-code form ``{key: "module:Name", args}``."""
    return isinstance(spec, dict) and isinstance(spec.get(key), str) and ":" in spec[key]


def defined_at(obj):
    """``file:line`` where a user's function or class is defined, or '?'."""
    target = obj.func if isinstance(obj, functools.partial) else obj
    target = target.__func__ if inspect.ismethod(target) else target
    target = target if inspect.isfunction(target) or isinstance(target, type) \
        else type(target)
    try:
        return f"{inspect.getsourcefile(target)}:{inspect.getsourcelines(target)[1]}"
    except (OSError, TypeError):
        return getattr(inspect.getmodule(target), "__file__", None) or "?"


def load_attr(ref, folder, what):
    """``module:Name`` → the module's attribute (a class or a function)."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ConfigError(f"{what} must be written module:Name, got {ref!r}")
    module_name, attr = ref.split(":")
    module = import_module(module_name, folder)
    target = getattr(module, attr, None)
    if target is None or not callable(target):
        names = [n for n, v in vars(module).items()
                 if callable(v) and not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]
        got = "has no" if target is None else "has a non-callable"
        raise ConfigError(f"module '{module_name}' ({getattr(module, '__file__', '?')}) "
                          f"{got} '{attr}'.{suggest(attr, names)} Functions and classes "
                          f"there: {', '.join(names) or 'none'}")
    return target


def component(registry, spec):
    """The component of a user-code entry of ``registry``'s family, made by the family's
    adapter (``registry.user_adapter``: a module with ``wrap(target, args, ref)``). It
    keeps the entry as written (``user_spec``: the run's config writes it back)."""
    key = registry.user_key
    extra = set(spec) - {key, "args"}
    if extra:
        raise ConfigError(f"a user {registry.kind} is written {{{key}: \"module:Name\", "
                          f"args: {{...}}}}; unknown key(s) {', '.join(sorted(extra))}")
    args = spec.get("args") or {}
    if not isinstance(args, dict):
        raise ConfigError(f"{spec[key]}: args must be a mapping of its arguments, got "
                          f"{args!r}")
    target = load_attr(spec[key], _FOLDER.get(), key)
    adapter = importlib.import_module(registry.user_adapter)
    made = adapter.wrap(target, dict(args), spec[key])
    made.user_spec = copy.deepcopy(dict(spec))
    made.user_ref = spec[key]
    made.user_kind = registry.kind
    return made


def make_instance(target, args, ref, what):
    """``make`` for a family whose user code must be a class: ``what`` says what the
    class must be when ``target`` is a function (or anything else)."""
    if not isinstance(target, type):
        raise ConfigError(f"{ref}: {what}, got {type(target).__name__}")
    return make(target, args, ref)


def make(target, args, ref):
    """A class built with ``args``, or a function with ``args`` bound as keywords."""
    if isinstance(target, type):
        try:
            return target(**args)
        except TypeError as exc:
            raise ConfigError(f"{ref}: {exc} ({defined_at(target)})") from None
    if args:
        try:
            inspect.signature(target).bind_partial(**args)
        except TypeError as exc:
            raise ConfigError(f"{ref}: args {sorted(args)} do not fit "
                              f"{target.__name__}{inspect.signature(target)}: {exc} "
                              f"({defined_at(target)})") from None
        except ValueError:  # no signature to read (a builtin): let the call tell
            pass
        return functools.partial(target, **args)
    return target


def check_signature(fn, params, ref, what):
    """``fn`` must accept ``params`` positional arguments (names for the message)."""
    try:
        inspect.signature(fn).bind(*range(len(params)))
    except TypeError:
        try:
            sig = str(inspect.signature(fn))
        except ValueError:
            sig = "(?)"
        raise ConfigError(f"{ref}: {what} must take ({', '.join(params)}), its signature "
                          f"is {sig} ({defined_at(fn)})") from None
    except ValueError:
        pass


def method(obj, names, ref, why):
    """The first of ``names`` that ``obj`` has as a method, else a ConfigError."""
    for name in names:
        fn = getattr(obj, name, None)
        if callable(fn):
            return fn
    raise ConfigError(f"{ref}: {type(obj).__name__} has no {names[0]}() method; {why} "
                      f"({defined_at(obj)})")


def fail(ref, obj, message):
    """The UserCodeError for user code that broke its contract."""
    from trainer.errors import UserCodeError

    return UserCodeError(f"{ref}: {message} ({defined_at(obj)})")


def checked_gradient(ref, obj, grad, like, of, to):
    """``grad`` (what the user's ``gradient`` returned) as ``like``'s dtype, once it has
    ``like``'s shape and is finite where ``like`` is: else one message naming the user's
    code. ``of``: what ``like`` is ("y_pred", "weights"); ``to``: the derivative asked for."""
    grad = np.asarray(grad)
    if grad.shape != like.shape:
        raise fail(ref, obj, f"gradient returned shape {grad.shape} for {of} of shape "
                             f"{like.shape}; it must return {to}")
    if not finite(grad) and finite(like):
        where = (f"batch row {first_bad_row(grad)}" if of == "y_pred"
                 else f"{of} of shape {like.shape}")
        raise fail(ref, obj, f"gradient returned NaN or Inf for finite {of} ({where})")
    return grad.astype(like.dtype, copy=False)


def first_bad_row(values):
    """The first row of ``values`` holding NaN/Inf."""
    bad = ~np.isfinite(np.asarray(values, np.float64).reshape(len(values), -1)).all(axis=1)
    return int(np.argmax(bad))


def finite(array):
    a = np.asarray(array)
    return a.dtype.kind not in "fc" or bool(np.isfinite(a).all())


def numeric_state(obj):
    """A user object's state for a checkpoint, when it does not give ``get_state()``:
    every attribute holding a number or a NumPy array (0-d arrays for numbers)."""
    own = getattr(type(obj), "get_state", None)
    if callable(own):
        return {k: np.asarray(v) for k, v in obj.get_state().items()}
    return {k: np.array(v) for k, v in vars(obj).items()
            if isinstance(v, (bool, int, float, np.ndarray, np.generic))
            and not k.startswith("__")}


def set_numeric_state(obj, state):
    """Restore ``numeric_state``: numbers as Python numbers, arrays as arrays."""
    own = getattr(type(obj), "set_state", None)
    if callable(own):
        obj.set_state(dict(state))
        return
    for k, v in state.items():
        v = np.asarray(v)
        setattr(obj, k, v.item() if v.ndim == 0 else v.copy())
