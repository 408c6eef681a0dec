"""Feature extractors by name: ``get_extractor("pixels")``.

``pixels`` / ``pixels-smooth`` (MNIST-sized images), ``resnet20-cifar`` (the pretrained CIFAR-10
ResNet-20, 64-d), ``resnet-pair-cifar`` (ResNet-20 averaged over the mirror image beside
ResNet-56, 128-d) and ``faces-cnn`` (the provider's face CNN, 256-d; trained with
``imgprivacy features train-face-extractor``). Every extractor returns features in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

from imgprivacy.errors import UnknownNameError
from imgprivacy.features.base import FeatureExtractor
from imgprivacy.features.faces import FaceCNNFeatures
from imgprivacy.features.pixels import PixelFeatures
from imgprivacy.features.resnet20 import ResNet20Features
from imgprivacy.features.resnet_pair import ResNetPairFeatures
from imgprivacy.features.smooth import SmoothPixelFeatures

FEATURES: dict[str, Callable[[], FeatureExtractor]] = {
    "pixels": PixelFeatures,
    "pixels-smooth": SmoothPixelFeatures,
    "resnet20-cifar": ResNet20Features,
    "resnet-pair-cifar": ResNetPairFeatures,
    "faces-cnn": FaceCNNFeatures,
}


def get_extractor(name: str) -> FeatureExtractor:
    """The registered extractor called ``name``.

    Raises
    ------
    UnknownNameError
        Listing the registered names when ``name`` is not one of them.
    """
    try:
        factory = FEATURES[name]
    except KeyError:
        raise UnknownNameError(
            f"Unknown feature extractor {name!r}. Valid names: {', '.join(sorted(FEATURES))}."
        ) from None
    return factory()


__all__ = [
    "FEATURES",
    "FaceCNNFeatures",
    "FeatureExtractor",
    "PixelFeatures",
    "ResNet20Features",
    "ResNetPairFeatures",
    "SmoothPixelFeatures",
    "get_extractor",
]
