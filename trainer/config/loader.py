"""Load a config (YAML or JSON), apply ``--set`` overrides, validate it against the
schema, and fill in defaults.

Every key and value keeps the file:line:col it came from, so that each error names
its place: ``model.layers[3].Conv2D.padding: 'sme' is not one of 'valid', 'same'
(config.yaml:14:18)``. All schema errors of a file are reported at once.
"""

import copy
import os
import re
from pathlib import Path

import yaml

from trainer.errors import ConfigError
from trainer.config.hints import elsewhere, tuple_hint
from trainer.config.registry import suggest
from trainer.config.usercode import USER_CODE_PATTERN


class Config(dict):
    """The config mapping, plus where it came from: ``path`` and ``marks``
    (key path tuple → "file:line:col")."""

    path: Path
    marks: dict

    def where(self, keypath):
        """The file:line:col of ``keypath`` or of its nearest marked parent."""
        keypath = tuple(keypath)
        while keypath:
            if keypath in self.marks:
                return self.marks[keypath]
            keypath = keypath[:-1]
        return self.marks.get((), str(self.path))

    @property
    def folder(self):
        return self.path.parent


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader; we compose nodes and build values ourselves to keep marks.
    Numbers are read as YAML 1.2 reads them (see ``_FLOAT``)."""


#: YAML 1.2's float: PyYAML follows YAML 1.1, where a float needs a dot, so ``1e-3``,
#: ``1E6`` and ``-2e+3`` stayed strings ("unknown schedule '1e-3'"). A digit string
#: alone is left to the int resolver; 1.1's ``1_000.5``, ``.inf`` and ``.nan`` still read.
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                        |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
                        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                        |[-+]?\.(?:inf|Inf|INF)
                        |\.(?:nan|NaN|NAN))$""", re.X)
