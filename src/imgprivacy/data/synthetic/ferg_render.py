"""Drawing FERG-like faces from per-image parameters (see :mod:`imgprivacy.data.synthetic.ferg_like`).

Face coordinates ``u`` (right) and ``v`` (down) come from each pixel by the image's inverse pose;
every feature is a signed distance (:mod:`imgprivacy.data.synthetic.sdf`) painted over the canvas in order
(long hair, ears, head, hair, beard, eyes, glasses, brows, nose, mouth), then lit. A feature that
covers a small part of the face is evaluated only inside the window that holds it in every image
of the chunk (:func:`_window`, from the images' own parameters), which keeps rendering fast and
leaves the pixels exactly as if it were evaluated everywhere.
"""

from __future__ import annotations

import numpy as np

from imgprivacy.data.synthetic import sdf

MAX_CURVE = 1.0  # mouth curvature limit (corners rise by at most one half-width): no U shapes


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


def render_faces(params: dict[str, np.ndarray], *, size: int, chunk: int = 128) -> np.ndarray:
    """Draw faces from per-image parameters; float32 (N, size, size), about [0, 1], no noise.

    Parameters
    ----------
    params
        (N,) float32 arrays, as :func:`imgprivacy.data.synthetic.ferg_like.sample_parameters` returns.
    size
        Image height = width in pixels.
    chunk
        Images per vectorised pass (the result does not depend on it).
    """
    n = len(params["scale"])
    out = np.empty((n, size, size), dtype=np.float32)
    for start in range(0, n, chunk):  # a loop over chunks, not images: bounded memory
        part = {k: v[start : start + chunk] for k, v in params.items()}
        out[start : start + chunk] = _render_chunk(part, size)
    return out
