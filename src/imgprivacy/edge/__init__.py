"""The edge side of DOCL: train a guard on your own images, upload it, check images."""

from imgprivacy.edge.client import CheckResult, GuardClient, ServiceRequestError
from imgprivacy.edge.training import folder_features, train_autoencoder, train_guard

__all__ = [
    "CheckResult",
    "GuardClient",
    "ServiceRequestError",
    "folder_features",
    "train_autoencoder",
    "train_guard",
]