_FLOAT_TAG = "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, _FLOAT if tag == _FLOAT_TAG else regexp) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting what ``_Loader`` would read back as a number: the
    string '1e-3' written plain would come back as the float 0.001."""


_Dumper.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers


def dump_text(value, **options):
    """YAML text that ``parse_text`` reads back as ``value`` (run folders' config.yaml,
    sweep overrides)."""
    return yaml.dump(value, Dumper=_Dumper, **options)


def _mark(node, filename):
    return f"{filename}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null",
                                                   "map", "seq")}


#: Bounds on what a config may expand to: YAML aliases can repeat a node
#: exponentially often ("billion laughs"), and deep nesting exhausts the stack.
MAX_VALUES = 100_000
MAX_DEPTH = 64


def _build(node, loader, path, marks, filename):
    marks[path] = _mark(node, filename)
    if len(marks) > MAX_VALUES:
        raise ConfigError(f"the config expands to more than {MAX_VALUES} values (YAML "
                          f"aliases repeating large parts?); refused", where=marks[path])
    if len(path) > MAX_DEPTH:
        raise ConfigError(f"the config is nested more than {MAX_DEPTH} levels deep; refused",
                          where=marks[path])
    if node.tag not in _PLAIN_TAGS:
        raise ConfigError(f"tag {node.tag} not allowed in a config; only plain YAML "
                          f"(strings, numbers, booleans, null, lists, mappings) is read",
                          where=_mark(node, filename))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        _refuse_split_tuples(node, path, filename)
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, str) and "\0" in key:
                raise ConfigError(f"a NUL character (\\0) is not allowed in a key, got "
                                  f"{key!r}", where=_mark(key_node, filename))
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise ConfigError(f"mapping keys must be plain names, got {key!r}",
                                  where=_mark(key_node, filename))
            if key in out:
                raise ConfigError(f"duplicate key '{key}'", where=_mark(key_node, filename))
            out[key] = _build(value_node, loader, path + (key,), marks, filename)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, loader, path + (i,), marks, filename) for i, v in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str) and "\0" in value:  # written as "\0": no path or name has one
        raise ConfigError(f"{format_path(path)}: a NUL character (\\0) is not allowed in a "
                          f"config string, got {value!r}", where=marks[path])
    return value


def _refuse_split_tuples(node, path, filename):
    """``{kernel_size: (3, 3)}``: a flow mapping splits a Python tuple at its commas
    into ``kernel_size: "(3"`` and a key ``"3)"``; say what was meant."""
    pairs = node.value
    for i, (key_node, value_node) in enumerate(pairs):
        text = value_node.value if isinstance(value_node, yaml.ScalarNode) else None
        if value_node.tag != "tag:yaml.org,2002:str" or value_node.style is not None \
                or not text.startswith("(") or ")" in text:
            continue
        items = [text[1:].strip()]
        for later_key, later_value in pairs[i + 1:]:
            if not isinstance(later_key, yaml.ScalarNode) or later_value.value not in ("", None):
                break
            items.append(later_key.value.rstrip(")").strip())
            if later_key.value.endswith(")"):
                written = ", ".join(items)
                problem = (format_path(path + (key_node.value,)),
                           f"({written}) is a Python tuple: write [{written}]",
                           _mark(value_node, filename))
                raise ConfigError(f"{problem[0]}: {problem[1]}", where=problem[2],
                                  problems=[problem])


def parse_text(text, filename):
    """YAML/JSON text → (value, marks). Python-object tags are refused by the safe loader."""
    try:
        loader = _Loader(text)  # its reader refuses control characters (NUL, ...) here
    except yaml.reader.ReaderError as exc:
        raise ConfigError(_reader_problem(exc, text), where=_position(text, exc.position,
                                                                      filename)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the config file is empty", where=filename)
        marks = {}
        value = _build(node, loader, (), marks, filename)
    except yaml.reader.ReaderError as exc:  # met while reading on (a later chunk)
        raise ConfigError(_reader_problem(exc, text), where=_position(text, exc.position,
                                                                      filename)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        problem = exc.problem or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", where=where) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", where=filename) from None
    except RecursionError:  # the YAML composer recurses once per nesting level
        raise ConfigError(f"the config is nested more than {MAX_DEPTH} levels deep; refused",
                          where=filename) from None
    finally:
        loader.dispose()
    return value, marks


def _reader_problem(exc, text):
    char = exc.character
    code = char if isinstance(char, int) else ord(char)
    name = "a NUL byte" if code == 0 else f"the control character U+{code:04X}"
    return f"invalid YAML: {name} is not allowed in a config (remove it)"


def _position(text, index, filename):
    """file:line:col of character ``index`` of ``text``."""
    before = text[:index]
    return f"{filename}:{before.count(chr(10)) + 1}:{index - before.rfind(chr(10))}"


def load(path, overrides=()):
    """Read, override, validate and complete a config file."""
    from trainer.fileio import regular_file

    path = Path(path)
    try:
        regular_file(path, "config file", ConfigError)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    value, marks = parse_text(text, path.name)
    return from_dict(value, path, marks, overrides)


def from_dict(value, path, marks=None, overrides=()):
    if not isinstance(value, dict):
        raise ConfigError("a config must be a mapping at the top level",
                          where=(marks or {}).get((), str(path)))
    value = copy.deepcopy(value)
    marks = dict(marks or {})
    for item in overrides:
        apply_override(value, marks, item)
    cfg = Config(value)
    cfg.path = Path(path)
    cfg.marks = marks
    validate(cfg)
    fill_defaults(cfg)
    return cfg


# -- overrides --------------------------------------------------------------

def apply_override(value, marks, item):
    """``a.b.3.c=value``: the value parsed as a YAML scalar; a component written as a
    bare name becomes a mapping when a path goes through it."""
    where = f"--set {item}"
    if "=" not in item:
        raise ConfigError(f"--set expects key.path=value, got '{item}'")
    dotted, raw = item.split("=", 1)
    keys = [k for k in dotted.strip().split(".")]
    if not all(keys):
        raise ConfigError(f"--set: empty key in '{dotted}'")
    # parsed as a config is (plain tags only, bounded), its place "--set KEY"
    new = parse_text(raw, f"--set {dotted}")[0] if raw.strip() else ""
    node, trail = value, []
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
                raise ConfigError(f"--set {dotted}: '{'.'.join(trail) or 'top'}' is a list of "
                                  f"{len(node)} items; '{key}' is not an index in it")
            key = int(key) % len(node)
        elif not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{'.'.join(trail)}' is {node!r}, not a mapping")
        if last:
            node[key] = new
        else:
            child = node.get(key) if isinstance(node, dict) else node[key]
            if child is None:
                child = {}
                node[key] = child
            elif isinstance(child, str) and keys[i + 1] == child:
                child = {child: {}}  # optimizer: adam  +  optimizer.adam.lr=0.1
                node[key] = child
            elif isinstance(child, dict) and len(child) == 1 and keys[i + 1] in child \
                    and child[keys[i + 1]] is None:
                child[keys[i + 1]] = {}
            node = child
        trail.append(str(key))
    marks[tuple(int(k) if k.lstrip("-").isdigit() else k for k in keys)] = where


# -- validation -------------------------------------------------------------

def validate(cfg):
    """Every schema error at once, each with its key path and file:line:col."""
    from trainer.config.schema import config_schema

    check_schema(config_schema(), cfg)


def check_schema(schema, doc):
    """Validate ``doc`` (a Config, for its marks) against ``schema``; raise one
    ConfigError listing every problem."""
    validator = _strict_validator()(schema)
    problems = []
    for top in validator.iter_errors(dict(doc)):
        for error in _leaves(top):
            path = tuple(error.absolute_path)
            problem = (format_path(path), _message(error), doc.where(path))
            if problem not in problems:
                problems.append(problem)
    if problems:
        problems.sort(key=lambda p: _sort_key(p[2]))
        raise ConfigError(_summarise(problems), problems=problems)


def _strict_validator():
    """Draft 2020-12, except that an integer must be written as one: JSON Schema takes
    1.0 and 1e308 as integers, which Python code then gets as floats."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool))
    return jsonschema.validators.extend(base, type_checker=checker)


