"""Hostile input: YAML that would construct Python objects or expand without bound,
files that would unpickle code or allocate absurd sizes, user code imported from
anywhere but where the config points. Each is refused with one clear message."""

import re
import sys
import textwrap

import h5py
import numpy as np
import pytest

from conftest import ROOT, write_config
from data_helpers import cli, make_config
from resume_helpers import fit as fit_tiny
from trainer.store import checkpoint
from trainer.config import loader as config
from trainer.errors import ConfigError, DataError

OK = ("data:\n  train: {dataset: iris}\nmodel: {input_shape: [4], layers: [{Dense: {units: 3}}]}\n"
      "compile: {loss: sparse_categorical_crossentropy, optimizer: adam}\n"
      "fit: {epochs: 1}\n")


# -- YAML --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "seed: !!python/object/apply:os.system ['touch {marker}']\n",
    "seed: !!python/object/new:os.system ['touch {marker}']\n",
    "seed: !!python/name:os.system\n",
    "seed: !!python/module:os\n",
    "seed: !!python/tuple [1, 2]\n",
    "seed: !!binary aGVsbG8=\n",
    "seed: !!set {{a, b}}\n",
    "seed: !!omap [a: 1]\n",
    "seed: !custom 3\n",
    "%TAG !p! tag:yaml.org,2002:python/\n---\nseed: !p!object/apply:os.system ['touch {marker}']\n",
    # a tagged anchor pulled in through a merge key
    "base: &b !!python/object/apply:os.system ['touch {marker}']\nfit:\n  <<: *b\n",
    "base: &b {{x: !!python/name:os.system }}\nfit:\n  <<: *b\n",
    # a tag on a key
    "? !!python/object/apply:os.system ['touch {marker}']\n: 1\n",
])
def test_yaml_tags_that_construct_objects_are_refused(tmp_path, text):
    marker = tmp_path / "pwned"
    path = write_config(tmp_path, text.format(marker=marker) + OK)
    with pytest.raises(ConfigError, match="not allowed in a config|invalid YAML") as err:
        config.load(path)
    assert "config.yaml:" in str(err.value)
    assert not marker.exists()


