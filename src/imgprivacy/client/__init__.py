"""The edge side of DOCL: train a guard on your own images, upload it, check images.

Importing :class:`GuardClient` does not import torch: the training functions
(:func:`train_guard`, :func:`train_autoencoder`, :func:`folder_features`,
:func:`negative_features`) are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgprivacy.client.model_file import check_guard_bytes
from imgprivacy.client.service_client import CheckResult, GuardClient, ServiceRequestError

if TYPE_CHECKING:
    from imgprivacy.client.training import (
        folder_features,
        negative_features,
        train_autoencoder,
        train_guard,
    )

_TRAINING = ("folder_features", "negative_features", "train_autoencoder", "train_guard")


def __getattr__(name: str):
    if name in _TRAINING:
        from imgprivacy.client import training

        return getattr(training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CheckResult",
    "GuardClient",
    "ServiceRequestError",
    "check_guard_bytes",
    "folder_features",
    "negative_features",
    "train_autoencoder",
    "train_guard",
]
