"""The ResNet-20 port against the accuracy recorded for the shared weights (data README sec. 8)."""

from __future__ import annotations

import pytest

from imgprivacy.data.cifar10 import load_cifar10
from imgprivacy.features.resnet20 import load_resnet20, predict

pytestmark = pytest.mark.slow


def test_resnet20_port_matches_the_recorded_accuracy(data_dir):
    test = load_cifar10("test", data_dir=data_dir)
    accuracy = float((predict(load_resnet20(data_dir), test.images) == test.labels).mean())
    assert abs(accuracy - 0.915) <= 0.002  # 91.5% on the lossless first 1000 test images
    train = load_cifar10("train", data_dir=data_dir).where(slice(0, 500))
    assert float((predict(load_resnet20(data_dir), train.images) == train.labels).mean()) >= 0.99