def test_tags_in_set_overrides_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = write_config(tmp_path, OK)
    with pytest.raises(ConfigError, match=r"not allowed in a config.*--set seed"):
        config.load(path, [f"seed=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


def billion_laughs(levels=9, width=9):
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["file", "--set"])
def test_yaml_alias_bomb_is_refused_not_expanded(tmp_path, where):
    """9 levels of 9 aliases: 9**9 = 387 million strings if expanded. Refused after
    config.MAX_VALUES values (this test would run for minutes and take gigabytes
    of memory otherwise)."""
    bomb = billion_laughs()
    if where == "file":
        path, sets = write_config(tmp_path, OK + bomb), []
    else:
        flow = "{" + bomb.strip().replace("\n", ", ") + "}"
        path, sets = write_config(tmp_path, OK), [f"fit={flow}"]
    with pytest.raises(ConfigError, match=f"more than {config.MAX_VALUES} values"):
        config.load(path, sets)


def test_aliases_of_small_parts_still_work(tmp_path):
    text = OK.replace("layers: [{Dense: {units: 3}}]",
                      "layers: [&d {Dense: {units: 4}}, *d, {Dense: {units: 3}}]")
    cfg = config.load(write_config(tmp_path, text))
    assert cfg["model"]["layers"][0] == cfg["model"]["layers"][1]


@pytest.mark.parametrize("open_, close", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_refused(tmp_path, open_, close):
    text = OK + "x: " + open_ * 1500 + "1" + close * 1500 + "\n"
    with pytest.raises(ConfigError, match=f"nested more than {config.MAX_DEPTH} levels"):
        config.load(write_config(tmp_path, text))


# -- pickle ------------------------------------------------------------------------------

class Exploit:
    """Unpickling this creates a folder: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_object_arrays_are_refused_never_unpickled(tmp_path, suffix):
    marker = tmp_path / "pwned"
    evil = np.array([Exploit(marker)] * 40, dtype=object)
    if suffix == ".npz":
        np.savez(tmp_path / "d.npz", x=np.zeros((40, 4), np.float32), y=evil)
        data = {"train": {"path": "d.npz", "y": "y"}}
    else:
        np.save(tmp_path / "d.npy", evil, allow_pickle=True)
        data = {"train": {"path": "d.npy"}}
    r = cli("fit", make_config(tmp_path, data), "--run-dir", tmp_path / "r")
    assert r.exit_code == 3 and "pickle" in r.output and "Traceback" not in r.output, r.output
    assert not marker.exists()


def test_no_pickle_eval_or_unsafe_yaml_in_trainer():
    """The code never turns pickle on, imports pickle, evaluates strings or loads YAML
    with a loader that builds Python objects."""
    forbidden = [r"allow_pickle\s*=\s*True",
                 r"^\s*(import|from)\s+(c?pickle|dill|marshal|shelve)\b",
                 r"\beval\(", r"\bexec\(", r"yaml\.(unsafe_load|full_load|load)\(",
                 r"yaml\.(Unsafe|Full)?Loader\b", r"\bpickle\.loads?\("]
    hits = []
    for path in sorted((ROOT / "trainer").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for pattern in forbidden:
                if re.search(pattern, line):
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)
    # and the readers do pass allow_pickle=False
    sources = (ROOT / "trainer/data/sources.py").read_text()
    assert sources.count("allow_pickle=False") >= 2


# -- HDF5 with absurd shapes and attributes -------------------------------------------------

def h5_fails(tmp_path, build, *expected, spec=None):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        build(f)
    data = {"train": spec or {"path": "d.h5", "x": "x", "y": "y"}}
    r = cli("fit", make_config(tmp_path, data), "--run-dir", tmp_path / "r")
    assert r.exit_code == 3, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    for text in expected:
        assert text in r.output, r.output


def small(f):
    f["x"] = np.zeros((40, 4), np.float32)
    f["y"] = np.arange(40) % 3


def test_hdf5_dataset_declaring_exabytes_is_refused(tmp_path):
    def build(f):
        f.create_dataset("x", shape=(10**12, 10**6), maxshape=(None, None),
                         chunks=(1, 1024), dtype="f4")
        f.create_dataset("y", shape=(10**12,), chunks=(4096,), dtype="i8", compression="gzip")
    h5_fails(tmp_path, build, "d.h5:/x", "(1000000000000, 1000000)", "never written")


def test_hdf5_unused_huge_dataset_is_not_read(tmp_path):
    def build(f):
        small(f)
        f.create_dataset("junk", shape=(10**12, 10**6), chunks=(1, 64), dtype="S10")
    h5_fails(tmp_path, build, "d.h5:/junk", "refused")


def test_hdf5_row_larger_than_memory_is_refused(tmp_path):
    def build(f):
        f.create_dataset("x", shape=(40, 10**12), chunks=(1, 1024), dtype="f4")
        f["y"] = np.arange(40) % 3
    h5_fails(tmp_path, build, "d.h5:/x", "one row of shape (1000000000000,)")


def test_hdf5_dataset_eagerly_loaded_larger_than_memory(tmp_path):
    def build(f):
        f.create_dataset("x", shape=(10**9, 10**6), chunks=(1, 1024), dtype="f4",
                         compression="gzip")
        f["y"] = np.arange(40) % 3
    h5_fails(tmp_path, build, "d.h5:/x", "more than this machine's memory",
             spec={"path": "d.h5", "x": "x", "y": "y", "lazy": False})


def test_hdf5_partly_written_dataset_is_refused(tmp_path):
    """A writer that died after the first chunk: the other rows would read as zeros."""
    def build(f):
        x = f.create_dataset("x", shape=(4000, 4), chunks=(1000, 4), dtype="f4")
        x[:1000] = 1.0
        f["y"] = np.arange(4000) % 3
    h5_fails(tmp_path, build, "d.h5:/x", "3 of its 4 chunks were never written")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_hdf5_truncated_at_several_offsets(tmp_path, cut):
    with h5py.File(tmp_path / "full.h5", "w") as f:
        f["x"] = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
        f["y"] = np.arange(400) % 3
    data = (tmp_path / "full.h5").read_bytes()
    (tmp_path / "d.h5").write_bytes(data[:int(len(data) * cut)])
    r = cli("fit", make_config(tmp_path, {"train": {"path": "d.h5", "x": "x", "y": "y"}}),
            "--run-dir", tmp_path / "r")
    assert r.exit_code == 3 and "d.h5" in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("cut", [0.05, 0.3, 0.6, 0.95])
def test_npz_truncated_at_several_offsets(tmp_path, cut):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "full.npz", x=rng.normal(size=(400, 4)).astype(np.float32),
             y=np.arange(400) % 3)
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[:int(len(data) * cut)])
    r = cli("fit", make_config(tmp_path, {"train": {"path": "d.npz", "y": "y"}}),
            "--run-dir", tmp_path / "r")
    assert r.exit_code == 3 and "d.npz" in r.output and "Traceback" not in r.output, r.output


@pytest.fixture
def saved(tmp_path):
    fit_tiny(tmp_path / "run", "fit.epochs=1")
    return tmp_path / "run/checkpoints/last.h5"


def reseal(path, change, **kw):
    """Change a checkpoint and seal it again (a hostile file passes the checksum)."""
    with h5py.File(path, "r+", **kw) as f:
        change(f)
    checkpoint._seal(path)


def test_checkpoint_weight_with_absurd_shape_is_refused_before_reading(saved):
    from resume_helpers import config
    from trainer.app import fit as api

    def change(f):
        name = "dense/dense/kernel:0"
        del f[name]
        f.create_dataset(name, shape=(10**12, 10**6), chunks=(1, 1024), dtype="f4")
    reseal(saved, change)
    model = api.build(config())
    with pytest.raises((ConfigError, DataError), match=r"\(1000000000000, 1000000\)"):
        checkpoint.load(saved, model)  # refused on its declared shape, before reading


def test_checkpoint_state_array_with_absurd_shape_is_refused(saved):
    reseal(saved, lambda f: f["trainer_state/arrays"].create_dataset(
        "evil", shape=(10**12, 10**6), chunks=(1, 1024), dtype="f8"))
    with pytest.raises(DataError, match=r"arrays/evil: declares shape"):
        checkpoint.read_state(saved)


def test_checkpoint_with_huge_attribute_is_refused(saved):
    def change(f):
        f.move("trainer_state", "old")
        g = f.create_group("trainer_state")  # a new-style group: dense attributes
        f.copy("old/arrays", g)
        del f["old"]
        g.attrs.create("state", np.zeros(17 << 17, np.float64))  # 17 MiB
    reseal(saved, change, libver="latest")  # dense attribute storage: no 64 KiB limit
    with pytest.raises(DataError, match=r"attribute 'state' is 17.0 MiB"):
        checkpoint.read_state(saved)


# -- user code ----------------------------------------------------------------------------

MARKING = '''
import pathlib
pathlib.Path({marker!r}).write_text({tag!r})
from trainer.callbacks.base import Callback


class Hook(Callback):
    pass
'''


def user_module(folder, marker, tag):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hookmod_x.py").write_text(MARKING.format(marker=str(marker), tag=tag))


def test_user_callback_comes_from_the_config_folder_not_sys_path(tmp_path, monkeypatch):
    from cbhelp import fit

    marker = tmp_path / "imported"
    user_module(tmp_path / "elsewhere", marker, "elsewhere")
    user_module(tmp_path / "cfg", marker, "config folder")
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    monkeypatch.delitem(sys.modules, "hookmod_x", raising=False)
    import hookmod_x  # noqa: F401 - the other one is on sys.path, and even imported
    assert marker.read_text() == "elsewhere"
    fit(tmp_path / "cfg", [{"callback": "hookmod_x:Hook"}], fit={"epochs": 1})
    assert marker.read_text() == "config folder"
    assert sys.modules["hookmod_x"].__file__ == str(tmp_path / "cfg/hookmod_x.py")
    monkeypatch.delitem(sys.modules, "hookmod_x", raising=False)


@pytest.mark.parametrize("ref", ["hookmod_x", "hookmod_x.Hook", "hookmod_x:Hook:x",
                                 "__import__('hookmod_x')", "hookmod_x Hook", ""])
def test_no_import_for_a_string_that_is_not_module_colon_class(tmp_path, ref, monkeypatch):
    from cbhelp import fit

    marker = tmp_path / "imported"
    user_module(tmp_path, marker, "imported")
    monkeypatch.delitem(sys.modules, "hookmod_x", raising=False)
    with pytest.raises(ConfigError):
        fit(tmp_path, [{"callback": ref}])
    assert not marker.exists()
    assert "hookmod_x" not in sys.modules


def test_user_module_source_is_never_evaluated_as_an_expression(tmp_path):
    """A module path with code in it names no file: nothing is imported or run."""
    from cbhelp import fit

    marker = tmp_path / "ran"
    with pytest.raises(ConfigError):
        fit(tmp_path, [{"callback": f"os;open('{marker}','w'):Hook"}])
    assert not marker.exists()


@pytest.mark.parametrize("callback", [
    {"CSVLogger": {"filename": "../escape.csv"}},
    {"CSVLogger": {"filename": "/tmp/escape.csv"}},
    {"CSVLogger": {"filename": "~/escape.csv"}},
    {"TensorBoard": {"log_dir": "../logs"}},
    {"TensorBoard": {"log_dir": "/tmp/logs"}},
    {"ModelCheckpoint": {"filepath": "../../m.h5"}},
])
def test_callback_files_outside_the_run_folder_are_refused(tmp_path, callback):
    path = write_config(tmp_path, textwrap.dedent(OK) + "callbacks:\n  - "
                        + str(callback).replace("'", "") + "\n")
    r = cli("fit", path, "--run-dir", tmp_path / "r")
    assert r.exit_code == 2 and "inside the run folder" in r.output, r.output
    assert not (tmp_path / "escape.csv").exists()


@pytest.mark.parametrize("line", ["seed: 1.0e+308", "seed: 3.0", "fit: {epochs: 1.0e+300}"])
def test_integers_must_be_written_as_integers(tmp_path, line):
    """JSON Schema counts 1e308 as an integer; trainer does not (found by the fuzzer:
    a float seed reached NumPy's SeedSequence)."""
    with pytest.raises(ConfigError, match="expected an integer"):
        config.load(write_config(tmp_path, OK.replace("fit: {epochs: 1}\n", "") + line + "\n"))


# -- bad data not covered in tests/test_data_errors.py ----------------------------------------

def _x():
    return np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)


@pytest.mark.parametrize("x, y, message", [
    (np.where(np.arange(160).reshape(40, 4) == 7, np.inf, _x()), np.arange(40) % 3,
     "holds 1 NaN/Inf values (first in row 1)"),
    (np.full((40, 4), 1e300), np.arange(40) % 3, "beyond float32's range"),
    (_x().astype(np.complex64), np.arange(40) % 3, "complex64 values"),
    (np.zeros((40, 4), "datetime64[s]"), np.arange(40) % 3, "datetime64[s] values"),
    (np.zeros((40, 4), dtype=[("a", "f4")]), np.arange(40) % 3, "numbers are needed"),
    (np.float32(3), np.arange(40) % 3, "x[input] is a single value"),
    (_x(), np.where(np.arange(40) == 3, np.nan, np.arange(40) % 3), "hold NaN or Inf"),
    (_x(), np.arange(40) % 3 - 1, "class ids in [-1, 1]"),
    (_x(), np.arange(40) % 3 + 0.5, "hold fractions"),
    (_x(), np.zeros((40, 5)), "labels have shape (40, 5)"),
])
def test_bad_arrays_are_data_errors(tmp_path, x, y, message):
    with np.errstate(over="ignore"):
        np.savez(tmp_path / "d.npz", x=x, y=y)
    r = cli("fit", make_config(tmp_path, {"train": {"path": "d.npz", "y": "y"}}),
            "--run-dir", tmp_path / "r")
    assert r.exit_code == 3 and message in r.output, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output


def test_layers_and_labels_too_large_for_memory_are_refused(tmp_path):
    """Found by the example fuzzer: both were a MemoryError (exit 1)."""
    from trainer.app import fit as api

    big = OK.replace("units: 3", "units: 1000000000000")
    with pytest.raises(ConfigError, match=r"weight 'kernel' of shape \(4, 1000000000000\)"):
        api.build(config.load(write_config(tmp_path, big)))
    data = {"train": {"path": "d.npz", "y": "y"}}
    np.savez(tmp_path / "d.npz", x=_x(), y=np.arange(40) % 3)
    path = make_config(tmp_path, data, loss="categorical_crossentropy")
    text = path.read_text().replace('"y": "y"}}', '"y": "y"}, "preprocess": {"y": '
                                    '[{"to_categorical": {"num_classes": 1000000000000}}]}}')
    path.write_text(text)
    r = cli("fit", path, "--run-dir", tmp_path / "r")
    assert r.exit_code in (2, 3) and "would take" in r.output, r.output
