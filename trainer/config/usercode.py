"""User code named by a config: ``{callback: "my_pkg.hooks:Notify", args: {...}}``,
``{layer: "my_pkg.layers:Scale", args: {...}}`` and LambdaCallback's functions
(``{LambdaCallback: {on_epoch_end: "my_hooks:plot_loss"}}``).

Only the module the config names is imported: first from the config file's folder
(``my_pkg/hooks.py`` or ``my_pkg/hooks/__init__.py`` next to the config), else from
the Python path (an installed package). Nothing in a config is evaluated. Importing
runs the module's top-level code (``trainer validate`` too), so the reference is
checked first, running nothing: ``module:Class`` written with plain names, and the
module's file found where the config points (``locate``).
"""

import importlib
import importlib.machinery
import importlib.util
import sys
import traceback
from pathlib import Path

from trainer.errors import ConfigError, suggest

#: how a config names user code: ``module:Name``
USER_CODE_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


def _in_folder(folder, module):
    """The file of dotted ``module`` under ``folder``, or None."""
    base = Path(folder).joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _forget_elsewhere(module, folder):
    """Drop cached modules of this dotted name (and its parents) loaded from another
    place, so the one next to the config is the one imported."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        cached = sys.modules.get(name)
        if cached is None:
            continue
        where = getattr(cached, "__file__", None)
        if where is None or not Path(where).resolve().is_relative_to(Path(folder).resolve()):
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[key]


#: files of the modules imported for a config: an error raised in them is the user's
_USER_FILES = set()


def import_module(module, folder):
    """Import ``module`` from ``folder`` if it is there, else from the Python path."""
    imported = _import(module, folder)
    if getattr(imported, "__file__", None):
        _USER_FILES.add(str(Path(imported.__file__).resolve()))
    return imported


def blame(exc):
    """For an exception raised inside user code a config named (a user layer's
    forward, a callback's hook): one line naming that code's file:line, else None."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if str(Path(f.filename).resolve()) in _USER_FILES]
    if not frames:
        return None
    where = frames[-1]
    return (f"user code named by the config raised {type(exc).__name__}: {exc} "
            f"({where.filename}:{where.lineno}, in {where.name})")


def _import(module, folder):
    local = _in_folder(folder, module) if folder is not None else None
    try:
        if local is None:
            return importlib.import_module(module)
        _forget_elsewhere(module, folder)
        sys.path.insert(0, str(folder))
        try:
            return importlib.import_module(module)
        finally:
            sys.path.remove(str(folder))
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):  # the module itself, not its imports
            raise ConfigError(f"cannot import '{module}': no {module.replace('.', '/')}.py in "
                              f"{folder} and no such module on the Python path") from None
        raise ConfigError(f"importing '{module}' failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise ConfigError(f"importing '{module}' failed: {type(exc).__name__}: {exc} "
                          f"({frame.filename}:{frame.lineno})") from None


def check_reference(ref, what):
    """(module, attr) of ``module:Class``, each written with plain names; else a
    ConfigError. Nothing is imported."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ConfigError(f"{what} must be written module:ClassName, got {ref!r}")
    module_name, attr = ref.split(":")
    if not all(p.isidentifier() for p in module_name.split(".")) or not attr.isidentifier():
        raise ConfigError(f"{what} must be written module:ClassName with plain names "
                          f"(my_pkg.hooks:Notify), got {ref!r}; nothing was imported")
    return module_name, attr


def locate(module, folder):
    """The file of dotted ``module`` (next to the config first, else on the Python path),
    found without importing anything: packages on the way are not run. ConfigError
    when there is none."""
    if folder is not None and _in_folder(folder, module) is not None:
        return _in_folder(folder, module)
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: imports nothing
    except (ImportError, ValueError):
        spec = None
    for i in range(1, len(parts)):
        places = spec.submodule_search_locations if spec is not None else None
        if places is None:
            spec = None
            break
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i + 1]), list(places))
    if spec is None:
        where = f"{folder} or " if folder is not None else ""
        raise ConfigError(f"cannot import '{module}': no {module.replace('.', '/')}.py in "
                          f"{where}on the Python path; nothing was imported")
    return spec.origin


def load_class(ref, base, folder, what):
    """``module:Class`` → the class, which must subclass ``base``. The reference is
    checked and its module file found before anything is imported."""
    module_name, attr = check_reference(ref, what)
    locate(module_name, folder)
    module = import_module(module_name, folder)
    cls = getattr(module, attr, None)
    if cls is None:
        names = [n for n, v in vars(module).items()
                 if isinstance(v, type) and issubclass(v, base) and v is not base]
        raise ConfigError(f"module '{module_name}' ({getattr(module, '__file__', '?')}) has no "
                          f"'{attr}'.{suggest(attr, names)} "
                          f"{base.__name__} classes there: {', '.join(names) or 'none'}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{ref} is not a subclass of {base.__module__}.{base.__name__}")
    return cls


def load_function(ref, folder, what):
    """``module:function`` → the function (``LambdaCallback``'s hooks), imported like a
    user class: from ``folder`` first, else from the Python path."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ConfigError(f"{what} must be written module:function, got {ref!r}")
    module_name, attr = ref.split(":")
    module = import_module(module_name, folder)
    fn = getattr(module, attr, None)
    if fn is None:
        names = [n for n, v in vars(module).items()
                 if callable(v) and not isinstance(v, type) and not n.startswith("_")]
        raise ConfigError(f"module '{module_name}' ({getattr(module, '__file__', '?')}) has no "
                          f"'{attr}'.{suggest(attr, names)} "
                          f"functions there: {', '.join(names) or 'none'}")
    if not callable(fn) or isinstance(fn, type):
        raise ConfigError(f"{what}: {ref} is not a function")
    return fn


def instantiate(spec, key, base, cfg):
    """The object of a user-code entry ``{key: "module:Class", args: {...}}``: the
    class (a subclass of ``base``) from ``cfg.folder`` first, built with ``args``."""
    args = spec.get("args") or {}
    if not isinstance(args, dict):
        raise ConfigError(f"args must be a mapping of the class's arguments, got {args!r}")
    folder = getattr(cfg, "path", None) and cfg.folder
    cls = load_class(spec[key], base, folder, key)
    try:
        return cls(**args)
    except TypeError as exc:
        raise ConfigError(f"{spec[key]}: {exc}") from None
