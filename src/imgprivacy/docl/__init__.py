"""Distributed One-Class Learning: per-user autoencoders, the all-users bank and the Guard."""

from imgprivacy.docl.autoencoder import OneClassAutoencoder, TrainHistory
from imgprivacy.docl.bank import BankEntry, BankScores, FilterBank
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.guard import POLICIES, Decision, Guard
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
    "TrainHistory",
    "autoencoder_from_bytes",
    "autoencoder_to_bytes",
    "load_autoencoder",
    "save_autoencoder",
]
