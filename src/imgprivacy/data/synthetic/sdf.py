"""Signed distances of a few 2-D shapes, evaluated for a batch of images at once.

Every function takes face coordinates ``u`` (right) and ``v`` (down) that broadcast against the
shape's parameters: typically ``u`` and ``v`` are (B, H, W) and each parameter is (B, 1, 1), so one
call draws the shape in B images with B different geometries. A distance is negative inside the
shape, positive outside, in the same units as ``u`` and ``v``. :func:`coverage` turns it into an
anti-aliased alpha in [0, 1] (a one-pixel linear ramp across the border), which is what lets
50x50 renderings have smooth grey edges without supersampling.

Examples
--------
>>> import numpy as np
>>> u = np.array([0.0, 2.0]); v = np.zeros(2)
>>> np.round(ellipse(u, v, cu=0.0, cv=0.0, rx=1.0, ry=1.0), 3)
array([-1.,  1.])
"""

from __future__ import annotations

import numpy as np

_EPS = np.float32(1e-6)


def ellipse(u, v, *, cu, cv, rx, ry) -> np.ndarray:
    """Approximate distance to an axis-aligned ellipse (exact for a circle).

    Uses the first-order correction ``k0 (k0 - 1) / k1`` (Quilez), accurate near the border,
    which is all anti-aliasing needs.
    """
    x = (u - cu) / rx
    y = (v - cv) / ry
    k0 = np.sqrt(x * x + y * y)
    k1 = np.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    distance = k0 * (k0 - 1.0) / np.maximum(k1, _EPS)
    return np.where(k1 > _EPS, distance, -np.minimum(rx, ry))  # the formula is 0/0 at the centre


def superellipse(u, v, *, cu, cv, rx, ry, power) -> np.ndarray:
    """Approximate distance to ``|x/rx|^p + |y/ry|^p = 1`` (p = 2 ellipse, larger = squarer)."""
    x = np.abs(u - cu) / rx
    y = np.abs(v - cv) / ry
    k = (x**power + y**power) ** (1.0 / power)
    return (k - 1.0) * np.minimum(rx, ry)


def segment(u, v, *, au, av, bu, bv, radius) -> np.ndarray:
    """Exact distance to a segment from (au, av) to (bu, bv) thickened by ``radius`` (a capsule)."""
    pu, pv = u - au, v - av
    du, dv = bu - au, bv - av
    h = np.clip((pu * du + pv * dv) / np.maximum(du * du + dv * dv, _EPS), 0.0, 1.0)
    return np.sqrt((pu - du * h) ** 2 + (pv - dv * h) ** 2) - radius


def parabola_stroke(u, v, *, cu, cv, half_width, curve, tilt, thickness) -> np.ndarray:
    """Distance to the stroke ``y = -curve * x^2 / half_width + tilt * x`` for ``|x| <= half_width``.

    ``x = u - cu`` and ``y = v - cv``; a positive ``curve`` bends the ends upwards (a smile, since
    ``v`` points down). The distance to the curve uses the local slope (first order); the ends
    are cut square, which is invisible at 50x50.
    """
    x = u - cu
    y = v - cv
    slope = -2.0 * curve * x / half_width + tilt
    line = np.abs(y + curve * x * x / half_width - tilt * x) / np.sqrt(1.0 + slope * slope)
    return np.maximum(line - thickness, np.abs(x) - half_width)


def coverage(distance: np.ndarray, pixels_per_unit) -> np.ndarray:
    """Anti-aliased alpha: 1 well inside, 0 well outside, a one-pixel ramp across the border."""
    alpha = 0.5 - distance * pixels_per_unit
    np.maximum(alpha, 0.0, out=alpha)  # np.clip is several times slower on small float32 arrays
    return np.minimum(alpha, 1.0, out=alpha)


def paint(canvas: np.ndarray, alpha: np.ndarray, tone) -> np.ndarray:
    """Composite a layer of grey ``tone`` over ``canvas`` with ``alpha`` (in place, returned)."""
    canvas += alpha * (tone - canvas)
    return canvas
