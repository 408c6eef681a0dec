"""Train a guard on the user's own machine: images -> features -> one-class autoencoder.

Training is :meth:`OneClassAutoencoder.fit`, resumable through its checkpoint: a run that is
interrupted and started again with the same images and config continues from the last finished
epoch and ends with exactly the model an uninterrupted run gives. With a privacy budget
(``privacy=PrivacyBudget(epsilon=...)``) training is differentially private (DP-SGD) and starts
over when interrupted: a resumed DP run would spend its budget twice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from imgprivacy.client.model_file import check_guard_bytes
from imgprivacy.data import load_image_folder, public_negative_images
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
from imgprivacy.docl.defaults import DEFAULT_FEATURE_EXTRACTOR
from imgprivacy.docl.private_budget import PrivacyBudget
from imgprivacy.errors import CorruptFileError, DataNotFoundError, InvalidInputError
from imgprivacy.features import get_extractor
from imgprivacy.fileio import write_atomic
from imgprivacy.progress import ProgressFactory

logger = logging.getLogger(__name__)


def folder_features(
    folder: str | os.PathLike, *, feature_extractor: str = DEFAULT_FEATURE_EXTRACTOR
) -> torch.Tensor:
    """(K, D) features of every image in ``folder`` (sorted by file name)."""
    extractor = get_extractor(feature_extractor)
    images = load_image_folder(folder, size=extractor.input_size, mode=extractor.mode)
    return extractor.transform(images)


def negative_features(
    *, feature_extractor: str = DEFAULT_FEATURE_EXTRACTOR, data_dir: str | os.PathLike | None = None
) -> torch.Tensor:
    """The provider's public negative set (:func:`imgprivacy.data.public_negative_images`) as
    features of ``feature_extractor``, for training with ``negative_weight > 0``.

    Raises
    ------
    DataNotFoundError, CorruptFileError
        When Fashion-MNIST (``fashion_mnist.npz``, whose training images the set is drawn from)
        is missing or unreadable in the data folder; the message says where it was looked for
        and how to train without the set.
    """
    extractor = get_extractor(feature_extractor)
    try:
        images = public_negative_images(data_dir=data_dir)
    except (DataNotFoundError, CorruptFileError) as exc:
        raise type(exc)(
            "Training against the provider's public negative set (negative_weight > 0, the "
            f"default of `imgprivacy guard train` for {DEFAULT_FEATURE_EXTRACTOR}) needs "
            f"Fashion-MNIST's training images, which could not be loaded: {exc} Or train on "
            "your images only: `imgprivacy guard train --negative-weight 0` "
            "(train_guard(config=config.replace(negative_weight=0)))."
        ) from exc
    if extractor.mode != "L" or tuple(extractor.input_size) != images.shape[1:]:
        from PIL import Image

        height, width = extractor.input_size
        images = np.stack(
            [
                np.asarray(Image.fromarray(image).convert(extractor.mode).resize((width, height)))
                for image in images
            ]
        )
    return extractor.transform(images)


def train_autoencoder(
    x: np.ndarray | torch.Tensor,
    *,
    config: AutoencoderConfig,
    negatives: torch.Tensor | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    progress: ProgressFactory | None = None,
    privacy: PrivacyBudget | None = None,
    device: str = "cpu",
) -> OneClassAutoencoder:
    """Fit a one-class autoencoder on features ``x`` (K, D), resumable through ``checkpoint``;
    ``negatives`` are the public negative set's features when ``config.negative_weight > 0``.

    With ``checkpoint`` the training state is saved there after every epoch and, with
    ``resume``, an existing checkpoint of the same features and config is continued. With
    ``privacy`` the training is differentially private and not checkpointed (``checkpoint`` is
    ignored).

    Raises
    ------
    InvalidInputError
        For a wrong feature shape or range, fewer than 2 images, or a checkpoint written for
        other features or another config.
    CorruptFileError
        For an unreadable checkpoint (start over with ``resume=False``).
    """
    if privacy is not None:
        return OneClassAutoencoder(config, device=device).fit(
            x, negatives=negatives, progress=progress, privacy=privacy
        )
    return OneClassAutoencoder(config, device=device).fit(
        x,
        negatives=negatives,
        checkpoint=checkpoint,
        resume=resume and checkpoint is not None,
        progress=progress,
    )


def train_guard(
    images: str | os.PathLike,
    *,
    out: str | os.PathLike,
    config: AutoencoderConfig | None = None,
    resume: bool = True,
    progress: ProgressFactory | None = None,
    privacy: PrivacyBudget | None = None,
    device: str = "cpu",
    data_dir: str | os.PathLike | None = None,
) -> OneClassAutoencoder:
    """Train on the images in folder ``images`` and save the guard to ``out`` (.safetensors).

    Training checkpoints to ``<out>.ckpt`` after every epoch; with ``resume`` an interrupted run
    continues from it, without it starts over. The checkpoint is removed at the end. With
    ``privacy`` the training is differentially private (no checkpoint; the file records epsilon
    and delta). With ``config.negative_weight > 0`` it trains against the provider's public
    negative set (:func:`negative_features`, read from ``data_dir``, default
    ``IMGPRIVACY_DATA``: it must hold Fashion-MNIST). The default ``config`` is
    ``AutoencoderConfig.for_edge()``: the default extractor's model, trained against that set
    (without it when ``privacy`` is given: DP training does not support the set); pass
    ``config=AutoencoderConfig.for_edge(negative_weight=0)`` to train on the images only.

    Raises
    ------
    InvalidInputError
        When the trained guard would be refused by the service (sigma = 0 because the images
        are identical, or non-finite weights); nothing is written then.
    DataNotFoundError, CorruptFileError
        When the config trains against the negative set and Fashion-MNIST cannot be loaded
        (before anything is trained).
    """
    if config is None:
        config = AutoencoderConfig.for_edge(**({} if privacy is None else {"negative_weight": 0.0}))
    features = folder_features(images, feature_extractor=config.feature_extractor)
    config = config.replace(input_dim=int(features.shape[1]))
    out = Path(out)
    checkpoint = out.with_name(out.name + ".ckpt")
    negatives = None
    if config.negative_weight > 0:
        negatives = negative_features(feature_extractor=config.feature_extractor, data_dir=data_dir)
    model = train_autoencoder(
        features,
        config=config,
        negatives=negatives,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        privacy=privacy,
        device=device,
    )
    data = autoencoder_to_bytes(model)
    try:
        check_guard_bytes(data, source=f"refusing to write {out}")
    except InvalidInputError:
        checkpoint.unlink(missing_ok=True)  # the run is over: resuming it gives the same model
        raise
    write_atomic(out, data)
    checkpoint.unlink(missing_ok=True)
    logger.info(
        "trained a guard on %d images: mu=%.4g sigma=%.4g -> %s",
        len(features),
        model.error_mean_,
        model.error_std_,
        out,
    )
    return model
