import json
import textwrap

import pytest

from cbhelp import fit
from trainer.errors import ConfigError

HOOKS = '''
import json
from trainer.callbacks.base import Callback


class Notify(Callback):
    """Records every hook call and the keys of its logs."""

    def __init__(self, out, tag="x"):
        super().__init__()
        self.out = out
        self.tag = tag
        self.calls = []

    def _log(self, hook, logs):
        self.calls.append([hook, sorted(logs or {})])

    def on_train_begin(self, logs=None): self._log("train_begin", logs)
    def on_epoch_begin(self, epoch, logs=None): self._log("epoch_begin", logs)
    def on_batch_begin(self, batch, logs=None): self._log("batch_begin", logs)
    def on_batch_end(self, batch, logs=None): self._log("batch_end", logs)
    def on_epoch_end(self, epoch, logs=None):
        self._log("epoch_end", logs)
        if epoch == 1:
            self.model.stop_training = True  # stopping is a flag

    def on_train_end(self, logs=None):
        self._log("train_end", logs)
        with open(self.run.path / self.out, "w") as f:
            json.dump({"tag": self.tag, "calls": self.calls}, f)

    def get_state(self):
        return {"calls": len(self.calls)}


class NotACallback:
    pass
'''


def package(folder, source=HOOKS):
    pkg = folder / "my_pkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "hooks.py").write_text(textwrap.dedent(source))


def test_user_callback_from_the_config_folder_sees_every_hook(tmp_path):
    package(tmp_path)
    run, _ = fit(tmp_path, [{"callback": "my_pkg.hooks:Notify",
                             "args": {"out": "calls.json", "tag": "hi"}}], fit={"epochs": 5})
    got = json.loads((run.path / "calls.json").read_text())
    assert got["tag"] == "hi"
    hooks = [h for h, _ in got["calls"]]
    # 120 training rows in batches of 32: 4 batches; stopped after epoch 1
    one_epoch = ["epoch_begin"] + ["batch_begin", "batch_end"] * 4 + ["epoch_end"]
    assert hooks == ["train_begin", *one_epoch, *one_epoch, "train_end"]
    logs = dict((h, keys) for h, keys in got["calls"])
    assert logs["batch_begin"] == ["batch", "size"]
    assert logs["batch_end"] == ["accuracy", "batch", "loss", "size"]
    assert logs["epoch_end"] == ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    # its state goes into last.h5 with every callback's
    import h5py
    with h5py.File(run.checkpoints / "last.h5") as f:
        state = json.loads(f["trainer_state"].attrs["state"])
    # written after every callback's on_epoch_end of epoch 1: train_begin + 2 × 10 hooks
    assert state["loop"]["callbacks"]["Notify"] == {"calls": 21}


def test_the_module_next_to_the_config_wins(tmp_path):
    for name in ("a", "b"):  # two configs, two modules of the same name
        folder = tmp_path / name
        folder.mkdir()
        package(folder, HOOKS.replace('tag="x"', f'tag="{name}"'))
        run, _ = fit(folder, [{"callback": "my_pkg.hooks:Notify", "args": {"out": "o.json"}}],
                     fit={"epochs": 1})
        assert json.loads((run.path / "o.json").read_text())["tag"] == name


@pytest.mark.parametrize("ref, args, message", [
    ("nowhere_pkg.hooks:Notify", {}, "cannot import 'nowhere_pkg.hooks': no "
                                     "nowhere_pkg/hooks.py in"),
    ("my_pkg.hooks:Notfy", {"out": "o"}, "has no 'Notfy'. Did you mean 'Notify'?"),
    ("my_pkg.hooks:NotACallback", {}, "is not a subclass of trainer.callbacks.base.Callback"),
    ("my_pkg.hooks:Notify", {"wrong": 1}, "unexpected keyword argument 'wrong'"),
])
def test_errors_name_what_is_wrong_and_where(tmp_path, ref, args, message):
    package(tmp_path)
    with pytest.raises(ConfigError) as err:
        fit(tmp_path, [{"callback": ref, "args": args}])
    assert message in str(err.value)
    assert str(err.value).startswith("callbacks[0]: ") and "config.yaml" in str(err.value)


def test_a_module_that_raises_on_import(tmp_path):
    package(tmp_path, "raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=r"importing 'my_pkg.hooks' failed: RuntimeError: boom"
                                          r" \(.*hooks.py:1\)"):
        fit(tmp_path, [{"callback": "my_pkg.hooks:Notify"}])