def _sort_key(where):
    parts = where.rsplit(":", 2)
    try:
        return (0, int(parts[-2]), int(parts[-1]))
    except (ValueError, IndexError):
        return (1, 0, 0)


def _summarise(problems):
    if len(problems) == 1:
        path, msg, where = problems[0]
        return f"{path}: {msg} ({where})"
    lines = [f"{len(problems)} problems in the config:"]
    lines += [f"  {path}: {msg} ({where})" for path, msg, where in problems]
    return "\n".join(lines)


def _leaves(error):
    """The errors to report for one schema error. For anyOf/oneOf, the errors of the
    alternative that fits the instance best (all of them: a layer with a bad
    activation and an unknown key gets both)."""
    if not error.context:
        return [error]
    if _expects(error) and not isinstance(error.instance, dict):
        return [error]  # one message saying what the value takes (a mapping: descend)
    branches = {}
    for e in error.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    best = _required_match(error, branches) or max(_not_user_code(error, branches).values(),
                                                   key=_branch_fit)
    return [leaf for e in best for leaf in _leaves(e)]


def _not_user_code(error, branches):
    """The alternatives without a user-code form (``{loss: "module:Name", args}``) whose
    key the mapping lacks: ``{glorot_unifrm: {}}`` is a misspelt built-in name, not a
    user entry without its key. All of them when that would leave none."""
    alternatives = error.validator_value if error.validator in ("anyOf", "oneOf") else None
    if not isinstance(error.instance, dict) or not isinstance(alternatives, list):
        return branches
    kept = {i: errors for i, errors in branches.items()
            if not (isinstance(i, int) and i < len(alternatives)
                    and isinstance(alternatives[i], dict)
                    and "x-user-code" in alternatives[i])}
    return kept or branches


def _required_match(error, branches):
    """The errors of the one alternative whose required keys the mapping has — a
    user-code entry ``{loss: "my_losses:Focal", arg: ...}`` is judged as one, not as
    a built-in name — or None when not exactly one has them."""
    alternatives = error.validator_value if error.validator in ("anyOf", "oneOf") else None
    if not isinstance(error.instance, dict) or not isinstance(alternatives, list):
        return None
    hits = [i for i in branches if isinstance(i, int) and i < len(alternatives)
            and isinstance(alternatives[i], dict) and alternatives[i].get("required")
            and set(alternatives[i]["required"]) <= set(error.instance)]
    return branches[hits[0]] if len(hits) == 1 else None


_PRIORITY = {"type": 0, "required": 1, "const": 1}


def _branch_fit(errors):
    """How well an alternative fits: one that failed on the instance's type fits worst;
    otherwise deeper errors and name errors mean it matched further."""
    typed = _mismatched(errors)
    depth = max(len(e.absolute_path) + _depth_in_context(e) for e in errors)
    named = any(e.validator in ("enum", "propertyNames", "additionalProperties") for e in errors)
    return (not typed, depth, named, -min(_PRIORITY.get(e.validator, 2) for e in errors))


def _mismatched(errors):
    """Whether an alternative failed on the instance's own type: a `type` or `not`
    (the scalar shorthand's "not a mapping") at its level, or an anyOf every branch of
    which did (a schedule's name-or-mapping for a number)."""
    for e in errors:
        if e.relative_path:
            continue
        if e.validator in ("type", "not"):
            return True
        if e.validator in ("anyOf", "oneOf") and e.context:
            branches = {}
            for c in e.context:
                branches.setdefault(c.relative_schema_path[0], []).append(c)
            if all(_mismatched(b) for b in branches.values()):
                return True
    return False


