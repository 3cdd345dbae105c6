import sys

import pytest

from cbhelp import fit
from trainer.errors import ConfigError


def accumulate(folder):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0,
                                                                        "histograms": 0,
                                                                        "images": 0})
    acc.Reload()
    return acc


def test_event_files_read_back_by_tensorboard(tmp_path):
    pytest.importorskip("tensorboardX")
    run, logs = fit(tmp_path, [{"TensorBoard": {"log_dir": "tb", "histogram_freq": 2,
                                                "update_freq": 2}}], fit={"epochs": 3})
    train = accumulate(run.path / "tb" / "train")
    val = accumulate(run.path / "tb" / "validation")
    tags = train.Tags()
    assert {"epoch_loss", "epoch_accuracy", "epoch_lr"} <= set(tags["scalars"])
    assert set(val.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy"}
    loss = train.Scalars("epoch_loss")
    assert [e.step for e in loss] == [0, 1, 2]
    assert loss[-1].value == pytest.approx(logs["loss"], rel=1e-6)
    assert val.Scalars("epoch_accuracy")[-1].value == pytest.approx(logs["val_accuracy"])
    # 4 batches per epoch, every 2nd batch: global steps 2, 4, ..., 12
    assert [e.step for e in train.Scalars("batch_loss")] == [2, 4, 6, 8, 10, 12]
    # histograms at epochs 0 and 2, one per weight, named as Keras 2 names them
    assert {"dense/kernel_0", "dense/bias_0", "dense_1/kernel_0"} <= set(tags["histograms"])
    hist = train.Histograms("dense/kernel_0")
    assert [h.step for h in hist] == [0, 2]
    assert hist[0].histogram_value.num == 4 * 8
    assert tags["graph"]
    graph = train.Graph()
    assert [n.name for n in graph.node] == ["input", "dense", "dense_1"]
    assert list(graph.node[2].input) == ["dense"]


def test_weight_images(tmp_path):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("PIL")
    run, _ = fit(tmp_path, [{"TensorBoard": {"histogram_freq": 1, "write_images": True,
                                             "write_graph": False}}], fit={"epochs": 1})
    train = accumulate(run.path / "logs" / "train")
    assert "dense/kernel_0" in train.Tags()["images"]
    assert not train.Tags()["graph"]


def test_missing_tensorboardx_is_a_clear_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
    with pytest.raises(ConfigError, match=r"callbacks\[0\]: TensorBoard needs the "
                                          r"'tensorboardX' package.*trainer\[tensorboard\]"):
        fit(tmp_path, ["TensorBoard"])
