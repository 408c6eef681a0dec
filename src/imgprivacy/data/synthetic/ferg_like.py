"""FERG-like faces: a seeded generator of stylized grey faces, 6 characters x 7 expressions.

FERG (Aneja et al., ACCV 2016; used by Feutry et al., ICASSP 2020, sec. 3) holds 55,767 renders of
six stylized characters with seven expressions, pre-processed to 50x50 grey. It cannot be had here,
so this module draws its analogue:

* identity: each :class:`~imgprivacy.data.synthetic.ferg_characters.Character` has its own head shape, ears,
  hair (fringe, volume, long hair), eyes, brows, nose, mouth, tones, and a beard or glasses;
* expression: a deformation of the character's *own* features (eye opening, brow raise and slant,
  mouth curvature / opening / width / tilt, nose wrinkle, gaze), in the character's own style and
  at a random intensity, so identity and expression are intertwined;
* per image: identity jitter (each geometric feature scaled by ~N(1, jitter)), pose (in-plane
  rotation, scale, shift, a small yaw that slides the inner features sideways), lighting (a
  random linear gradient, gain), background tone and Gaussian noise.

Rendering (:mod:`imgprivacy.data.synthetic.ferg_render`) evaluates the shapes' signed distances for a chunk
of images at once with numpy (no Python loop over images) and anti-aliases borders analytically.

Examples
--------
>>> faces = generate_ferg_like(per_cell=2, seed=0)
>>> faces.images.shape, faces.images.dtype, len(faces.identity_names), len(faces.expression_names)
((84, 50, 50), dtype('uint8'), 6, 7)
>>> np.bincount(faces.identity).tolist()
[14, 14, 14, 14, 14, 14]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgprivacy.data.splits import SPLIT_NAMES, random_split_codes
from imgprivacy.data.synthetic.ferg_characters import (
    CHARACTERS,
    COMPONENTS,
    EXPRESSION_DELTAS,
    EXPRESSIONS,
    NUMERIC_FIELDS,
    SWITCH_FIELDS,
    TONE_FIELDS,
    character_table,
    expression_style,
)
from imgprivacy.data.synthetic.ferg_render import render_faces
from imgprivacy.errors import InvalidInputError

FERG_SIZE = 55767  # images in the real FERG-DB, for reference


@dataclass(frozen=True)
class FergLikeConfig:
    """How FERG-like faces vary.

    The defaults were tuned (``imgprivacy.reproduce.ferg_like_baselines``) so that a linear probe on the
    pixels does not read identity perfectly while expression stays learnable by a CNN.
    """

    size: int = 50  # image height = width in pixels (FERG pre-processed: 50x50)
    pixels_per_unit: float = 21.0  # face units (head radius ~1) to pixels at scale 1
    scale_jitter: float = 0.08  # image scale ~ U(1 - s, 1 + s)
    rotation_deg: float = 8.0  # in-plane rotation ~ U(-r, r) degrees
    shift_px: float = 2.0  # translation ~ U(-t, t) pixels on each axis
    yaw: float = 0.10  # inner features slide sideways by U(-y, y) face units (head turn)
    identity_jitter: float = 0.12  # each geometric feature scaled by N(1, j) per image
    tone_jitter: float = 0.15  # skin and hair tones shifted by N(0, j) per image
    intensity_low: float = 0.5  # expression intensity ~ U(low, 1)
    expression_gain: float = 2.0  # scales every expression deformation (all characters)
    gaze_jitter: float = 0.25  # pupils move sideways by U(-g, g) eye half-widths
    background_low: float = 0.05  # background tone ~ U(low, high)
    background_high: float = 0.75  # (upper end of the background tone)
    gain_low: float = 0.6  # global brightness gain ~ U(low, high)
    gain_high: float = 1.2  # (upper end of the gain)
    light_gradient: float = 0.45  # a linear light ramp of strength U(0, l) in a random direction
    noise_std: float = 0.04  # Gaussian pixel noise (intensities in [0, 1])
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train / validation / test fractions
    chunk: int = 128  # images per vectorised pass: small enough for the arrays to stay in cache

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.size, int) and self.size >= 16):
            problems.append(f"size must be an integer >= 16, got {self.size!r}")
        if not (isinstance(self.chunk, int) and self.chunk >= 1):
            problems.append(f"chunk must be a positive integer, got {self.chunk!r}")
        for name in ("scale_jitter", "yaw", "identity_jitter", "tone_jitter", "gaze_jitter"):
            if not 0 <= getattr(self, name) < 0.5:
                problems.append(f"{name} must be in [0, 0.5), got {getattr(self, name)!r}")
        if not 0 < self.expression_gain <= 4:
            problems.append(f"expression_gain must be in (0, 4], got {self.expression_gain!r}")
        for name in ("rotation_deg", "shift_px", "light_gradient", "noise_std"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for low, high in (
            ("intensity_low", None),
            ("background_low", "background_high"),
            ("gain_low", "gain_high"),
        ):
            lo, hi = getattr(self, low), (getattr(self, high) if high else 1.0)
            if not 0 <= lo <= hi <= 2:
                problems.append(f"{low} <= {high or '1'} must hold within [0, 2], got {lo}, {hi}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6:
            problems.append(f"split must be three fractions >= 0 summing to 1, got {self.split!r}")
        if problems:
            raise InvalidInputError([f"Invalid FergLikeConfig: {p}" for p in problems])


# Named variation presets. "wild" (the default above) adds pose, lighting, background and noise
# variation that real FERG does not have; "studio" renders like FERG (Aneja et al. 2016: MAYA
# renders with one frontal camera, fixed light, plain background): little pose jitter, a light
# background, almost no lighting change. Measured (per_cell=200): a pixel nearest neighbour among
# one identity's training images has the query's expression 17-25% of the time under "wild"
# (chance 14%) and 65-84% under "studio", which the paper's substitution protocol relies on.
FERG_VARIATIONS = {
    "wild": FergLikeConfig(),
    "studio": FergLikeConfig(
        scale_jitter=0.03,
        rotation_deg=2.0,
        shift_px=1.0,
        yaw=0.03,
        identity_jitter=0.06,
        tone_jitter=0.05,
        gaze_jitter=0.1,
        background_low=0.85,
        background_high=0.95,
        gain_low=0.95,
        gain_high=1.05,
        light_gradient=0.05,
        noise_std=0.02,
    ),
}


@dataclass(frozen=True)
class FergLike:
    """Doubly-labelled faces: ``images`` uint8 (N, S, S), ``identity`` and ``expression`` (N,).

    ``identity`` indexes ``identity_names`` (0..5, the private label), ``expression`` indexes
    ``expression_names`` (0..6, the utility label); ``split`` is 0 / 1 / 2 = train / validation /
    test.
    """

    images: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    split: np.ndarray
    identity_names: tuple[str, ...]
    expression_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.identity)

    def part(self, name: str) -> FergLike:
        """The ``"train"``, ``"validation"`` or ``"test"`` images."""
        if name not in SPLIT_NAMES:
            raise InvalidInputError(f"Expected a split name in {SPLIT_NAMES}, got {name!r}.")
        mask = self.split == SPLIT_NAMES.index(name)
        return FergLike(
            self.images[mask],
            self.identity[mask],
            self.expression[mask],
            self.split[mask],
            self.identity_names,
            self.expression_names,
        )


def sample_parameters(
    identity: np.ndarray, expression: np.ndarray, *, config: FergLikeConfig, seed: int
) -> dict[str, np.ndarray]:
    """Every rendering parameter of every image, as float32 arrays of shape (N,).

    Parameters
    ----------
    identity, expression
        (N,) integer labels in [0, 6) and [0, 7).
    config
        The variation ranges.
    seed
        Seeds the per-image variation (identity jitter, pose, lighting, intensity).
    """
    cfg = config
    rng = np.random.default_rng(seed)
    n = len(identity)
    table = character_table()[identity]  # (N, F)
    jitter = np.ones_like(table)
    geometric = [i for i, f in enumerate(NUMERIC_FIELDS) if f not in TONE_FIELDS + SWITCH_FIELDS]
    geometric = [i for i in geometric if NUMERIC_FIELDS[i] not in ("head_power", "expressivity")]
    jitter[:, geometric] = rng.normal(1.0, cfg.identity_jitter, size=(n, len(geometric)))
    params = {f: table[:, i] * jitter[:, i] for i, f in enumerate(NUMERIC_FIELDS)}
    for name in TONE_FIELDS:
        params[name] = params[name] + rng.normal(0.0, cfg.tone_jitter, size=n)
    intensity = rng.uniform(cfg.intensity_low, 1.0, size=n).astype(np.float32)
    deltas = EXPRESSION_DELTAS[expression] * expression_style()[identity, expression]
    deltas *= (cfg.expression_gain * intensity)[:, None]
    params.update({f"d_{c}": deltas[:, i] for i, c in enumerate(COMPONENTS)})  # d_ = expression
    params["scale"] = cfg.pixels_per_unit * rng.uniform(
        1 - cfg.scale_jitter, 1 + cfg.scale_jitter, n
    )
    params["rotation"] = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg, n))
    params["shift_x"] = rng.uniform(-cfg.shift_px, cfg.shift_px, n)
    params["shift_y"] = rng.uniform(-cfg.shift_px, cfg.shift_px, n)
    params["yaw"] = rng.uniform(-cfg.yaw, cfg.yaw, n)
    params["gaze_u"] = rng.uniform(-cfg.gaze_jitter, cfg.gaze_jitter, n)
    params["background"] = rng.uniform(cfg.background_low, cfg.background_high, n)
    params["gain"] = rng.uniform(cfg.gain_low, cfg.gain_high, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    strength = rng.uniform(0, cfg.light_gradient, n)
    params["light_x"] = strength * np.cos(angle)
    params["light_y"] = strength * np.sin(angle)
    return {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}


def generate_ferg_like(
    *, per_cell: int = 1000, config: FergLikeConfig | None = None, seed: int = 0
) -> FergLike:
    """FERG-like faces: ``per_cell`` images of every (character, expression) pair, shuffled.

    Parameters
    ----------
    per_cell
        Images per (identity, expression) pair; N = 42 * per_cell (1328 gives about FERG's
        55,767).
    config
        Variation and split fractions; ``FergLikeConfig()`` by default.
    seed
        Seeds everything: the same seed and config give identical images, labels and split.

    Returns
    -------
    FergLike
        ``images`` uint8 (N, S, S), ``identity`` (N,) 0-5, ``expression`` (N,) 0-6, ``split``.

    Raises
    ------
    InvalidInputError
        For ``per_cell < 1``.
    """
    cfg = config or FergLikeConfig()
    if not (isinstance(per_cell, int | np.integer) and per_cell >= 1):
        raise InvalidInputError(
            f"Expected per_cell to be a positive integer, got {per_cell!r}. "
            "Ask for at least one image per (identity, expression) pair."
        )
    rng = np.random.default_rng(seed)
    n_id, n_expr = len(CHARACTERS), len(EXPRESSIONS)
    cells = np.repeat(np.arange(n_id * n_expr), per_cell)
    order = rng.permutation(len(cells))
    identity = (cells[order] // n_expr).astype(np.int64)
    expression = (cells[order] % n_expr).astype(np.int64)
    params = sample_parameters(identity, expression, config=cfg, seed=int(rng.integers(2**63 - 1)))
    images = render_faces(params, size=cfg.size, chunk=cfg.chunk)
    images += rng.normal(0.0, cfg.noise_std, size=images.shape).astype(np.float32)
    images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    split = random_split_codes(len(cells), fractions=cfg.split, rng=rng)
    names = tuple(c.name for c in CHARACTERS)
    return FergLike(images, identity, expression, split, names, EXPRESSIONS)
