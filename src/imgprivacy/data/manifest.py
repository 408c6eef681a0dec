"""Bring-your-own doubly-labelled images: a folder of images plus a CSV manifest.

The manifest has a header line with a ``path`` column (relative to the manifest's folder, or
absolute) and one column per label, for example::

    path,identity,expression
    faces/0001.png,alice,joy
    faces/0002.png,bob,anger

The caller picks the private label column (what the anonymizer must hide) and, optionally, the
utility label column (what must survive, used only to assess) by name. Label values are mapped to
integer codes 0..K-1 (numerically sorted when every value is an integer, else sorted as text); the
mapping is kept in :class:`LabelledImages`. Images of any size are converted to the model's grey
(``mode="L"``) or colour (``mode="RGB"``) input size with :func:`~imgprivacy.data.folder.load_images`.

:func:`load_att_labelled` gives the AT&T faces from the shared data folder in the same form, with
the identity only: the single-label path.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgprivacy.data.faces import load_att_faces
from imgprivacy.data.folder import load_images
from imgprivacy.errors import DataNotFoundError, InvalidInputError, UnknownNameError

PATH_COLUMN = "path"
SHOWN_MISSING = 5  # how many missing files an error lists before "and N more"


@dataclass(frozen=True)
class LabelledImages:
    """Images with a private label and, when the data has one, a utility label.

    ``images`` is uint8 (N, H, W) grey or (N, H, W, 3) colour; ``private`` and ``utility`` are
    int64 (N,) codes; ``private_classes[k]`` is the original value of code k (same for utility).
    ``utility`` and its name and classes are None for single-label data.
    """

    images: np.ndarray
    private: np.ndarray
    utility: np.ndarray | None
    private_name: str
    utility_name: str | None
    private_classes: tuple[str, ...]
    utility_classes: tuple[str, ...] | None
    source: str  # where the data came from (manifest path or data set file)

    def __len__(self) -> int:
        return len(self.private)


def encode_values(values: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map label values to codes 0..K-1; returns (codes (N,) int64, classes).

    Examples
    --------
    >>> codes, classes = encode_values(["10", "9", "10"])
    >>> codes.tolist(), classes
    ([1, 0, 1], ('9', '10'))
    """
    unique = set(values)
    try:
        classes = tuple(sorted(unique, key=int))
    except ValueError:
        classes = tuple(sorted(unique))
    index = {value: code for code, value in enumerate(classes)}
    return np.array([index[v] for v in values], dtype=np.int64), classes


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = [c.strip() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(
            f"Could not read the manifest {path} as UTF-8 CSV ({exc}). "
            "Save it as a comma-separated text file with a header line."
        ) from exc
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]
    return columns, rows


def _check_columns(
    columns: list[str], *, path: Path, private_label: str, utility_label: str | None
) -> None:
    if PATH_COLUMN not in columns:
        raise InvalidInputError(
            f"Expected a {PATH_COLUMN!r} column in the manifest {path}, got columns {columns}. "
            f"Add a header line such as 'path,{private_label}' naming each image's file."
        )
    labels = [c for c in columns if c != PATH_COLUMN]
    wanted = [private_label] if utility_label is None else [private_label, utility_label]
    if utility_label is not None and utility_label == private_label:
        raise InvalidInputError(
            f"Expected different private and utility label columns, got {private_label!r} for "
            "both. Pick another utility column, or none for single-label data."
        )
    if utility_label is not None and len(labels) == 1 and labels[0] in wanted:
        raise InvalidInputError(
            f"Expected two label columns ({private_label!r} and {utility_label!r}), but the "
            f"manifest {path} has one label column, {labels[0]!r}. Add a {utility_label!r} "
            "column, or ask for no utility label (omit --utility-label) to use it single-label."
        )
    unknown = [name for name in wanted if name not in labels]
    if unknown:
        raise UnknownNameError(
            f"Unknown label column(s) {unknown} in the manifest {path}; "
            f"available label columns: {labels}. Pass one of those names."
        )


