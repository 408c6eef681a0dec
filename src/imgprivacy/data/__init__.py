"""Data readers: the shared data sets and a user's own image folders."""

from imgprivacy.data.datasets import ImageSet, load_fashion_mnist, load_mnist
from imgprivacy.data.folder import list_images, load_image, load_image_folder, load_images
from imgprivacy.data.paths import DATA_ENV_VAR, data_file, resolve_data_dir
from imgprivacy.data.pendigits import PenDigits, RenderConfig, load_pendigits, render_trajectory

__all__ = [
    "DATA_ENV_VAR",
    "ImageSet",
    "PenDigits",
    "RenderConfig",
    "data_file",
    "list_images",
    "load_fashion_mnist",
    "load_image",
    "load_image_folder",
    "load_images",
    "load_mnist",
    "load_pendigits",
    "render_trajectory",
    "resolve_data_dir",
]
