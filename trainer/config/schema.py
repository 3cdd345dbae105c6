"""The JSON Schema of the config language, made from the families.

``schemas/config.schema.json`` is this schema written out (``trainer schema``); a test
proves the file and the registries agree, so the file is the one machine-readable
statement of the language.
"""

import copy
import functools
import json

from trainer.config import families
from trainer.config.usercode import USER_CODE_PATTERN

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Arguments every layer takes in a model, besides its own.
LAYER_COMMON = {
    "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_./-]*$"},
    "input_shape": {"type": "array", "items": {"anyOf": [
        {"type": "integer", "minimum": 1}, {"type": "null"}]}},
    "batch_input_shape": {"type": "array"},
    "input_dim": {"type": "integer", "minimum": 1},
    "inputs": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "trainable": {"type": "boolean"},
}

USER_CODE = {"type": "string", "pattern": USER_CODE_PATTERN}


def _positive_int(default=None):
    s = {"type": "integer", "minimum": 1}
    if default is not None:
        s["default"] = default
    return s


def _with_layer_common(component_schema):
    out = copy.deepcopy(component_schema)
    for args in out["anyOf"][1]["properties"].values():
        for alt in args.get("anyOf", [args]):
            if alt.get("type") == "object":
                for k, v in LAYER_COMMON.items():
                    alt["properties"].setdefault(k, v)
    return out


def _merged(kind, *regs, extra_names=()):
    """One component schema naming the components of several families."""
    schemas = [r.schema() for r in regs]
    names = list(dict.fromkeys(  # a name in several registries is listed once
        [n for s in schemas for n in s["anyOf"][0]["enum"]] + list(extra_names)))
    props = {}
    for s in schemas:
        for n, v in s["anyOf"][1]["properties"].items():
            props.setdefault(n, v)
    for n in extra_names:
        props[n] = {"type": "null"}
    return {
        "x-kind": kind,
        "anyOf": [
            {"type": "string", "enum": names, "x-kind": kind},
            {"type": "object", "minProperties": 1, "maxProperties": 1,
             "propertyNames": {"enum": names, "x-kind": kind}, "properties": props},
        ],
    }


def _dataset_source(dataset_schema):
    """``{dataset: NAME, ...args}``: the name, then that dataset's own arguments."""
    name = dataset_schema["anyOf"][0]
    rules = []
    for n, args in dataset_schema["anyOf"][1]["properties"].items():
        obj = next((a for a in args.get("anyOf", [args]) if a.get("type") == "object"),
                   {"properties": {}})
        rules.append({"if": {"properties": {"dataset": {"const": n}}, "required": ["dataset"]},
                      "then": {"additionalProperties": False,
                               "properties": {"dataset": {}, **obj["properties"]}}})
    return {"type": "object", "required": ["dataset"], "properties": {"dataset": name},
            "allOf": rules}


def user_form(key, kind, description):
    """``{key: "module:Name", args: {...}}``: a component of the user's own."""
    return {"type": "object", "required": [key], "additionalProperties": False,
            "description": description, "x-user-code": kind,
            "properties": {key: USER_CODE, "args": {"type": "object"}}}


#: what each family's user code is, for the schema's descriptions
USER_CODE_FORMS = {
    "loss": "a class with call(y_true, y_pred) -> per-sample loss (N,) and "
            "gradient(y_true, y_pred) -> d loss/d y_pred (no autograd)",
    "metric": "a function (y_true, y_pred) -> per-sample values, or a class with "
              "update_state(y_true, y_pred, sample_weight=None), result(), reset_state()",
    "initializer": "a function or class called (shape, rng, dtype) -> array",
    "regularizer": "a class with __call__(w) -> penalty and gradient(w) -> d penalty/d w",
    "schedule": "a function or class called (step) -> lr",
    "preprocessing step": "a class with __call__(array) -> array, and fit(array) or "
                          "partial_fit(array) when it learns from the training split",
}


def _with_user_code(defs):
    """Each family that takes the user's own components also takes
    ``{family: "module:Name", args}``, imported from the config's folder or the Python
    path. Returns the forms by family."""
    forms = {}
    for kind, registry in families.ALL.items():
        if registry.user_key is None:
            continue
        description = (f"your own {kind}, imported from the config's folder or the Python "
                       f"path: {USER_CODE_FORMS[kind]}; args are its keyword arguments")
        forms[kind] = user_form(registry.user_key, kind, description)
        defs[kind]["anyOf"].append(forms[kind])  # a name, {Name: args}, or the user's
    return forms


