import numpy as np
import pytest
import torch

from imgprivacy.errors import InvalidInputError, UnknownNameError
from imgprivacy.features import get_extractor


def test_pixels_scale_to_unit_interval():
    extractor = get_extractor("pixels")
    images = np.full((2, 28, 28), 255, np.uint8)
    features = extractor.transform(images)
    assert features.shape == (2, 784) and features.dtype == torch.float32
    assert torch.all(features == 1.0)


def test_unknown_extractor_lists_valid_names():
    with pytest.raises(
        UnknownNameError, match="Unknown feature extractor 'sift'. Valid names: "
    ) as info:
        get_extractor("sift")
    assert "pixels" in str(info.value) and "pixels-smooth" in str(info.value)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((28, 28), np.uint8), r"images\[None\]"),
        (np.zeros((2, 32, 32), np.uint8), r"\(N, 28, 28\), got \(2, 32, 32\)"),
        (np.full((1, 28, 28), 2.0), r"in \[0, 1\]"),
        (np.full((1, 28, 28), np.nan), "finite"),
        (np.zeros((1, 28, 28), np.int32), "dtype"),
    ],
)
def test_pixels_reject_bad_images(images, match):
    with pytest.raises(InvalidInputError, match=match):
        get_extractor("pixels").transform(images)
