"""The sweep file: its schema, loading and validation (same error style as configs)."""

import functools
from pathlib import Path

from trainer.errors import ConfigError

NUMBER_PAIR = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
DISTRIBUTION = {"type": "object", "minProperties": 1, "maxProperties": 1,
                "additionalProperties": False, "properties": {
                    "choice": {"type": "array", "minItems": 1},
                    "uniform": NUMBER_PAIR,
                    "loguniform": {**NUMBER_PAIR, "items": {"type": "number",
                                                            "exclusiveMinimum": 0}},
                    "int": {"type": "array", "items": {"type": "integer"}, "minItems": 2,
                            "maxItems": 2}}}
KEY = {"type": "string", "pattern": r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_-]+)*$"}


@functools.lru_cache(maxsize=1)
def sweep_schema():
    from trainer.config.schema import DIALECT

    return {
        "$schema": DIALECT,
        "$id": "https://trainer.dev/schemas/sweep.schema.json",
        "title": "trainer sweep file, version 1",
        "type": "object", "additionalProperties": False, "required": ["base", "search"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
            "base": {"type": "string", "minLength": 1},
            "set": {"type": "object", "propertyNames": KEY},
            "search": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "grid": {"type": "object", "propertyNames": KEY, "minProperties": 1,
                             "additionalProperties": {"type": "array", "minItems": 1}},
                    "random": {"type": "object", "propertyNames": KEY, "minProperties": 1,
                               "additionalProperties": DISTRIBUTION},
                    "tpe": {"type": "object", "propertyNames": KEY, "minProperties": 1,
                            "additionalProperties": DISTRIBUTION},
                    "trials": {"type": "integer", "minimum": 1},
                },
                "oneOf": [{"required": ["grid"]}, {"required": ["random", "trials"]},
                          {"required": ["tpe", "trials"]}],
            },
            "seeds": {"type": "array", "items": {"type": "integer", "minimum": 0},
                      "minItems": 1, "default": [0]},
            "seed": {"type": "integer", "minimum": 0, "default": 0,
                     "description": "drives the random search's sampling"},
            "metric": {"type": "string", "default": "val_loss"},
            "mode": {"enum": ["min", "max"], "default": "min"},
            "expect": {"type": "object", "additionalProperties": {"type": "string"}},
            "storage": {"type": "string", "description": "Optuna storage URL or journal file"},
        },
    }


class Sweep(dict):
    path: Path

    @property
    def name(self):
        return self.get("name") or self.path.stem

    @property
    def base(self):
        return (self.path.parent / self["base"]).resolve()

    @property
    def uses_optuna(self):
        return "tpe" in self["search"] or "storage" in self


def load(path):
    """Read and validate a sweep file; errors name the key path and file:line:col."""
    from trainer.config import loader as config_lib

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read sweep file {path}: {exc.strerror or exc}") from None
    value, marks = config_lib.parse_text(text, path.name)
    if not isinstance(value, dict):
        raise ConfigError("a sweep file must be a mapping", where=marks.get(()))
    holder = config_lib.Config(value)
    holder.path, holder.marks = path, marks
    config_lib.check_schema(sweep_schema(), holder)
    sweep = Sweep(value)
    sweep.path = path
    for key, sub in sweep_schema()["properties"].items():
        if key not in sweep and "default" in sub:
            sweep[key] = sub["default"]
    if not sweep.base.exists():
        raise ConfigError(f"base: config file not found: {sweep.base}",
                          where=holder.where(("base",)))
    return sweep
