"""Face identity data sets from the shared data folder, and who plays which role.

Extended Yale B (cropped, 96x84 grey, 38 identities, ~64 images each, illumination only) is split
by identity into three disjoint groups (:class:`IdentitySplit`): the DOCL users, "new"
identities for the acceptance rate (faces the filter must let through), and the identities the
provider trains its face extractor on. AT&T/ORL (40 identities, 10 images each, pose and
expression vary) is a second source of faces of people who are none of these.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from imgprivacy.data.datasets import ImageSet
from imgprivacy.data.paths import data_file
from imgprivacy.errors import CorruptFileError, InvalidInputError

YALEB_FILE = "extended_yaleb_cropped_96x84.npz"
ATT_FILE = "att_faces.npz"
YALEB_SIZE = (96, 84)  # (height, width) of the stored crops


@dataclass(frozen=True)
class IdentitySplit:
    """Disjoint Extended Yale B identities (``subject_index`` 0-37) for each role."""

    users: tuple[int, ...] = tuple(range(10))  # DOCL users, one identity each (64 images each)
    unseen: tuple[int, ...] = tuple(range(10, 16))  # new identities: the acceptance rate
    extractor: tuple[int, ...] = tuple(range(16, 38))  # the provider's face-extractor training

    def __post_init__(self) -> None:
        groups = {"users": self.users, "unseen": self.unseen, "extractor": self.extractor}
        problems = []
        for name, ids in groups.items():
            if not ids or any(not 0 <= i < 38 for i in ids):
                problems.append(f"{name} must be non-empty identities in 0..37, got {ids!r}")
        names = list(groups)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                shared = sorted(set(groups[a]) & set(groups[b]))
                if shared:
                    problems.append(f"{a} and {b} share identities {shared}")
        if problems:
            raise InvalidInputError([f"Invalid IdentitySplit: {p}" for p in problems])


def _read(filename: str, names: tuple[str, ...], data_dir) -> dict[str, np.ndarray]:
    path = data_file(filename, data_dir)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: np.array(archive[name]) for name in names}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(
            f"Could not read arrays {list(names)} from {path}: {exc}. "
            "Replace the file with an intact copy (see the data README for its sha256)."
        ) from exc


def load_yaleb(*, data_dir: str | os.PathLike | None = None) -> ImageSet:
    """Extended Yale B: uint8 (2414, 96, 84) grey faces, labels = identity 0-37."""
    arrays = _read(YALEB_FILE, ("images", "subject_index"), data_dir)
    return ImageSet(arrays["images"], arrays["subject_index"].astype(np.int64), YALEB_FILE)


def load_att_faces(*, data_dir: str | os.PathLike | None = None) -> ImageSet:
    """AT&T/ORL faces: uint8 (400, 112, 92) grey, labels = identity 0-39."""
    arrays = _read(ATT_FILE, ("images", "subject"), data_dir)
    return ImageSet(arrays["images"], arrays["subject"].astype(np.int64) - 1, ATT_FILE)


def identities(faces: ImageSet, ids: tuple[int, ...]) -> ImageSet:
    """The images of the identities ``ids``."""
    return faces.where(np.isin(faces.labels, ids))
