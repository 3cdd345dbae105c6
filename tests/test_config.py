import json

import pytest

from conftest import ROOT, write_config
from trainer.config import loader as config
from trainer.errors import ConfigError
from trainer.config.schema import schema_text

BASE = """\
data:
  train: {dataset: iris}
model:
  input_shape: [4]
  layers:
    - Dense: {units: 8, activation: relu}
    - Dense: {units: 3, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  optimizer: adam
  metrics: [accuracy]
"""


def test_schema_file_matches_registries():
    """schemas/config.schema.json is the registries' schema written out."""
    on_disk = (ROOT / "schemas" / "config.schema.json").read_text()
    assert on_disk == schema_text(), "run `trainer schema > schemas/config.schema.json`"


def test_schema_names_every_registered_component():
    from trainer.config import families as registries

    schema = json.loads(schema_text())
    for kind, reg in registries.ALL.items():
        enum = schema["$defs"][kind]["anyOf"][0]["enum"] if kind not in (
            "layer", "callback") else schema["$defs"][kind]["anyOf"][0]["anyOf"][0]["enum"]
        expected = set(reg.all_names())
        if kind == "metric":  # losses and accuracy/acc are metrics too
            expected |= set(registries.losses.all_names()) | {"accuracy", "acc"}
        assert set(enum) == expected, kind


def test_defaults_are_filled(tmp_path):
    cfg = config.load(write_config(tmp_path, BASE))
    assert cfg["seed"] == 0 and cfg["fit"]["epochs"] == 1 and cfg["fit"]["batch_size"] == 32


def test_every_error_reported_at_once_with_lines(tmp_path):
    text = BASE.replace("Dense: {units: 8", "Dens: {units: 8").replace(
        "optimizer: adam", "optimizer: adamm")
    with pytest.raises(ConfigError) as info:
        config.load(write_config(tmp_path, text))
    msg = str(info.value)
    assert "unknown layer 'Dens'. Did you mean 'Dense'?" in msg
    assert "config.yaml:6:7" in msg
    assert "unknown optimizer 'adamm'" in msg and "config.yaml:10:14" in msg
    assert len(info.value.problems) == 2


def test_bad_value_names_path(tmp_path):
    with pytest.raises(ConfigError, match=r"model.layers\[0\].Dense.units: expected a value "
                                          r">= 1, got 0 \(config.yaml:6:22\)"):
        config.load(write_config(tmp_path, BASE.replace("units: 8", "units: 0")))


def test_yaml_syntax_error_has_line(tmp_path):
    with pytest.raises(ConfigError, match=r"invalid YAML.*config.yaml:3"):
        config.load(write_config(tmp_path, "data:\n  train: [1, 2\nmodel: {}\n"))


def test_python_tags_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not allowed in a config"):
        config.load(write_config(tmp_path, "seed: !!python/object/apply:os.system ['true']\n"))


def test_duplicate_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="duplicate key 'seed'"):
        config.load(write_config(tmp_path, "seed: 1\nseed: 2\n"))


def test_json_configs_load(tmp_path):
    import yaml
    cfg = config.load(write_config(tmp_path, json.dumps(yaml.safe_load(BASE)), "c.json"))
    assert cfg["compile"]["optimizer"] == "adam"


def test_overrides(tmp_path):
    path = write_config(tmp_path, BASE)
    cfg = config.load(path, ["fit.epochs=3", "compile.optimizer.adam.lr=0.01",
                             "model.layers.0.Dense.units=16"])
    assert cfg["fit"]["epochs"] == 3
    assert cfg["compile"]["optimizer"] == {"adam": {"lr": 0.01}}
    assert cfg["model"]["layers"][0]["Dense"]["units"] == 16


def test_bad_override_is_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"fit.epochs: expected an integer.*--set fit.epochs"):
        config.load(write_config(tmp_path, BASE), ["fit.epochs=many"])
    with pytest.raises(ConfigError, match="not an index"):
        config.load(write_config(tmp_path, BASE), ["model.layers.9.Dense.units=1"])


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'fitt'. Did you mean 'fit'"):
        config.load(write_config(tmp_path, BASE + "fitt: {epochs: 2}\n"))


def test_readme_lists_every_component():
    """The README's Components table names every registered component."""
    from trainer.config import families as registries

    readme = (ROOT / "README.md").read_text()
    missing = [f"{kind}:{name}" for kind, reg in registries.ALL.items()
               for name in reg.names() if f"`{name}`" not in readme]
    assert not missing, missing
