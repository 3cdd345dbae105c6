"""One registry type for every component family, looked up by the names users write.

A component is a class whose ``__init__`` arguments are its config. Their type hints
give the JSON Schema of its arguments (``schema_of``), and the attributes of the same
names give its resolved config back (``config_of``), so every component round-trips.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import pkgutil
import types
import typing
from typing import Annotated, Any, Literal, Union

from trainer.errors import ConfigError, suggest  # noqa: F401  (suggest: used by many)


class Schema:
    """Extra JSON Schema keywords for a type hint: ``Annotated[int, Schema(minimum=1)]``."""

    def __init__(self, **keywords):
        self.keywords = keywords


class Ref:
    """A type hint naming another registry: the argument is itself a component."""

    def __init__(self, kind):
        self.kind = kind


PositiveInt = Annotated[int, Schema(minimum=1)]
NonNegativeInt = Annotated[int, Schema(minimum=0)]
NonNegativeFloat = Annotated[float, Schema(minimum=0)]
Rate = Annotated[float, Schema(minimum=0, maximum=1)]
IntOrPair = Union[PositiveInt, Annotated[list[PositiveInt], Schema(minItems=1, maxItems=3)]]


def component(kind):
    """Type hint for an argument that is a component of registry ``kind``."""
    return Annotated[Any, Ref(kind)]


class Args:
    """A group of config arguments several components share, declared once:
    ``Args(kernel_initializer=(component("initializer"), "glorot_uniform"), ...)``,
    name → (type hint, default). Groups add up (``INITIALIZERS + REGULARIZERS``) and
    join an ``__init__`` through ``@arguments``."""

    def __init__(self, **params):
        self.params = params

    def __add__(self, other):
        return Args(**self.params, **other.params)

    def __iter__(self):
        return iter(self.params)

    def __getitem__(self, name):
        return self.params[name]

    def take(self, values):
        """This group's values, removed from ``values`` (an ``__init__``'s ``**args``)."""
        return {name: values.pop(name) for name in self.params}


def arguments(*parts):
    """Compose an ``__init__``'s config signature from its own parameters and shared
    ``Args`` groups, which it receives, defaults filled in, in its ``**args``.

    ``@arguments(KERNEL, LAYER)``: its own parameters first, then the groups'. Where own
    parameters come between groups, name each part in order:
    ``@arguments("units", "use_bias", INITIALIZERS, "unit_forget_bias", LAYER)``.
    The composed signature is what the schema, ``config_of`` and the scalar shorthand
    read (``inspect.signature`` honours ``__signature__``)."""

    def decorate(init):
        sig = inspect.signature(init)
        first, *own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        own = {p.name: p for p in own}
        named = [p for p in parts if isinstance(p, str)]
        order = parts if named else (*own, *parts)
        assert sorted(named or own) == sorted(own), f"{init.__qualname__}: name every own parameter"
        params = [first]
        for part in order:
            if isinstance(part, str):
                params.append(own[part])
                continue
            for name, (hint, default) in part.params.items():
                params.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                default=default, annotation=hint))
        composed = sig.replace(parameters=params)
        hints = {p.name: p.annotation for p in params[1:] if p.annotation is not p.empty}

        @functools.wraps(init)
        def wrapper(*args, **kwargs):
            try:
                bound = composed.bind(*args, **kwargs)
            except TypeError as exc:  # as Python says it: "Dense.__init__() missing ..."
                raise TypeError(f"{init.__qualname__}() {exc}") from None
            bound.apply_defaults()
            return init(**bound.arguments)

        wrapper.__signature__ = composed
        wrapper.__annotations__ = hints
        return wrapper

    return decorate


class Registry:
    """Name → component class, with aliases and "did you mean" on a failed lookup.

    Every module of ``package`` is imported on first use: registering is a side effect
    of importing a family's modules, and `trainer --help` imports nothing heavy.
    """

    def __init__(self, kind, package=None):
        self.kind = kind
        self._package = package
        self._loaded = False
        self._classes: dict[str, type] = {}
        self._aliases: dict[str, str] = {}
        #: Keras names deliberately not supported → why, and what to write instead
        self.unsupported: dict[str, str] = {}
        #: the user-code form ``{user_key: "module:Name", args}`` and the module whose
        #: ``wrap`` adapts the user's class or function (see trainer.config.usercomponents)
        self.user_key = None
        self.user_adapter = None

    def user_code(self, key, adapter):
        """Accept the user's own components as ``{key: "module:Name", args: {...}}``."""
        self.user_key = key
        self.user_adapter = adapter

    def register(self, name=None, *aliases):
        def decorate(cls):
            canonical = name or cls.__name__
            if canonical in self._classes or canonical in self._aliases:
                raise AssertionError(f"{self.kind} {canonical!r} registered twice")
            self._classes[canonical] = cls
            cls.registered_name = canonical
            for alias in aliases:
                self._aliases[alias] = canonical
            return cls

        return decorate

    def _load(self):
        if not self._loaded:
            self._loaded = True
            if self._package:
                pkg = importlib.import_module(self._package)
                for info in pkgutil.iter_modules(pkg.__path__):
                    if not info.name.startswith("_"):
                        importlib.import_module(f"{self._package}.{info.name}")
                # module order, whatever imported a module first (stable: definition
                # order within a module), so the schema file does not depend on it
                self._classes = dict(sorted(self._classes.items(),
                                            key=lambda item: item[1].__module__))
                self._aliases = dict(sorted(
                    self._aliases.items(), key=lambda item: self._classes[item[1]].__module__))

    def names(self):
        """Canonical names, in registration order."""
        self._load()
        return list(self._classes)

    def all_names(self):
        """Canonical names and aliases."""
        self._load()
        return list(self._classes) + list(self._aliases)

    def aliases_of(self, name):
        return [a for a, c in self._aliases.items() if c == name]

    def canonical(self, name):
        self._load()
        if name in self._classes:
            return name
        if name in self._aliases:
            return self._aliases[name]
        if name in self.unsupported:
            raise ConfigError(self.unsupported[name])
        raise ConfigError(
            f"unknown {self.kind} '{name}'.{suggest(name, self.all_names())} "
            f"Known: {', '.join(sorted(self.names()))}"
        )

    def lookup(self, name):
        return self._classes[self.canonical(name)]

    def __contains__(self, name):
        self._load()
        return name in self._classes or name in self._aliases

    def get(self, spec, **extra):
        """Build a component from a name, a ``{name: args}`` mapping, or pass an instance."""
        if spec is None:
            return None
        if not isinstance(spec, (str, dict)):
            return spec
        if self.user_key is not None and isinstance(spec, dict) and self.user_key in spec:
            from trainer.config.usercomponents import component
            return component(self, spec)
        name, args = split_spec(spec)
        cls = self.lookup(name)
        kwargs = dict(extra)
        kwargs.update(args_to_kwargs(cls, args))
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{self.kind} '{name}': {exc}") from None

    def schema(self):
        """JSON Schema of one component of this family (name alone or one-key mapping)."""
        self._load()
        names = self.all_names()
        by_name = {}
        for name in names:
            args = args_schema(self._classes[self._aliases.get(name, name)])
            by_name[name] = args
        return {
            "x-kind": self.kind,
            "anyOf": [
                {"type": "string", "enum": names, "x-kind": self.kind},
                {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "propertyNames": {"enum": names, "x-kind": self.kind},
                    "properties": by_name,
                },
            ],
        }


