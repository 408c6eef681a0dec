import numpy as np
import pytest

from imgprivacy.anonymizer.evaluate import AttackConfig, assess
from imgprivacy.data.pendigits import RenderConfig, experiment_split, render_trajectory
from imgprivacy.errors import InvalidInputError, UnknownNameError


def test_render_draws_strokes_separately_and_flips_y():
    # an "L": a vertical stroke, then a separate horizontal stroke at the bottom (y = 0 is low)
    points = np.array([[0, 100], [0, 0], [10, 0], [60, 0]])
    image = render_trajectory(points, np.array([True, False, True, False]))
    assert image.shape == (20, 20) and image.dtype == np.uint8
    assert image[17, 10] > 100  # the bottom bar is drawn at the bottom of the image
    assert image[3, 10] == 0  # no top bar
    assert image[2:18, 4:8].max() > 200  # the vertical stroke on the left
    assert image[0].max() == 0 and image[:, -1].max() == 0  # margins of the 16-px box
    # the pen-up gap between (0, 0) and (10, 0) is not drawn: one stroke per pen-down
    joined = render_trajectory(points, np.array([True, False, False, False]))
    assert joined.sum() >= image.sum()


def test_render_rejects_bad_input():
    with pytest.raises(InvalidInputError, match=r"\(P, 2\)"):
        render_trajectory(np.zeros((0, 2)), np.zeros(0, bool))
    with pytest.raises(InvalidInputError, match="stroke_start"):
        render_trajectory(np.zeros((3, 2)), np.zeros(2, bool))
    with pytest.raises(InvalidInputError, match="box"):
        RenderConfig(box=30)


def test_experiment_split_sizes_and_seed():
    codes = experiment_split(7494, seed=1)
    assert np.bincount(codes).tolist() == [5494, 1000, 1000]
    assert np.array_equal(codes, experiment_split(7494, seed=1))
    assert not np.array_equal(codes, experiment_split(7494, seed=2))


def test_attackers_recover_an_obvious_label_and_not_a_random_one():
    rng = np.random.default_rng(0)
    n = 240
    label = np.arange(n) % 3
    images = rng.integers(0, 40, size=(n, 6, 6)).astype(np.uint8)
    images[np.arange(n), label, 0] = 255  # the label is written in one pixel
    noise_label = rng.integers(0, 3, n)
    split = np.tile([0, 0, 0, 0, 1, 2], n // 6)
    config = AttackConfig(cnn_epochs=15, cnn_channels=4, trees=30)
    result = assess(images, writer=noise_label, digit=label, split=split, config=config)
    assert result.digit.per_family["random_forest"] == 1.0
    assert result.digit.best >= 0.9
    assert result.writer.best < 0.7
    assert set(result.to_dict()["writer_accuracy_by_family"]) == {"cnn", "random_forest"}


def test_unknown_attacker_lists_valid_names():
    with pytest.raises(UnknownNameError, match="valid names.*random_forest"):
        AttackConfig(families=("svm",))