def _expects(error):
    return isinstance(error.schema, dict) and "x-expected" in error.schema


def _depth_in_context(error):
    if not error.context:
        return 0
    return 1 + max(len(e.relative_path) + _depth_in_context(e) for e in error.context)


def _message(error):
    kind = error.schema.get("x-kind") if isinstance(error.schema, dict) else None
    if _expects(error):
        return _expected_message(error)
    if error.validator == "enum" and kind:
        names = error.validator_value
        from trainer.config.families import ALL
        if kind in ALL and isinstance(error.instance, str) \
                and error.instance in ALL[kind].unsupported:
            return ALL[kind].unsupported[error.instance]
        return f"unknown {kind} '{error.instance}'.{suggest(error.instance, names)}"
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        hint = "".join(elsewhere(error.absolute_path, k) or "" for k in extra)
        if not hint:
            hint = suggest(extra[0], allowed) if extra else ""
        return (f"unknown key {', '.join(repr(e) for e in extra)}.{hint} "
                f"Allowed: {', '.join(allowed)}")
    if error.validator in ("maxProperties", "minProperties") and kind:
        return (f"a {kind} is written as a name or as a mapping with exactly one key "
                f"(its name), got {list(error.instance)}")
    if error.validator == "pattern" and error.schema.get("pattern") == _user_code_pattern():
        return (f"expected a reference module:Name (a module next to the config or on the "
                f"Python path, and a class or function in it), got {error.instance!r}")
    if error.validator == "pattern" and error.schema.get("pattern", "").startswith(r"^\s*(>="):
        return f"expected a comparison like '>= 0.9', got {error.instance!r}"
    if error.validator == "pattern" and error.schema.get("pattern") == USER_CODE_PATTERN:
        return (f"expected module:name (a Python module and a name in it, like "
                f"my_hooks:plot_loss), got {error.instance!r}")
    if error.validator == "type":
        return (f"expected {_type_words(error.validator_value)}{_bounds(error.schema)}, "
                f"got {error.instance!r}{tuple_hint(error.instance)}")
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "minimum":
        return f"expected a value >= {error.validator_value}, got {error.instance!r}"
    return error.message


def _user_code_pattern():
    from trainer.config.schema import USER_CODE
    return USER_CODE["pattern"]


def _expected_message(error):
    """``x-expected`` in the schema: "expected a number > 0 or a schedule, got -0.5",
    with the nearest name when a string was meant as one."""
    message = f"expected {error.schema['x-expected']}, got {error.instance!r}"
    if isinstance(error.instance, str):
        names = [n for e in _descendants(error) if e.validator == "enum"
                 for n in e.validator_value]
        nearest = suggest(error.instance, names)
        if nearest:
            message += f".{nearest}"
    return message + tuple_hint(error.instance)


def _descendants(error):
    for e in error.context or ():
        yield e
        yield from _descendants(e)


def _bounds(schema):
    """' in [0, 1]', ' >= 0' from a number's schema, or ''."""
    if not isinstance(schema, dict):
        return ""
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if schema.get("exclusiveMinimum") is not None:
        return f" > {schema['exclusiveMinimum']}"
    return ""


def _type_words(t):
    words = {"integer": "an integer", "number": "a number", "string": "a string",
             "boolean": "true or false", "object": "a mapping", "array": "a list",
             "null": "nothing (null)"}
    if isinstance(t, list):
        return " or ".join(words.get(x, x) for x in t)
    return words.get(t, t)


def format_path(path):
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top)"


# -- defaults ---------------------------------------------------------------

def fill_defaults(cfg):
    """Fill the schema defaults of the top-level sections (not of components, whose
    defaults come from the component classes when the model is built)."""
    from trainer.config.schema import config_schema

    props = config_schema()["properties"]
    for key, sub in props.items():
        if key not in cfg and "default" in sub:
            cfg[key] = copy.deepcopy(sub["default"])
        value = cfg.get(key)
        if isinstance(value, dict) and "properties" in sub:
            for k, s in sub["properties"].items():
                if k not in value and "default" in s:
                    value[k] = copy.deepcopy(s["default"])


def resolve_path(cfg, path):
    """A path from the config: relative to the config file's folder, ~ expanded."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else (cfg.folder / p)
