"""A folder of images as a data source (Keras's image_dataset_from_directory)."""

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_config
from image_helpers import make_image_folder
from trainer.cli import main
from trainer.data.images import ImageArray, index_directory, load_image
from trainer.errors import DataError


def test_index_directory_is_keras_order_and_shuffle(tmp_path):
    root = make_image_folder(tmp_path / "imgs")
    files, labels, names = index_directory(root, shuffle=False)
    assert names == ["cats", "dogs"] and len(files) == 12
    assert [p.parent.name for p in files[:6]] == ["cats"] * 6 and list(labels[:6]) == [0] * 6
    shuffled, shuffled_labels, _ = index_directory(root, seed=7)
    order = np.arange(12)
    np.random.RandomState(7).shuffle(order)
    assert list(shuffled) == list(files[order])
    assert all(p.parent.name == names[k] for p, k in zip(shuffled, shuffled_labels))


def test_images_load_lazily_and_resized(tmp_path):
    root = make_image_folder(tmp_path / "imgs")
    files, _, _ = index_directory(root, shuffle=False)
    x = ImageArray(files, (8, 10), "rgb", "bilinear", str(root))
    assert x.shape == (12, 8, 10, 3) and x.reads == 0
    batch = x.take([0, 11])
    assert batch.dtype == np.float32 and batch.shape == (2, 8, 10, 3)
    assert batch[0, ..., 0].mean() > 150 and batch[1, ..., 1].mean() > 150  # class colours
    assert load_image(files[0], None).shape == (20, 24, 3)
    assert load_image(files[0], (4, 4), "grayscale").shape == (4, 4, 1)


def test_corrupt_image_is_data_error(tmp_path):
    root = make_image_folder(tmp_path / "imgs")
    (root / "dogs" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        load_image(root / "dogs" / "bad.png", (4, 4))


def test_fit_on_an_image_folder_with_keras_validation_split(workdir):
    make_image_folder(workdir / "photos", per_class=10)
    config = write_config(workdir, """
data:
  train: {images: photos, image_size: [16, 16], validation_split: 0.25, subset: training,
          seed: 3}
  validation: {images: photos, image_size: [16, 16], validation_split: 0.25,
               subset: validation, seed: 3}
  preprocess:
    x: [{rescale: 0.00392156862745098}]
model:
  input_shape: [16, 16, 3]
  layers:
    - Conv2D: {filters: 4, kernel_size: 3, activation: relu}
    - GlobalAveragePooling2D
    - Dense: {units: 2, activation: softmax}
compile: {loss: sparse_categorical_crossentropy, optimizer: adam, metrics: [accuracy]}
fit: {epochs: 2, batch_size: 4}
""")
    r = CliRunner().invoke(main, ["fit", str(config), "--run-dir", str(workdir / "run")])
    assert r.exit_code == 0, r.output
    assert "val_accuracy" in r.output  # the validation subset was read
    assert (workdir / "run" / "checkpoints" / "last.h5").exists()


def test_missing_class_folder_and_bad_pairing(workdir):
    make_image_folder(workdir / "photos")
    base = """
data:
  train: {images: photos, image_size: [8, 8], %s}
model:
  input_shape: [8, 8, 3]
  layers: [Flatten, {Dense: {units: 2, activation: softmax}}]
compile: {loss: sparse_categorical_crossentropy}
"""
    r = CliRunner().invoke(main, ["fit", str(write_config(workdir, base % "class_names: [cats, birds]"))])
    assert r.exit_code == 3 and "birds" in r.output
    r = CliRunner().invoke(main, ["fit", str(write_config(workdir, base % "subset: training"))])
    assert r.exit_code == 2 and "validation_split and subset" in r.output


def test_predict_on_image_file_folder_and_glob(workdir):
    make_image_folder(workdir / "photos", per_class=3)
    config = write_config(workdir, """
data:
  train: {images: photos, image_size: [12, 12]}
model:
  input_shape: [12, 12, 3]
  layers: [Flatten, {Dense: {units: 2, activation: softmax}}]
compile: {loss: sparse_categorical_crossentropy}
""")
    run = CliRunner().invoke
    assert run(main, ["fit", str(config), "--run-dir", str(workdir / "run")]).exit_code == 0
    for ref, n in ((workdir / "photos" / "dogs" / "img_1.png", 1),
                   (workdir / "photos" / "cats", 3), (str(workdir / "photos" / "*" / "*.jpg"), 4)):
        r = run(main, ["predict", str(workdir / "run"), "--input", str(ref),
                       "--output", str(workdir / "p.npy")])
        assert r.exit_code == 0, r.output
        assert np.load(workdir / "p.npy").shape == (n, 2)


def test_load_img_is_keras_nearest_resize(tmp_path):
    from PIL import Image

    from trainer.data.images import load_img

    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    x = load_img(tmp_path / "a.png", (2, 3))
    want = np.asarray(Image.fromarray(pixels).resize((3, 2), Image.NEAREST), np.float32)
    np.testing.assert_array_equal(x, want)
