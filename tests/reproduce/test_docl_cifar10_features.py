"""The CIFAR-10 reproduction's extractor: the ResNet pair by default, the ResNet-20 on request."""

from __future__ import annotations

from imgprivacy.reproduce.docl_cifar10 import FEATURES, configurations


def test_default_models_read_the_128_d_resnet_pair():
    assert FEATURES == "resnet-pair-cifar"
    configs = configurations()
    assert configs["default"].input_dim == 128
    assert configs["default"].layer_widths == (256,) and configs["default"].epochs == 15
    assert {c.feature_extractor for c in configs.values()} == {"resnet-pair-cifar"}
    single = configurations("resnet20-cifar")
    assert single["default"].input_dim == 64
    assert single["paper_faithful"].feature_extractor == "resnet20-cifar"
