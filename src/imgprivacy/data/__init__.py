"""Data readers: the shared data sets and a user's own image folders."""

from imgprivacy.data.datasets import ImageSet, load_fashion_mnist, load_mnist
from imgprivacy.data.folder import list_images, load_image, load_image_folder, load_images
from imgprivacy.data.manifest import LabelledImages, load_att_labelled, read_manifest
from imgprivacy.data.negatives import public_negative_images
from imgprivacy.data.paths import DATA_ENV_VAR, data_file, resolve_data_dir
from imgprivacy.data.pendigits import PenDigits, RenderConfig, load_pendigits, render_trajectory
from imgprivacy.data.synthetic.ferg_like import (
    FERG_VARIATIONS,
    FergLike,
    FergLikeConfig,
    generate_ferg_like,
)

__all__ = [
    "DATA_ENV_VAR",
    "FERG_VARIATIONS",
    "FergLike",
    "FergLikeConfig",
    "ImageSet",
    "LabelledImages",
    "PenDigits",
    "RenderConfig",
    "data_file",
    "generate_ferg_like",
    "load_att_labelled",
    "list_images",
    "load_fashion_mnist",
    "load_image",
    "load_image_folder",
    "load_images",
    "load_mnist",
    "load_pendigits",
    "public_negative_images",
    "read_manifest",
    "render_trajectory",
    "resolve_data_dir",
]
