"""Small configs around a data section, for the tests/test_data_*.py files."""

import json
import textwrap

from click.testing import CliRunner

from conftest import write_config
from trainer.cli import main

MLP = """
model:
  input_shape: {shape}
  layers:
    - Dense: {{units: 8, activation: relu}}
    - Dense: {{units: {classes}, activation: softmax}}
compile:
  loss: {loss}
  optimizer: {{Adam: {{lr: 0.01}}}}
  metrics: [accuracy]
fit: {{epochs: {epochs}, batch_size: 16, verbose: 0}}
"""


def make_config(folder, data, shape=(4,), classes=3, loss="sparse_categorical_crossentropy",
                epochs=1, name="config.yaml"):
    """A config file in ``folder`` with this data section (a dict) and a small MLP."""
    text = "seed: 0\ndata: " + json.dumps(data) + "\n" + MLP.format(
        shape=list(shape), classes=classes, loss=loss, epochs=epochs)
    return write_config(folder, text, name)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fit_json(path, run_dir, *extra):
    r = cli("fit", path, "--run-dir", run_dir, "--json", *extra)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


#: a one-epoch iris run: the smallest config that trains, validates and checkpoints
IRIS = textwrap.dedent("""\
    seed: 0
    data:
      train: {dataset: iris}
      validation: {split: 0.2}
    model: {input_shape: [4], layers: [{Dense: {units: 3, activation: softmax}}]}
    compile: {loss: sparse_categorical_crossentropy, optimizer: adam}
    fit: {epochs: 1, batch_size: 32, verbose: 0}
    """)