def read_manifest(
    manifest: str | os.PathLike,
    *,
    private_label: str,
    utility_label: str | None = None,
    size: tuple[int, int] = (50, 50),
    mode: str = "L",
    root: str | os.PathLike | None = None,
) -> LabelledImages:
    """Read the images and labels a CSV manifest lists.

    Parameters
    ----------
    manifest
        The CSV file: a ``path`` column plus label columns.
    private_label, utility_label
        Names of the label columns to use; ``utility_label=None`` reads single-label data.
    size
        (height, width) every image is resized to.
    mode
        ``"L"`` for grey (N, H, W) or ``"RGB"`` for colour (N, H, W, 3).
    root
        Folder that relative paths start from; the manifest's folder by default.

    Raises
    ------
    DataNotFoundError
        When the manifest, or any file it names, does not exist (a few are listed, with the count).
    InvalidInputError
        For a manifest without a ``path`` column, without rows, with empty cells, or with a single
        label column when two were asked for.
    UnknownNameError
        For a label column the manifest does not have (the available ones are listed).
    CorruptFileError
        For a file that cannot be decoded as an image (the file is named).
    """
    path = Path(manifest)
    if not path.is_file():
        raise DataNotFoundError(
            f"Expected a CSV manifest at {path}, but there is no such file. Create it with a "
            f"header line such as 'path,{private_label}' and one line per image."
        )
    columns, rows = _read_rows(path)
    _check_columns(columns, path=path, private_label=private_label, utility_label=utility_label)
    if not rows:
        raise InvalidInputError(
            f"Expected at least one image in the manifest {path}, got only its header line."
        )
    used = [PATH_COLUMN, private_label] + ([utility_label] if utility_label else [])
    empty = [(i + 2, c) for i, row in enumerate(rows) for c in used if not row.get(c)]
    if empty:
        shown = ", ".join(f"line {line} ({column})" for line, column in empty[:SHOWN_MISSING])
        more = f" and {len(empty) - SHOWN_MISSING} more" if len(empty) > SHOWN_MISSING else ""
        raise InvalidInputError(
            f"Expected a value in every used cell of {path}, got {len(empty)} empty: "
            f"{shown}{more}. Fill them in or remove those lines."
        )
    base = Path(root) if root is not None else path.parent
    files = [base / row[PATH_COLUMN] for row in rows]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        more = f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
        raise DataNotFoundError(
            f"Expected every file the manifest {path} names to exist, but {len(missing)} of "
            f"{len(files)} do not: {', '.join(missing[:SHOWN_MISSING])}{more}. Paths are relative "
            f"to {base}; fix the 'path' column or copy the files there."
        )
    images = load_images(files, size=size, mode=mode)
    private, private_classes = encode_values([row[private_label] for row in rows])
    utility, utility_classes = (None, None)
    if utility_label is not None:
        utility, utility_classes = encode_values([row[utility_label] for row in rows])
    return LabelledImages(
        images=images,
        private=private,
        utility=utility,
        private_name=private_label,
        utility_name=utility_label,
        private_classes=private_classes,
        utility_classes=utility_classes,
        source=str(path),
    )


def _square_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop the centred square of a grey (H, W) image, then resize it to ``size`` (bilinear)."""
    height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(image[top : top + side, left : left + side])
    return np.asarray(square.resize(size[::-1], Image.Resampling.BILINEAR), dtype=np.uint8)


def load_att_labelled(
    *, data_dir: str | os.PathLike | None = None, size: tuple[int, int] = (50, 50)
) -> LabelledImages:
    """AT&T/ORL faces (40 people x 10 images), identity only: the single-label path.

    The 112x92 photographs are cropped to their centred 92x92 square (no distortion) and resized
    to ``size``. ``private`` is the subject 0-39 (classes ``"s1"``..``"s40"``, the folder names).

    Raises
    ------
    DataNotFoundError
        When ``att_faces.npz`` is not in the data folder (see ``imgprivacy.data.paths``).
    """
    faces = load_att_faces(data_dir=data_dir)
    images = np.stack([_square_resize(image, size) for image in faces.images])
    n_subjects = int(faces.labels.max()) + 1
    return LabelledImages(
        images=images,
        private=faces.labels.astype(np.int64),
        utility=None,
        private_name="identity",
        utility_name=None,
        private_classes=tuple(f"s{k + 1}" for k in range(n_subjects)),
        utility_classes=None,
        source=faces.name,
    )
