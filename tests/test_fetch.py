"""trainer.fetch: Keras's cache first, then a resumable, atomic, hash-checked download
from a local HTTP server (no real network)."""

import hashlib
import io
import tarfile

import pytest

from fetch_helpers import Files, closed_port_url, serve, sha256
from trainer.errors import DataError
from trainer.fetch import Remote, get_file
from trainer.fetch.download import mirrored

DATA = bytes(range(256)) * 1000  # 256 kB: several chunks


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv("TRAINER_MIRROR", raising=False)
    return home


def remote(base, data=DATA, **kw):
    return Remote("blob.bin", f"{base}/tf-keras-datasets/blob.bin", sha256(data), **kw)


def test_download_into_keras_cache_then_cache_hit(keras_home):
    files = Files({"/tf-keras-datasets/blob.bin": DATA})
    with serve(files) as base:
        path = get_file(remote(base), progress=False)
        assert path == keras_home / "datasets" / "blob.bin"
        assert path.read_bytes() == DATA
        assert get_file(remote(base), progress=False) == path
    assert len(files.requests) == 1  # the second call was a cache hit
    assert not (keras_home / "datasets" / "blob.bin.part").exists()


def test_cache_hit_needs_no_network(keras_home):
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / "blob.bin").write_bytes(DATA)
    r = Remote("blob.bin", closed_port_url() + "/x/blob.bin", sha256(DATA), "models")
    assert get_file(r).read_bytes() == DATA


def test_md5_hash_as_keras_checks_it(keras_home):
    files = Files({"/f/blob.bin": DATA})
    with serve(files) as base:
        r = Remote("blob.bin", base + "/f/blob.bin", hashlib.md5(DATA).hexdigest())
        assert get_file(r, progress=False).read_bytes() == DATA


def test_resume_asks_only_for_the_rest(keras_home):
    folder = keras_home / "datasets"
    folder.mkdir(parents=True)
    (folder / "blob.bin.part").write_bytes(DATA[:100_000])
    files = Files({"/tf-keras-datasets/blob.bin": DATA})
    with serve(files) as base:
        path = get_file(remote(base), progress=False)
    assert path.read_bytes() == DATA
    assert files.requests == [("/tf-keras-datasets/blob.bin", "bytes=100000-")]
    assert not (folder / "blob.bin.part").exists()


def test_resume_without_range_support_starts_over(keras_home):
    folder = keras_home / "datasets"
    folder.mkdir(parents=True)
    (folder / "blob.bin.part").write_bytes(DATA[:100_000])
    files = Files({"/tf-keras-datasets/blob.bin": DATA})
    files.ranges = False
    with serve(files) as base:
        assert get_file(remote(base), progress=False).read_bytes() == DATA


def test_stale_part_of_another_file_is_replaced(keras_home):
    folder = keras_home / "datasets"
    folder.mkdir(parents=True)
    (folder / "blob.bin.part").write_bytes(b"\xff" * 1000)
    files = Files({"/tf-keras-datasets/blob.bin": DATA})
    with serve(files) as base:
        assert get_file(remote(base), progress=False).read_bytes() == DATA
    assert len(files.requests) == 2  # resumed, hash wrong, fetched again from the start


def test_hash_mismatch_exit_3_and_nothing_under_final_name(keras_home):
    files = Files({"/tf-keras-datasets/blob.bin": DATA[:-1] + b"x"})
    with serve(files) as base:
        with pytest.raises(DataError) as err:
            get_file(remote(base), progress=False)
    assert err.value.exit_code == 3
    assert "hash" in err.value.message and sha256(DATA) in err.value.message
    assert list((keras_home / "datasets").iterdir()) == []


def test_corrupt_cached_file_is_downloaded_again(keras_home):
    folder = keras_home / "datasets"
    folder.mkdir(parents=True)
    (folder / "blob.bin").write_bytes(b"corrupt")
    files = Files({"/tf-keras-datasets/blob.bin": DATA})
    with serve(files) as base:
        assert get_file(remote(base), progress=False).read_bytes() == DATA


