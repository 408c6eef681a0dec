"""The edge side of DOCL: train a guard on your own images, upload it, check images."""

from imgprivacy.client.service_client import CheckResult, GuardClient, ServiceRequestError
from imgprivacy.client.training import folder_features, train_autoencoder, train_guard

__all__ = [
    "CheckResult",
    "GuardClient",
    "ServiceRequestError",
    "folder_features",
    "train_autoencoder",
    "train_guard",
]
