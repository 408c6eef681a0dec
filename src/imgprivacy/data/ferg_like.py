"""FERG-like faces: a seeded generator of stylized grey faces, 6 characters x 7 expressions.

FERG (Aneja et al., ACCV 2016; used by Feutry et al., ICASSP 2020, sec. 3) holds 55,767 renders of
six stylized characters with seven expressions, pre-processed to 50x50 grey. It cannot be had here,
so this module draws its analogue:

* identity: each :class:`~imgprivacy.data.ferg_characters.Character` has its own head shape, ears,
  hair (fringe, volume, long hair), eyes, brows, nose, mouth, tones, and a beard or glasses;
* expression: a deformation of the character's *own* features (eye opening, brow raise and slant,
  mouth curvature / opening / width / tilt, nose wrinkle, gaze), in the character's own style and
  at a random intensity, so identity and expression are intertwined;
* per image: identity jitter (each geometric feature scaled by ~N(1, jitter)), pose (in-plane
  rotation, scale, shift, a small yaw that slides the inner features sideways), lighting (a
  random linear gradient, gain), background tone and Gaussian noise.

Rendering evaluates the shapes' signed distances (:mod:`imgprivacy.data.sdf`) for a chunk of images
at once with numpy (no Python loop over images) and anti-aliases their borders analytically.

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

from imgprivacy.data import sdf
from imgprivacy.data.ferg_characters import (
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
from imgprivacy.errors import InvalidInputError

MAX_CURVE = 1.0  # mouth curvature limit (corners rise by at most one half-width): no U shapes
SPLIT_NAMES = ("train", "validation", "test")  # the codes 0 / 1 / 2 of ``FergLike.split``
FERG_SIZE = 55767  # images in the real FERG-DB, for reference


@dataclass(frozen=True)
class FergLikeConfig:
    """How FERG-like faces vary.

    The defaults were tuned (``experiments/ferg_like_baselines.py``) so that a linear probe on the
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


def _window(
    p: dict[str, np.ndarray], size: int, *, half_width, top, bottom
) -> tuple[slice, slice, slice]:
    """The (all images, rows, columns) window holding face box |u| <= half_width, top <= v <= bottom.

    The box's arguments are (B,) per-image extents in face units, computed from each image's own
    parameters, so the window is conservative for every image of the chunk: drawing a feature
    only there gives exactly the same pixels as drawing it everywhere, at a fraction of the cost
    (the eyes and the mouth cover ~15 of 50 rows).
    """
    half = np.abs(half_width) + np.abs(p["yaw"])
    corners_u = np.stack([-half, half, -half, half])  # (4, B)
    corners_v = np.stack([top, top, bottom, bottom])
    cos, sin, ppu = np.cos(p["rotation"]), np.sin(p["rotation"]), p["scale"]
    centre = (size - 1) / 2.0
    x = ppu * (cos * corners_u - sin * corners_v) + p["shift_x"] + centre
    y = ppu * (sin * corners_u + cos * corners_v) + p["shift_y"] + centre
    cols = slice(max(int(np.floor(x.min())) - 2, 0), max(min(int(np.ceil(x.max())) + 3, size), 0))
    rows = slice(max(int(np.floor(y.min())) - 2, 0), max(min(int(np.ceil(y.max())) + 3, size), 0))
    return slice(None), rows, cols