def _application_keys():
    """``model: {application: NAME, ...}``: the family and Keras's arguments (each
    family checks which of them it takes when the model is built)."""
    from trainer.config.families import applications

    return {
        "application": {"enum": applications.names()},
        "include_top": {"type": "boolean", "default": True},
        "pooling": {"enum": ["avg", "max", None], "default": None},
        "classes": {"type": "integer", "minimum": 1, "default": 1000},
        "classifier_activation": {"type": ["string", "null"], "default": "softmax"},
        "alpha": {"type": "number", "exclusiveMinimum": 0},
        "depth_multiplier": {"type": "integer", "minimum": 1},
        "dropout": {"type": "number", "minimum": 0, "maximum": 1},
        "freeze": {"anyOf": [
            {"type": "object", "required": ["until"], "additionalProperties": False,
             "properties": {"until": {"type": "string"}}},
            {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
    }


def _per_output(item, user=None):
    """One value, or a mapping output name → value (functional models). ``user``: the
    family's user-code form, listed again here so that a mistake in one is reported
    as one (not as a mapping of outputs)."""
    return {"anyOf": [item, *([user] if user else []),
                      {"type": "object", "additionalProperties": item}]}


@functools.lru_cache(maxsize=1)
def config_schema():
    defs = {kind: reg.schema() for kind, reg in families.ALL.items()}
    defs["layer"] = {"anyOf": [
        _with_layer_common(defs["layer"]),
        {"type": "object", "required": ["call"], "additionalProperties": False,
         "properties": {"call": {"type": "string"}, "inputs": LAYER_COMMON["inputs"],
                        "name": LAYER_COMMON["name"]}},
        {"type": "object", "required": ["layer"], "additionalProperties": False,
         "properties": {"layer": USER_CODE, "args": {"type": "object"}, **LAYER_COMMON}},
        {"type": "object", "required": ["application"], "additionalProperties": False,
         "properties": {**_application_keys(), **LAYER_COMMON,
                        "weights": {"type": ["string", "null"], "minLength": 1}}},
    ]}
    defs["metric"] = _merged("metric", families.metrics, families.losses,
                             extra_names=("accuracy", "acc"))
    user_forms = _with_user_code(defs)
    defs["callback"] = {"anyOf": [
        defs["callback"],
        {"type": "object", "required": ["callback"], "additionalProperties": False,
         "properties": {"callback": USER_CODE, "args": {"type": "object"}}},
    ]}
    # An array's name (npz key, HDF5 dataset path, CSV column name or index, CSV `rest`),
    # a list of CSV columns, or input/output name → array name.
    column = {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]}
    columns = {"anyOf": [column, {"type": "array", "items": column, "minItems": 1}]}
    array_ref = {"anyOf": [*columns["anyOf"],
                           {"type": "object", "additionalProperties": columns}]}
    file_source = {
        "type": "object", "required": ["path"], "additionalProperties": False,
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "x": array_ref, "y": array_ref,
            "sample_weight": column,
            "y_path": {"type": "string", "minLength": 1},
            "sample_weight_path": {"type": "string", "minLength": 1},
            "lazy": {"type": "boolean", "default": True},
            "header": {"type": "boolean", "default": True},
            "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
        },
    }
    image_source = {  # a folder of images, as Keras's image_dataset_from_directory
        "type": "object", "required": ["images"], "additionalProperties": False,
        "properties": {
            "images": {"type": "string", "minLength": 1},
            "image_size": {"type": "array", "items": {"type": "integer", "minimum": 1},
                           "minItems": 2, "maxItems": 2, "default": [256, 256]},
            "labels": {"const": "inferred", "default": "inferred"},
            "label_mode": {"enum": ["int", "categorical", "binary"], "default": "int"},
            "class_names": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "color_mode": {"enum": ["rgb", "grayscale", "rgba"], "default": "rgb"},
            "interpolation": {"enum": ["bilinear", "nearest"], "default": "bilinear"},
            "shuffle": {"type": "boolean", "default": True},
            "seed": {"type": "integer", "minimum": 0},
            "validation_split": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "subset": {"enum": ["training", "validation"]},
        },
    }
    source = {"if": {"type": "object", "required": ["dataset"]},
              "then": _dataset_source(defs["dataset"]),
              "else": {"if": {"type": "object", "required": ["images"]},
                       "then": image_source, "else": file_source}}
    steps = {"type": "array", "items": {"$ref": "#/$defs/preprocessing step"}}
    defs["source"] = source
    schema = {
        "$schema": DIALECT,
        "$id": "https://trainer.dev/schemas/config.schema.json",
        "title": "trainer config, version 1",
        "type": "object",
        "additionalProperties": False,
        "required": ["model", "compile", "data"],
        "properties": {
            "version": {"const": 1, "default": 1},
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$", "default": "run"},
            "seed": {"type": "integer", "minimum": 0, "default": 0},
            "dtype": {"enum": ["float32", "float64"], "default": "float32"},
            "data": {
                "type": "object", "additionalProperties": False, "required": ["train"],
                "properties": {
                    "train": {"$ref": "#/$defs/source"},
                    "validation": {
                        "if": {"type": "object", "required": ["split"]},
                        "then": {
                            "type": "object", "additionalProperties": False,
                            "properties": {
                                "split": {"type": "number", "exclusiveMinimum": 0,
                                          "exclusiveMaximum": 1},
                                "mode": {"enum": ["tail", "random", "stratified"],
                                         "default": "tail"}}},
                        "else": {"$ref": "#/$defs/source"},
                    },
                    "test": {"$ref": "#/$defs/source"},
                    "preprocess": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "x": {"anyOf": [steps, {"type": "object",
                                                    "additionalProperties": steps}]},
                            "y": {"anyOf": [steps, {"type": "object",
                                                    "additionalProperties": steps}]},
                        },
                    },
                },
            },
            "model": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "input_shape": LAYER_COMMON["input_shape"],
                    "inputs": {"type": "object", "additionalProperties": {
                        "type": "object", "required": ["shape"], "additionalProperties": False,
                        "properties": {"shape": LAYER_COMMON["input_shape"],
                                       "dtype": {"type": "string"}}}},
                    "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}},
                    "outputs": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "weights": {"anyOf": [
                        {"type": "string", "minLength": 1}, {"type": "null"},
                        {"type": "object", "required": ["path"], "additionalProperties": False,
                         "properties": {"path": {"type": "string", "minLength": 1},
                                        "by_name": {"type": "boolean", "default": True},
                                        "skip_mismatch": {"type": "boolean",
                                                          "default": False}}}]},
                    "keras": {"type": "string", "minLength": 1},
                    **_application_keys(),
                },
            },
            "compile": {
                "type": "object", "additionalProperties": False, "required": ["loss"],
                "properties": {
                    "loss": _per_output({"$ref": "#/$defs/loss"}, user_forms["loss"]),
                    "loss_weights": {"anyOf": [
                        {"type": "array", "items": {"type": "number"}},
                        {"type": "object", "additionalProperties": {"type": "number"}}]},
                    "optimizer": {"$ref": "#/$defs/optimizer", "default": "rmsprop"},
                    "metrics": {"anyOf": [
                        {"type": "array", "items": {"$ref": "#/$defs/metric"}},
                        {"type": "object", "additionalProperties": {
                            "type": "array", "items": {"$ref": "#/$defs/metric"}}}],
                        "default": []},
                    "weighted_metrics": {"anyOf": [
                        {"type": "array", "items": {"$ref": "#/$defs/metric"}},
                        {"type": "object", "additionalProperties": {
                            "type": "array", "items": {"$ref": "#/$defs/metric"}}}],
                        "default": []},
                },
            },
            "fit": {
                "type": "object", "additionalProperties": False, "default": {},
                "properties": {
                    "epochs": _positive_int(1),
                    "batch_size": _positive_int(32),
                    "shuffle": {"type": "boolean", "default": True},
                    "verbose": {"enum": [0, 1, 2, "auto"], "default": "auto"},
                    "initial_epoch": {"type": "integer", "minimum": 0, "default": 0},
                    "steps_per_epoch": _positive_int(),
                    "validation_batch_size": _positive_int(),
                    "validation_freq": {"anyOf": [
                        _positive_int(1),
                        {"type": "array", "items": {"type": "integer", "minimum": 1},
                         "minItems": 1, "uniqueItems": True}]},
                    "checkpoint_every": _positive_int(),
                    # no "default" key for these two: a resolved config without them
                    # stays the one earlier runs were stored (and resumed) with
                    "accumulate_steps": {
                        **_positive_int(),
                        "description": "gradient accumulation (default 1): each optimizer "
                        "step takes "
                        "the accumulate_steps x batch_size rows one process with that "
                        "batch size would take, run as micro-batches of batch_size rows "
                        "(the same update within float summation order; peak memory "
                        "that of batch_size). Steps, steps_per_epoch, callbacks' batches, "
                        "schedules and checkpoints count optimizer steps"},
                    "allreduce_dtype": {
                        "enum": ["float64", "float32"],
                        "description": "under MPI (default float64): the dtype of the "
                        "fused buffer the "
                        "gradients, losses and metric increments are summed in once a "
                        "step. float64 keeps results equal to one process's within "
                        "float summation order; float32 moves half the bytes"},
                    "class_weight": {"anyOf": [
                        {"const": "balanced"},
                        {"type": "object", "additionalProperties": {"type": "number",
                                                                    "minimum": 0}}]},
                },
            },
            "callbacks": {"type": "array", "items": {"$ref": "#/$defs/callback"},
                          "default": []},
            "expect": {"type": "object", "additionalProperties": {
                "type": "string",
                "pattern": r"^\s*(>=|<=|==|!=|>|<)\s*[-+]?[0-9.]+([eE][-+]?[0-9]+)?\s*$"}},
        },
        "$defs": defs,
    }
    return schema


def schema_text():
    return json.dumps(config_schema(), indent=2, sort_keys=False) + "\n"
