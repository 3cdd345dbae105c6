"""`trainer export` to a Keras 2-format file (.h5, .json) of a model using hard_sigmoid
(LSTM/GRU's default recurrent_activation, as Keras 2) says who reads it as trained:
Keras 2 does; Keras 3 redefined hard_sigmoid, so it should get the exact .keras export."""

import pytest
from click.testing import CliRunner

from conftest import write_config
from trainer.cli import main

RNN = """\
data: {{train: {{dataset: iris}}}}
model:
  input_shape: [4]
  layers:
    - Reshape: {{target_shape: [4, 1]}}
    - {layer}
    - Dense: {{units: 3, activation: softmax}}
compile: {{loss: sparse_categorical_crossentropy, optimizer: adam}}
fit: {{epochs: 1, batch_size: 32}}
"""


def run_of(tmp_path, layer):
    config = write_config(tmp_path, RNN.format(layer=layer))
    r = CliRunner().invoke(main, ["fit", str(config), "--run-dir", str(tmp_path / "run"), "-q"])
    assert r.exit_code == 0, r.output
    return tmp_path / "run"


@pytest.mark.parametrize("layer, names", [
    ("LSTM: {units: 2, name: enc}", "enc"),
    ("Bidirectional: {name: bi, layer: {GRU: {units: 2, name: g}}}", "g"),
])
def test_h5_and_json_exports_say_keras_3_reads_hard_sigmoid_differently(tmp_path, layer,
                                                                        names):
    run = run_of(tmp_path, layer)
    for out in ("m.h5", "m.json"):
        r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / out)])
        assert r.exit_code == 0, r.output
        assert (tmp_path / out).is_file()
        note = r.stderr
        assert note.startswith(f"warning: {out}: Keras 2 (tf.keras 2.x) reads this file as "
                               f"trained; Keras 3 computes hard_sigmoid as relu6(x + 3) / 6")
        assert f"with layers {names}." in note and "export to .keras (exact" in note
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "m.keras")])
    assert r.exit_code == 0 and r.stderr == ""  # the .keras export is exact: no note


def test_no_note_without_hard_sigmoid(tmp_path):
    run = run_of(tmp_path, "LSTM: {units: 2, recurrent_activation: sigmoid}")
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "m.h5")])
    assert r.exit_code == 0 and r.stderr == ""