def _eye_region(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-image extents of the eyes, glasses and brows (see :func:`_window`)."""
    eye_ry = p["eye_ry"] * np.clip(1.0 + p["d_eye_open"], 0.15, 2.2)
    reach_v = np.maximum(eye_ry, p["eye_ry"] * 1.6 + 0.04)
    base = p["eye_v"] - p["eye_ry"] - p["brow_gap"] * (1.0 + p["d_brow_raise"])
    inner = base - p["d_brow_inner"] * 0.35 * p["brow_len"]
    outer = base + p["brow_tilt"]
    pad = p["brow_thick"] + p["glasses"] + p["pupil_r"]
    return {
        "half_width": p["eye_u"] + np.maximum(p["eye_rx"] * 1.5, p["brow_len"] * 0.5) + pad,
        "top": np.minimum.reduce([p["eye_v"] - reach_v, inner, outer]) - pad,
        "bottom": np.maximum.reduce([p["eye_v"] + reach_v, inner, outer]) + pad,
    }


def _mouth_region(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-image extents of the lips and the open mouth (see :func:`_window`)."""
    width = p["mouth_w"] * np.clip(1.0 + p["d_mouth_width"], 0.3, 2.0)
    curve = np.abs(np.clip(p["mouth_curve"] + p["d_mouth_curve"], -MAX_CURVE, MAX_CURVE))
    bend = (curve + np.abs(p["d_mouth_tilt"])) * width
    # the stroke's first-order distance lets ink spread by up to sqrt(1 + slope^2) at the corners
    lip = (p["lip"] * np.clip(1.0 + p["d_lip"], 0.3, 2.5) + 1.0 / p["scale"]) * np.sqrt(
        1.0 + (2.0 * curve + np.abs(p["d_mouth_tilt"])) ** 2
    )
    open_ry = np.maximum(np.maximum(p["d_mouth_open"], 0.0) * 0.5 * p["mouth_w"], 0.01)
    return {
        "half_width": width + lip,
        "top": p["mouth_v"] - bend - lip - open_ry,
        "bottom": p["mouth_v"] + bend + lip + open_ry * 1.3,
    }


def _render_chunk(p: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Float images (B, size, size) in about [0, 1] from parameters of shape (B,)."""

    def col(name: str) -> np.ndarray:
        return p[name][:, None, None]

    centre = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) - np.float32(centre)
    xs, ys = xs[None], ys[None]
    ppu, cos, sin = col("scale"), np.cos(col("rotation")), np.sin(col("rotation"))
    qx, qy = xs - col("shift_x"), ys - col("shift_y")
    u = (cos * qx + sin * qy) / ppu
    v = (-sin * qx + cos * qy) / ppu
    mu = u - col("yaw")  # inner features follow the (turned) face's midline
    fu = np.abs(mu)  # eyes, brows, glasses: mirrored around it
    canvas = np.broadcast_to(col("background"), u.shape).copy()

    def draw(window, distance, tone):
        sdf.paint(canvas[window], sdf.coverage(distance, ppu), tone)

    everywhere = (slice(None),) * 3
    skin, hair = col("skin"), col("hair_tone")
    head_rx, head_ry = col("head_rx"), col("head_ry")
    vol = col("hair_volume")
    if (p["back_hair"] > -4).any():  # long hair behind the head
        back = sdf.ellipse(u, v, cu=0.0, cv=0.0, rx=head_rx + vol + 0.06, ry=head_ry + vol)
        draw(everywhere, np.maximum(back, v - col("back_hair")), hair)
    if (p["ear_r"] > 0).any():  # ears (mirrored), hidden when ear_r is 0
        ear_r = np.maximum(col("ear_r"), 1e-3)
        ears = sdf.ellipse(
            np.abs(u), v, cu=head_rx * 0.96, cv=col("ear_v"), rx=ear_r, ry=ear_r * col("ear_aspect")
        )
        draw(everywhere, ears + (col("ear_r") <= 0) * 10.0, skin * 0.92)
    # head: a superellipse whose half-width tapers towards the chin
    taper_rx = head_rx * np.clip(1.0 - col("jaw_taper") * v / head_ry, 0.3, 1.5)
    head = sdf.superellipse(u, v, cu=0.0, cv=0.0, rx=taper_rx, ry=head_ry, power=col("head_power"))
    draw(everywhere, head, skin)
    # hair on top: inside the enlarged outline and above a wavy hairline
    w = _window(
        p,
        size,
        half_width=p["head_rx"] * (1 + np.abs(p["jaw_taper"])) + p["hair_volume"],
        top=-p["head_ry"] - p["hair_volume"],
        bottom=p["hair_line"] + np.abs(p["fringe_amp"]),
    )
    hairline = col("hair_line") + col("fringe_amp") * (
        0.5 + 0.5 * np.cos(np.pi * col("fringe_freq") * u[w] + col("fringe_phase"))
    )
    draw(w, np.maximum(head[w] - vol, v[w] - hairline), hair)
    if (p["beard"] < 2).any():  # beard: the head below the beard line
        w = _window(
            p,
            size,
            half_width=p["head_rx"] * 1.5,
            top=np.minimum(p["beard"], 2.0),
            bottom=p["head_ry"],
        )
        draw(w, np.maximum(head[w], col("beard") - v[w]) + (col("beard") >= 2) * 10.0, hair * 0.9)
    # eyes: whites (opening set by the expression), pupils inside them; then glasses and brows
    w = _window(p, size, **_eye_region(p))
    fu_w, v_w = fu[w], v[w]
    eye_u, eye_v, eye_rx = col("eye_u"), col("eye_v"), col("eye_rx")
    eye_ry = col("eye_ry") * np.clip(1.0 + col("d_eye_open"), 0.15, 2.2)
    whites = sdf.ellipse(fu_w, v_w, cu=eye_u, cv=eye_v, rx=eye_rx, ry=eye_ry)
    draw(w, whites, 0.97)
    pupil_u = eye_u + col("gaze_u") * eye_rx * np.sign(mu[w])
    pupil_v = eye_v + col("d_gaze") * 0.5 * col("eye_ry")
    pupils = np.hypot(fu_w - pupil_u, v_w - pupil_v) - col("pupil_r")
    draw(w, np.maximum(pupils, whites), 0.05)
    if (p["glasses"] > 0).any():  # glasses: a rim around each eye and a bridge
        rim_rx, rim_ry = eye_rx * 1.5, col("eye_ry") * 1.6 + 0.04
        rims = np.abs(sdf.ellipse(fu_w, v_w, cu=eye_u, cv=eye_v, rx=rim_rx, ry=rim_ry))
        bridge = sdf.segment(fu_w, v_w, au=0.0, av=eye_v, bu=eye_u - rim_rx, bv=eye_v, radius=0.0)
        glasses = np.minimum(rims, bridge) - col("glasses")
        draw(w, glasses + (col("glasses") <= 0) * 10.0, 0.1)
    # brows: raised by the expression, inner ends up or down
    base = eye_v - col("eye_ry") - col("brow_gap") * (1.0 + col("d_brow_raise"))
    half = col("brow_len") * 0.5
    brows = sdf.segment(
        fu_w,
        v_w,
        au=eye_u - half,
        av=base - col("d_brow_inner") * 0.35 * col("brow_len"),
        bu=eye_u + half,
        bv=base + col("brow_tilt"),
        radius=col("brow_thick"),
    )
    draw(w, brows, hair * 0.8)
    # nose (wrinkled up by disgust)
    nose_centre = p["nose_v"] - p["d_nose_raise"] * 0.5 * p["nose_len"]
    w = _window(
        p,
        size,
        half_width=p["nose_w"],
        top=nose_centre - p["nose_len"],
        bottom=nose_centre + p["nose_len"],
    )
    nose_v = nose_centre[:, None, None]
    nose = sdf.ellipse(mu[w], v[w], cu=0.0, cv=nose_v, rx=col("nose_w"), ry=col("nose_len"))
    draw(w, nose, skin * 0.72)
    # mouth: a curved lip line, opened by the expression
    w = _window(p, size, **_mouth_region(p))
    mu_w, v_w = mu[w], v[w]
    width = col("mouth_w") * np.clip(1.0 + col("d_mouth_width"), 0.3, 2.0)
    lips = sdf.parabola_stroke(
        mu_w,
        v_w,
        cu=0.0,
        cv=col("mouth_v"),
        half_width=width,
        curve=np.clip(col("mouth_curve") + col("d_mouth_curve"), -MAX_CURVE, MAX_CURVE),
        tilt=col("d_mouth_tilt"),
        thickness=col("lip") * np.clip(1.0 + col("d_lip"), 0.3, 2.5),
    )
    opening = np.maximum(col("d_mouth_open"), 0.0) * 0.5 * col("mouth_w")
    open_ry = np.maximum(opening, 0.01)
    inside = sdf.ellipse(
        mu_w, v_w, cu=0.0, cv=col("mouth_v") + open_ry * 0.3, rx=width * 0.7, ry=open_ry
    )
    draw(w, np.minimum(lips, inside + (opening < 0.01) * 10.0), 0.12)
    # lighting: gain times a linear ramp across the image
    ramp = 1.0 + (col("light_x") * xs + col("light_y") * ys) / centre
    canvas *= col("gain") * ramp
    return canvas


def render_faces(params: dict[str, np.ndarray], *, config: FergLikeConfig) -> np.ndarray:
    """Draw images from :func:`sample_parameters`; float32 (N, S, S), about [0, 1], no noise."""
    n = len(params["scale"])
    out = np.empty((n, config.size, config.size), dtype=np.float32)
    for start in range(0, n, config.chunk):  # a loop over chunks, not images: bounded memory
        part = {k: v[start : start + config.chunk] for k, v in params.items()}
        out[start : start + config.chunk] = _render_chunk(part, config.size)
    return out


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
    images = render_faces(params, config=cfg)
    images += rng.normal(0.0, cfg.noise_std, size=images.shape).astype(np.float32)
    images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    split = _split_codes(len(cells), fractions=cfg.split, rng=rng)
    names = tuple(c.name for c in CHARACTERS)
    return FergLike(images, identity, expression, split, names, EXPRESSIONS)


def _split_codes(n: int, *, fractions: tuple[float, float, float], rng) -> np.ndarray:
    """Codes 0 / 1 / 2 at random in the given proportions (rounded)."""
    n_val, n_test = round(n * fractions[1]), round(n * fractions[2])
    codes = np.zeros(n, dtype=np.uint8)
    order = rng.permutation(n)
    codes[order[n - n_val - n_test : n - n_test]] = 1
    codes[order[n - n_test :]] = 2
    return codes
