"""The six characters and seven expressions of the FERG-like faces (see :mod:`.ferg_like`).

Face coordinates: ``u`` to the right, ``v`` down, the head centred on (0, 0) with a radius of about
1. A :class:`Character` fixes one identity's geometry and tones; an expression is a vector of
deformations (:data:`EXPRESSION_DELTAS`) expressed in units of the character's own features (eye
opening as a fraction of its eye height, brow raise in units of its brow gap, mouth curvature
relative to its mouth width, ...), and every character has its own style of each expression
(:func:`expression_style`): the same expression moves different characters differently, which is
what intertwines identity and expression as in FERG.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import numpy as np

EXPRESSIONS = ("neutral", "anger", "fear", "surprise", "sadness", "joy", "disgust")  # FERG's order

# What an expression moves; each unit is relative to the character's own feature (see module doc).
COMPONENTS = (
    "eye_open",  # eye height multiplier - 1
    "brow_raise",  # brows move up by this many brow gaps
    "brow_inner",  # inner brow ends move up (+) or down (-) by this many 0.35 brow lengths
    "mouth_curve",  # added to the mouth curvature (ends up +), relative to the mouth half-width
    "mouth_open",  # open mouth height, in half mouth-widths
    "mouth_width",  # mouth half-width multiplier - 1
    "mouth_tilt",  # slope of the mouth line (a one-sided sneer)
    "nose_raise",  # the nose moves up by this many half nose-lengths (wrinkle)
    "gaze",  # pupils move down by this many half eye-heights
    "lip",  # lip thickness multiplier - 1
)

EXPRESSION_DELTAS = np.array(
    [  # eye  brow  inner curve open  width  tilt  nose  gaze  lip
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # neutral
        [-0.30, -0.50, -0.80, -0.15, 0.00, -0.20, 0.00, 0.10, 0.00, 0.40],  # anger
        [0.35, 0.60, 0.60, -0.10, 0.35, 0.10, 0.00, 0.00, 0.00, -0.20],  # fear
        [0.55, 1.10, 0.10, 0.00, 0.80, -0.35, 0.00, 0.00, 0.00, 0.00],  # surprise
        [-0.20, 0.15, 0.80, -0.45, 0.00, -0.10, 0.00, 0.00, 0.40, 0.00],  # sadness
        [-0.35, 0.20, 0.00, 0.55, 0.30, 0.25, 0.00, 0.00, 0.00, 0.00],  # joy
        [-0.25, -0.30, -0.30, -0.25, 0.10, -0.05, 0.25, 0.50, 0.00, 0.30],  # disgust
    ],
    dtype=np.float32,
)

STYLE_SEED = 20200504  # fixes the characters' expression styles: part of their definition
STYLE_SPREAD = 0.4  # each character scales each expression component by U(1 - s, 1 + s)


@dataclass(frozen=True)
class Character:
    """One identity: geometry in face units, grey tones in [0, 1]."""

    name: str  # a short display name
    head_rx: float  # head half-width
    head_ry: float  # head half-height
    head_power: float  # superellipse exponent: 2 = oval, larger = squarer
    jaw_taper: float  # > 0 narrows the chin, < 0 widens the jaw
    ear_r: float  # ear radius (0 = hidden ears)
    ear_v: float  # ear height
    ear_aspect: float  # ear height / width
    hair_line: float  # v of the hairline at the centre (more negative = higher forehead)
    fringe_amp: float  # depth of the fringe's waves
    fringe_freq: float  # waves across the forehead (high = spiky or curly)
    fringe_phase: float  # shifts the waves sideways (an asymmetric parting)
    hair_volume: float  # how far the hair stands out of the head outline
    back_hair: float  # v where hair behind the head ends (-5 = none, ~1 = long hair)
    eye_u: float  # half the distance between the eyes
    eye_v: float  # eye height
    eye_rx: float  # eye half-width
    eye_ry: float  # eye half-height (neutral)
    pupil_r: float  # pupil radius
    brow_gap: float  # gap between the top of the eye and the brow
    brow_len: float  # brow length
    brow_thick: float  # brow half-thickness
    brow_tilt: float  # outer end lower (+) or higher (-)
    nose_v: float  # nose height
    nose_w: float  # nose half-width
    nose_len: float  # nose half-length
    mouth_v: float  # mouth height
    mouth_w: float  # mouth half-width
    lip: float  # lip half-thickness
    mouth_curve: float  # resting mouth curvature (ends up +)
    skin: float  # skin tone
    hair_tone: float  # hair (and beard) tone
    beard: float  # v below which the face is bearded (5 = no beard)
    glasses: float  # glasses rim half-thickness (0 = no glasses)
    expressivity: float  # scales every expression of this character

    def numeric(self) -> np.ndarray:
        """The numeric fields in declaration order (everything but ``name``), float32."""
        return np.array(astuple(self)[1:], dtype=np.float32)


NUMERIC_FIELDS = tuple(f.name for f in fields(Character))[1:]
TONE_FIELDS = ("skin", "hair_tone")  # jittered additively; the rest multiplicatively
SWITCH_FIELDS = ("back_hair", "beard", "glasses", "ear_r")  # present / absent, never jittered

CHARACTERS = (
    Character("ada", 0.84, 0.95, 2.0, 0.10, 0.17, 0.05, 1.2, -0.45, 0.05, 1.0, 0.0, 0.06, -5.0,
              0.33, -0.08, 0.15, 0.11, 0.060, 0.10, 0.26, 0.035, 0.00, 0.22, 0.06, 0.07,
              0.52, 0.30, 0.035, 0.05, 0.78, 0.22, 5.0, 0.0, 1.0),
    Character("bo", 0.90, 0.88, 3.2, 0.00, 0.12, 0.10, 1.4, -0.70, 0.00, 1.0, 0.0, 0.02, -5.0,
              0.38, -0.12, 0.11, 0.08, 0.050, 0.08, 0.30, 0.050, 0.05, 0.22, 0.10, 0.16,
              0.55, 0.28, 0.040, 0.00, 0.62, 0.35, 0.45, 0.0, 0.8),
    Character("cyd", 0.72, 1.00, 2.0, 0.28, 0.20, -0.10, 1.8, -0.35, 0.12, 3.0, 0.0, 0.10, 0.75,
              0.27, -0.05, 0.13, 0.10, 0.055, 0.12, 0.22, 0.025, -0.05, 0.25, 0.05, 0.12,
              0.55, 0.20, 0.030, 0.08, 0.85, 0.55, 5.0, 0.0, 1.2),
    Character("dex", 0.98, 0.84, 2.4, -0.05, 0.15, 0.05, 1.0, -0.50, 0.10, 5.0, 0.0, 0.12, -5.0,
              0.36, -0.10, 0.12, 0.10, 0.060, 0.09, 0.28, 0.055, 0.00, 0.20, 0.13, 0.08,
              0.48, 0.34, 0.040, 0.00, 0.70, 0.12, 5.0, 0.025, 1.0),
    Character("eve", 0.85, 0.92, 2.0, -0.15, 0.00, 0.00, 1.0, -0.38, 0.15, 0.5, 0.8, 0.14, 0.95,
              0.30, -0.06, 0.16, 0.13, 0.070, 0.11, 0.24, 0.030, -0.08, 0.22, 0.05, 0.06,
              0.50, 0.26, 0.050, 0.05, 0.82, 0.08, 5.0, 0.0, 1.1),
    Character("flo", 0.88, 0.97, 2.0, 0.18, 0.21, 0.15, 1.1, -0.55, 0.07, 8.0, 0.0, 0.18, 0.20,
              0.32, -0.04, 0.12, 0.12, 0.080, 0.13, 0.20, 0.040, 0.10, 0.24, 0.08, 0.10,
              0.56, 0.27, 0.035, 0.03, 0.72, 0.45, 5.0, 0.0, 0.9),
)  # fmt: skip


def character_table() -> np.ndarray:
    """(6, F) float32: the numeric fields of every character (columns = NUMERIC_FIELDS)."""
    return np.stack([c.numeric() for c in CHARACTERS])


def expression_style() -> np.ndarray:
    """(6, 7, C) float32: each character's own multiplier of each expression component.

    Fixed by :data:`STYLE_SEED` (not by a data set's seed), so a character expresses joy the same
    way in every generated data set.
    """
    rng = np.random.default_rng(STYLE_SEED)
    shape = (len(CHARACTERS), len(EXPRESSIONS), len(COMPONENTS))
    style = rng.uniform(1 - STYLE_SPREAD, 1 + STYLE_SPREAD, size=shape).astype(np.float32)
    expressivity = np.array([c.expressivity for c in CHARACTERS], dtype=np.float32)
    return style * expressivity[:, None, None]
