"""Distributed One-Class Learning: per-user autoencoders, the all-users bank and the Guard.

``OneClassAutoencoderDetector`` (the scikit-learn estimator) is imported on first use, so importing
this package (the service, the edge client) does not pay for importing scikit-learn.
"""

from imgprivacy.docl.autoencoder import OneClassAutoencoder, TrainHistory
from imgprivacy.docl.bank import BankEntry, BankScores, FilterBank
from imgprivacy.docl.claims import POLICIES
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.guard import Decision, Guard
from imgprivacy.docl.persistence import (
    autoencoder_from_bytes,
    autoencoder_to_bytes,
    load_autoencoder,
    save_autoencoder,
)

__all__ = [
    "POLICIES",
    "AutoencoderConfig",
    "BankEntry",
    "BankScores",
    "Decision",
    "FilterBank",
    "Guard",
    "OneClassAutoencoder",
    "OneClassAutoencoderDetector",
    "TrainHistory",
    "autoencoder_from_bytes",
    "autoencoder_to_bytes",
    "load_autoencoder",
    "save_autoencoder",
]


def __getattr__(name: str):
    if name == "OneClassAutoencoderDetector":
        from imgprivacy.docl.detector import OneClassAutoencoderDetector

        return OneClassAutoencoderDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
