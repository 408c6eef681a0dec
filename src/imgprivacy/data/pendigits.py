"""Pen-digits (UCI, Alpaydin & Alimoglu): raw pen trajectories rendered to 20x20 grey images.

Drawing procedure (the paper only says the pen movements are "drawn" and "down-sampled"):

1. the digit's points are split into pen-down strokes at ``stroke_start``;
2. the bounding box of all points is scaled, aspect ratio kept, so that its longer side spans
   ``box`` pixels (16 by default) of the ``size`` x ``size`` image (20x20), centred; y is flipped
   (tablet y points up, image rows point down);
3. every stroke is drawn as a polyline ``line_width`` pixels wide (1.6) with round joints, white on
   black, on a canvas ``supersample`` times larger (8x), with PIL;
4. the canvas is box-filtered down to ``size`` x ``size`` (each output pixel is the mean ink of its
   8x8 block), which gives anti-aliased grey levels.

This is the recipe the data README gives for the file's ``images20`` array, re-implemented here from
the trajectories; :func:`load_pendigits` can return either for cross-checking.

The experiment split of the paper (sec. 3) uses only the 30 writers of ``pendigits-orig.tra`` and
splits their 7,494 digits at random into 5,494 / 1,000 / 1,000 images for training / validation /
test, so all three share the same writers.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from imgprivacy.data.paths import data_file
from imgprivacy.errors import CorruptFileError, InvalidInputError

PENDIGITS_FILE = "pendigits_orig.npz"
SPLIT_NAMES = ("train", "validation", "test")  # the codes 0 / 1 / 2 of ``PenDigits.split``
PAPER_SPLIT_SIZES = (5494, 1000, 1000)  # sec. 3 of Feutry et al. (ICASSP 2020)
N_WRITERS = 30  # writers of the .tra file, the only ones the paper uses


@dataclass(frozen=True)
class RenderConfig:
    """How a pen trajectory becomes a grey image (see the module docstring)."""

    size: int = 20  # output height = width in pixels
    box: float = 16.0  # the longer side of the digit's bounding box spans this many pixels
    line_width: float = 1.6  # stroke width in output pixels
    supersample: int = 8  # drawing canvas is this many times larger, then box-downsampled

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.size, int) and self.size >= 4):
            problems.append(f"size must be an integer >= 4, got {self.size!r}")
        if not (0 < self.box <= self.size):
            problems.append(f"box must be in (0, size={self.size}], got {self.box!r}")
        if not self.line_width > 0:
            problems.append(f"line_width must be > 0, got {self.line_width!r}")
        if not (isinstance(self.supersample, int) and self.supersample >= 1):
            problems.append(f"supersample must be a positive integer, got {self.supersample!r}")
        if problems:
            raise InvalidInputError([f"Invalid RenderConfig: {p}" for p in problems])


@dataclass(frozen=True)
class PenDigits:
    """Pen-digit images with both labels and the experiment split.

    ``images`` is uint8 (N, 20, 20), white ink on black; ``writer`` is 0..29 (the private label),
    ``digit`` 0..9 (the utility label, never shown to the anonymizer), ``split`` 0 / 1 / 2 =
    train / validation / test.
    """

    images: np.ndarray
    digit: np.ndarray
    writer: np.ndarray
    split: np.ndarray

    def __len__(self) -> int:
        return len(self.digit)

    def part(self, name: str) -> PenDigits:
        """The ``"train"``, ``"validation"`` or ``"test"`` images."""
        if name not in SPLIT_NAMES:
            raise InvalidInputError(f"Expected a split name in {SPLIT_NAMES}, got {name!r}.")
        mask = self.split == SPLIT_NAMES.index(name)
        return PenDigits(self.images[mask], self.digit[mask], self.writer[mask], self.split[mask])


def render_trajectory(
    points: np.ndarray, stroke_start: np.ndarray, config: RenderConfig | None = None
) -> np.ndarray:
    """Draw one digit's pen trajectory as a uint8 (size, size) image.

    Parameters
    ----------
    points
        (P, 2) tablet coordinates (x, y) with y pointing up.
    stroke_start
        (P,) bool, True at the first point of each pen-down stroke.
    config
        Drawing parameters; ``RenderConfig()`` by default.

    Raises
    ------
    InvalidInputError
        For an empty trajectory or mismatched shapes.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.array([[0, 0], [0, 100]])  # a vertical bar
    >>> image = render_trajectory(pts, np.array([True, False]))
    >>> image.shape, image.dtype, int(image[10, 10]) > 200, int(image[10, 2])
    ((20, 20), dtype('uint8'), True, 0)
    """
    cfg = config or RenderConfig()
    points = np.asarray(points, dtype=np.float64)
    stroke_start = np.asarray(stroke_start, dtype=bool)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise InvalidInputError(f"Expected points of shape (P, 2) with P >= 1, got {points.shape}.")
    if stroke_start.shape != (len(points),):
        raise InvalidInputError(
            f"Expected stroke_start of shape ({len(points)},), got {stroke_start.shape}."
        )
    scale_up = cfg.supersample
    canvas_size = cfg.size * scale_up
    low, high = points.min(axis=0), points.max(axis=0)
    extent = max(float((high - low).max()), 1e-9)
    scale = cfg.box * scale_up / extent
    centre = (low + high) / 2.0
    xy = (points - centre) * scale
    xy[:, 1] = -xy[:, 1]  # tablet y points up, image rows point down
    xy += canvas_size / 2.0
    canvas = Image.new("L", (canvas_size, canvas_size), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(cfg.line_width * scale_up))
    starts = np.flatnonzero(stroke_start).tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    for begin, end in zip(starts, [*starts[1:], len(xy)]):
        stroke = [tuple(p) for p in xy[begin:end].tolist()]
        if len(stroke) == 1:
            stroke = stroke * 2
        draw.line(stroke, fill=255, width=width, joint="curve")
        for x, y in (stroke[0], stroke[-1]):  # round caps
            r = width / 2.0
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    small = canvas.reduce(scale_up)  # box filter: the mean of each block
    return np.asarray(small, dtype=np.uint8)


def experiment_split(
    n: int, *, sizes: tuple[int, int, int] = PAPER_SPLIT_SIZES, seed: int = 0
) -> np.ndarray:
    """Split codes 0/1/2 (train/validation/test) for ``n`` items, at random with ``seed``.

    The validation and test parts have exactly ``sizes[1]`` and ``sizes[2]`` items; the training
    part has the rest (``sizes[0]`` when ``n == sum(sizes)``).
    """
    if sizes[1] + sizes[2] >= n:
        raise InvalidInputError(
            f"Expected validation + test sizes {sizes[1:]} to leave training images out of {n}."
        )
    order = np.random.default_rng(seed).permutation(n)
    codes = np.zeros(n, dtype=np.uint8)
    codes[order[n - sizes[1] - sizes[2] : n - sizes[2]]] = 1
    codes[order[n - sizes[2] :]] = 2
    return codes


def load_pendigits(
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    render: RenderConfig | None = None,
    use_file_renderings: bool = False,
) -> PenDigits:
    """The paper's pen-digits experiment data: 30 writers, 5494 / 1000 / 1000 images.

    Parameters
    ----------
    data_dir
        Folder holding ``pendigits_orig.npz`` (``--data-dir`` / ``$IMGPRIVACY_DATA`` / default).
    seed
        Seed of the random train / validation / test split.
    render
        Drawing parameters (see :class:`RenderConfig`).
    use_file_renderings
        Return the file's ``images20`` convenience renderings instead of drawing (cross-check).

    Raises
    ------
    DataNotFoundError
        When the file is not in the data folder.
    CorruptFileError
        When it lacks the expected arrays.
    """
    path = data_file(PENDIGITS_FILE, data_dir)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        keep = np.flatnonzero(arrays["split"] == 0)
        writer = arrays["writer"][keep].astype(np.int64) - 1
        digit = arrays["digit"][keep].astype(np.int64)
        offsets = arrays["point_offsets"]
        points, stroke_start = arrays["points"], arrays["stroke_start"]
        file_images = arrays["images20"][keep]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(
            f"Could not read the pen-digits arrays from {path}: {exc}. Replace the file with an "
            "intact copy (see the data README for its sha256)."
        ) from exc
    if use_file_renderings:
        images = file_images
    else:
        images = np.stack(
            [
                render_trajectory(
                    points[offsets[i] : offsets[i + 1]],
                    stroke_start[offsets[i] : offsets[i + 1]],
                    render,
                )
                for i in keep
            ]
        )
    return PenDigits(
        images=images,
        digit=digit,
        writer=writer,
        split=experiment_split(len(keep), seed=seed),
    )
