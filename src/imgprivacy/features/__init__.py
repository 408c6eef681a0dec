"""Feature extractors by name: ``get_extractor("pixels")``."""

from __future__ import annotations

from collections.abc import Callable

from imgprivacy.errors import UnknownNameError
from imgprivacy.features.base import FeatureExtractor
from imgprivacy.features.pixels import PixelFeatures
from imgprivacy.features.smooth import SmoothPixelFeatures

FEATURES: dict[str, Callable[[], FeatureExtractor]] = {
    "pixels": PixelFeatures,
    "pixels-smooth": SmoothPixelFeatures,
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


__all__ = ["FEATURES", "FeatureExtractor", "PixelFeatures", "SmoothPixelFeatures", "get_extractor"]