def test_offline_message_names_file_url_and_place(keras_home):
    r = Remote("mnist.npz", closed_port_url() + "/tensorflow/tf-keras-datasets/mnist.npz",
               "0" * 64)
    with pytest.raises(DataError) as err:
        get_file(r, progress=False)
    msg = err.value.message
    assert err.value.exit_code == 3
    assert "mnist.npz" in msg and r.origin in msg
    assert str(keras_home / "datasets" / "mnist.npz") in msg
    assert "TRAINER_MIRROR" in msg
    assert not (keras_home / "datasets" / "mnist.npz").exists()


def test_progress_bar_runs(keras_home, capsys):
    with serve(Files({"/tf-keras-datasets/blob.bin": DATA})) as base:
        assert get_file(remote(base), progress=True).read_bytes() == DATA
    assert "blob.bin" in capsys.readouterr().err


def test_http_404_is_data_error(keras_home):
    with serve(Files()) as base:
        with pytest.raises(DataError, match="HTTP 404"):
            get_file(remote(base), progress=False)


def test_mirror_variable_replaces_scheme_and_host(keras_home, monkeypatch):
    files = Files({"/prefix/tensorflow/tf-keras-datasets/blob.bin": DATA})
    r = Remote("blob.bin", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/blob.bin",
               sha256(DATA))
    with serve(files) as base:
        monkeypatch.setenv("TRAINER_MIRROR", base + "/prefix/")
        assert get_file(r, progress=False).read_bytes() == DATA
    assert files.requests[0][0] == "/prefix/tensorflow/tf-keras-datasets/blob.bin"


def test_mirror_argument_wins_and_bad_mirror_is_an_error(monkeypatch):
    monkeypatch.setenv("TRAINER_MIRROR", "http://env.example")
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz?x=1"
    assert mirrored(url, "http://m.local:8080") == \
        "http://m.local:8080/~kriz/cifar-10-python.tar.gz?x=1"
    assert mirrored(url).startswith("http://env.example/~kriz/")
    with pytest.raises(DataError, match="base URL"):
        mirrored(url, "not a url")


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_archive_is_extracted_beside_it_as_keras_untar(keras_home):
    blob = _tar({"pack/a.txt": b"A", "pack/sub/b.txt": b"B"})
    files = Files({"/d/pack.tar.gz": blob})
    with serve(files) as base:
        r = Remote("pack", base + "/d/pack.tar.gz", sha256(blob), extract=True)
        folder = get_file(r, progress=False)
    assert folder == keras_home / "datasets" / "pack"
    assert (folder / "sub" / "b.txt").read_bytes() == b"B"
    assert (keras_home / "datasets" / "pack.tar.gz").exists()
    assert get_file(r) == folder  # the extracted folder is a cache hit, offline too


def test_archive_with_escaping_member_is_refused(keras_home):
    blob = _tar({"../evil.txt": b"x"})
    with serve(Files({"/d/pack.tar.gz": blob})) as base:
        r = Remote("pack", base + "/d/pack.tar.gz", sha256(blob), extract=True)
        with pytest.raises(DataError, match="refusing"):
            get_file(r, progress=False)
    assert not (keras_home / "datasets" / "pack").exists()
    assert not (keras_home / "evil.txt").exists()


@pytest.mark.parametrize("layout", ["keras2", "keras3-nested", "keras3-target"])
def test_extracted_folder_of_keras_2_or_3_is_a_cache_hit(keras_home, layout):
    base = keras_home / "datasets"
    folder = {"keras2": base / "pack", "keras3-nested": base / "pack" / "pack",
              "keras3-target": base / "pack-target" / "pack"}[layout]
    folder.mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"A")
    r = Remote("pack", closed_port_url() + "/d/pack.tar.gz", "0" * 64, extract=True,
               keras3_dir="pack-target" if layout == "keras3-target" else None)
    assert get_file(r) == folder


def test_keras3_archive_is_unpacked_without_download(keras_home):
    blob = _tar({"pack/a.txt": b"A"})
    (keras_home / "datasets").mkdir(parents=True)
    (keras_home / "datasets" / "pack-target_archive").write_bytes(blob)
    r = Remote("pack", closed_port_url() + "/d/pack.tar.gz", sha256(blob), extract=True,
               keras3_dir="pack-target")
    folder = get_file(r)
    assert folder == keras_home / "datasets" / "pack"
    assert (folder / "a.txt").read_bytes() == b"A"
