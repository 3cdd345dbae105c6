import numpy as np
import pytest

from gradcheck import check_layer
from trainer.errors import ConfigError
from trainer.config.families import layers


def make(kind, **args):
    return layers.get({kind: args})


def test_reshape_with_minus_one(rng):
    x = rng.normal(size=(2, 8, 8))
    y = check_layer(make("Reshape", target_shape=[8, 8, 1]), x)
    np.testing.assert_array_equal(y, x[..., None])
    y = check_layer(make("Reshape", target_shape=[-1, 4]), x)
    assert y.shape == (2, 16, 4)


@pytest.mark.parametrize("target,shape,message", [
    ([5, 5], (8, 8), "64 values"), ([-1, 5], (8, 8), "not a multiple"),
    ([-1, -1], (8, 8), "at most one -1"), ([4], (None, 4), "fully known")])
def test_reshape_errors(rng, target, shape, message):
    with pytest.raises(ConfigError, match=message):
        make("Reshape", target_shape=target, name="r").build(shape, rng)


def test_permute_and_repeat_vector(rng):
    x = rng.normal(size=(2, 3, 4, 5))
    y = check_layer(make("Permute", dims=[3, 1, 2]), x)
    np.testing.assert_array_equal(y, x.transpose(0, 3, 1, 2))
    with pytest.raises(ConfigError, match="permutation"):
        make("Permute", dims=[1, 3])
    with pytest.raises(ConfigError, match="3 axes"):
        make("Permute", dims=[2, 1]).build((3, 4, 5), rng)
    y = check_layer(make("RepeatVector", n=3), rng.normal(size=(2, 4)))
    assert y.shape == (2, 3, 4) and np.all(y[:, 0] == y[:, 2])
    with pytest.raises(ConfigError, match="rank 2"):
        make("RepeatVector", n=3).build((3, 4), rng)


@pytest.mark.parametrize("padding,expect", [
    (1, ((1, 1), (1, 1))), ([1, 2], ((1, 1), (2, 2))), ([[0, 1], [2, 3]], ((0, 1), (2, 3)))])
def test_zero_padding_and_cropping(rng, padding, expect):
    x = rng.normal(size=(2, 5, 6, 2))
    y = check_layer(make("ZeroPadding2D", padding=padding), x)
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), *expect, (0, 0))))
    y2 = check_layer(make("Cropping2D", cropping=padding), y)
    np.testing.assert_array_equal(y2, x)


def test_cropping_errors(rng):
    with pytest.raises(ConfigError, match="leaves nothing"):
        make("Cropping2D", cropping=[[2, 2], [0, 0]]).build((4, 4, 1), rng)
    with pytest.raises(ConfigError, match="cropping"):
        make("Cropping2D", cropping=[1, 2, 3])


def test_upsampling_nearest_and_bilinear(rng):
    x = rng.normal(size=(2, 3, 4, 2))
    y = check_layer(make("UpSampling2D", size=[2, 3]), x)
    np.testing.assert_array_equal(y, x.repeat(2, axis=1).repeat(3, axis=2))
    y = check_layer(make("UpSampling2D", interpolation="bilinear"), x)
    assert y.shape == (2, 6, 8, 2)
    # TensorFlow's half-pixel bilinear resize of [[0, 1], [2, 3]]
    img = np.arange(4.0).reshape(1, 2, 2, 1)
    out, _ = make("UpSampling2D", interpolation="bilinear").forward(img, False)
    np.testing.assert_allclose(out[0, :, :, 0], [[0, .25, .75, 1], [.5, .75, 1.25, 1.5],
                                                 [1.5, 1.75, 2.25, 2.5], [2, 2.25, 2.75, 3]])
