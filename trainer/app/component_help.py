"""``trainer schema NAME``: one component's arguments, readable (the whole schema is
688 KB of JSON). Made from the same signatures as the schema, so it cannot disagree."""

import inspect
import json

from trainer.config import families as registries
from trainer.errors import ConfigError
from trainer.config.registry import args_schema, parameters, suggest


def find(name):
    """[(kind, canonical name, class)] of every family that knows ``name`` (a name or an
    alias; a few names exist in two families, e.g. a loss that is also a metric)."""
    found = []
    for kind, registry in registries.ALL.items():
        if name in registry:
            canonical = registry.canonical(name)
            found.append((kind, canonical, registry.lookup(canonical)))
    if not found:
        every = sorted({n for r in registries.ALL.values() for n in r.all_names()})
        raise ConfigError(f"no component named '{name}'.{suggest(name, every)} "
                          f"`trainer schema` prints the whole language")
    return found


def describe(sch):
    """A short human reading of a JSON Schema fragment: 'integer ≥ 1', 'activation'."""
    if not sch:
        return "any"
    if "$ref" in sch:
        return sch["$ref"].rsplit("/", 1)[-1]
    if "enum" in sch:
        return " | ".join(json.dumps(v) for v in sch["enum"])
    for key in ("anyOf", "oneOf"):
        if key in sch:
            parts = [describe(s) for s in sch[key]]
            return " | ".join(dict.fromkeys(p for p in parts if p != "null")) + (
                " | null" if "null" in parts else "")
    if "allOf" in sch:
        return describe(sch["allOf"][0])
    kind = sch.get("type", "any")
    if kind == "array":
        return f"list of {describe(sch.get('items', {}))}"
    if kind == "object" and isinstance(sch.get("additionalProperties"), dict):
        return f"mapping of {describe(sch['additionalProperties'])}"
    if "minimum" in sch and "maximum" in sch:
        return f"{kind} in [{sch['minimum']:g}, {sch['maximum']:g}]"
    bounds = [f"{sign} {sch[key]:g}" for key, sign in (
        ("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
        ("exclusiveMaximum", "<")) if key in sch]
    return " ".join([kind, *bounds])


def _arguments(cls):
    sch = args_schema(cls)
    obj = next((a for a in sch.get("anyOf", [sch]) if a.get("type") == "object"), sch)
    props, required = obj.get("properties", {}), set(obj.get("required", []))
    rows = []
    for arg, param in parameters(cls).items():
        if arg in required:
            default = "required"
        elif param.default is None:
            default = "default: none"
        else:
            default = f"default: {json.dumps(param.default, default=str)}"
        rows.append((arg, describe(props.get(arg, {})), default))
    return rows


def render(name):
    """The text ``trainer schema NAME`` prints."""
    blocks = []
    for kind, canonical, cls in find(name):
        registry = registries.ALL[kind]
        aliases = registry.aliases_of(canonical)
        head = f"{canonical} ({kind}" + (f"; also {', '.join(aliases)}" if aliases else "") + ")"
        lines = [head]
        doc = inspect.getdoc(cls)
        if doc:
            lines += ["", *("  " + line if line else "" for line in doc.splitlines())]
        rows = _arguments(cls)
        lines.append("")
        if rows:
            lines.append("arguments:")
            w1 = max(len(r[0]) for r in rows)
            w2 = max(len(r[1]) for r in rows)
            lines += [f"  {a:<{w1}}  {t:<{w2}}  {d}" for a, t, d in rows]
        else:
            lines.append("arguments: none")
        if kind == "layer":
            lines.append("  (every layer also takes name, inputs, input_shape, trainable)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