def split_spec(spec):
    """'adam' → ('adam', {}); {'Adam': {'lr': 1}} → ('Adam', {'lr': 1})."""
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"expected a name or a mapping with one key, got {spec!r}")
    (name, args), = spec.items()
    return name, args


def args_to_kwargs(cls, args):
    """The arguments mapping; a bare scalar is the first argument (``{rescale: 0.5}``)."""
    if args is None:
        return {}
    if isinstance(args, dict):
        return dict(args)
    first = next(iter(parameters(cls)), None)
    if first is None:
        raise ConfigError(f"{cls.__name__} takes no arguments, got {args!r}")
    return {first: args}


def parameters(cls):
    """Config-facing __init__ parameters: name → inspect.Parameter."""
    sig = inspect.signature(cls.__init__)
    return {
        n: p
        for n, p in sig.parameters.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _hints(cls):
    hints = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None:
            try:
                hints.update(typing.get_type_hints(init, include_extras=True))
            except Exception as exc:  # a broken hint is a programming error
                raise AssertionError(f"bad type hints on {klass.__name__}: {exc}") from exc
    return hints


def args_schema(cls):
    hints = _hints(cls)
    props = {}
    for name, param in parameters(cls).items():
        hint = hints.get(name, Any)
        sch = type_schema(hint)
        if param.default is not inspect.Parameter.empty and _jsonable(param.default):
            sch = dict(sch, default=param.default)
        props[name] = sch
    required = [
        n for n, p in parameters(cls).items() if p.default is inspect.Parameter.empty
    ]
    obj = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        obj["required"] = required
    alternatives = [obj]
    if not required:
        alternatives.append({"type": "null"})
    first = next(iter(props.values()), None)
    if first is not None and len(required) <= 1:
        # the scalar shorthand {rescale: 0.5} fills the first argument
        alternatives.append(_scalar_only(first))
    return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}


def _scalar_only(sch):
    """The first argument's schema, restricted to non-objects (so it can't shadow args)."""
    return {"allOf": [sch, {"not": {"type": "object"}}]}


def _jsonable(value):
    return isinstance(value, (int, float, str, bool, type(None))) or (
        isinstance(value, (list, tuple)) and all(_jsonable(v) for v in value)
    )


def type_schema(hint):
    """JSON Schema of a type hint (the small subset component signatures use)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return {}
    if origin is Annotated:
        base, *meta = args
        for m in meta:
            if isinstance(m, Ref):
                return {"$ref": f"#/$defs/{m.kind}"}
        sch = dict(type_schema(base))
        for m in meta:
            if isinstance(m, Schema):
                sch.update(m.keywords)
        return sch
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        subs = [type_schema(a) for a in args]
        return {"anyOf": subs}
    if origin in (list, tuple):
        items = args[0] if args else Any
        return {"type": "array", "items": type_schema(items)}
    if origin is dict:
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": type_schema(value)}
    simple = {
        int: {"type": "integer"},
        float: {"type": "number"},
        bool: {"type": "boolean"},
        str: {"type": "string"},
        type(None): {"type": "null"},
        dict: {"type": "object"},
        list: {"type": "array"},
    }
    if hint in simple:
        return simple[hint]
    raise AssertionError(f"no JSON Schema for type hint {hint!r}")


def config_of(component):
    """The resolved config of a component: ``{Name: {arg: value, ...}}`` with defaults.
    Arguments are read back from the attributes of the same name, or from the one a
    class's ``config_attributes`` names (when the argument's name is taken)."""
    cls = type(component)
    renamed = getattr(cls, "config_attributes", {})
    args = {}
    for name in parameters(cls):
        value = getattr(component, renamed.get(name, name), None)
        if hasattr(value, "user_spec"):  # the user's own, as the config wrote it
            value = copy.deepcopy(value.user_spec)
        elif hasattr(value, "registered_name"):
            value = config_of(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif hasattr(value, "tolist"):
            value = value.tolist()
        args[name] = value
    if not args:
        return cls.registered_name  # a component without arguments is written by name
    return {cls.registered_name: args}
