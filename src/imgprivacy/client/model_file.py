"""Check a guard file on the edge, before it is written or uploaded (numpy only, no torch).

The service refuses a guard whose statistics are not finite numbers > 0 or whose weights are not
finite, but only after the upload. The same checks run here first, with a message that says how
to fix the model. The layout is the one :func:`imgprivacy.docl.save_autoencoder` writes.
"""

from __future__ import annotations

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_arrays

from imgprivacy.errors import CorruptFileError, InvalidInputError
from imgprivacy.safetensors_io import finite_number, read_metadata

FORMAT = "imgprivacy.docl.autoencoder"  # imgprivacy.docl.persistence.FORMAT
METADATA_KEY = "imgprivacy"  # imgprivacy.docl.persistence.METADATA_KEY


# sigma at or below this fraction of mu is 0 up to float32 rounding (identical images give
# ~1e-7): the privacy interval mu +- alpha * sigma is then empty for any other image.
SIGMA_RTOL = 1e-5


def statistics_problems(*, error_mean: object, error_std: object) -> list[str]:
    """What is wrong with a guard's training-error statistics mu (mean) and sigma (std).

    >>> statistics_problems(error_mean=0.5, error_std=0.1)
    []
    >>> statistics_problems(error_mean=0.5, error_std=float("nan"))
    ['sigma must be a finite number > 0, got nan; train the guard again (with --restart)']
    """
    problems = [
        f"{name} must be a finite number > 0, got {value!r}; train the guard again (with --restart)"
        for name, value in (("mu", error_mean), ("sigma", error_std))
        if not finite_number(value) or value < 0 or (name == "mu" and value == 0)
    ]
    if not problems and error_std <= SIGMA_RTOL * error_mean:
        problems.append(
            f"sigma is {error_std:.3g} for mu = {error_mean:.4g}: the autoencoder reconstructs "
            "every training image equally well, which happens when the images are identical. "
            "Train on several different images of yours; a guard without spread protects "
            "nothing (the service refuses sigma = 0)"
        )
    return problems


def check_guard_bytes(data: bytes, *, source: str = "guard") -> dict:
    """The imgprivacy metadata of a guard file, once its statistics and weights are checked.

    Raises
    ------
    CorruptFileError
        When ``data`` is not a safetensors file written by ``imgprivacy guard train``.
    InvalidInputError
        Listing every problem: sigma or mu not a finite number > 0, NaN or infinite weights.
    """
    expected = "a guard file written by `imgprivacy guard train`"
    hint = "Train one with `imgprivacy guard train --images DIR --out FILE`."
    metadata = read_metadata(data, source=source, expected=expected, hint=hint, key=METADATA_KEY)
    try:
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT!r}")
        arrays = load_arrays(data)
    except (ValueError, SafetensorError) as exc:
        raise CorruptFileError(f"{source} is not {expected} ({exc}). {hint}") from exc
    problems = statistics_problems(
        error_mean=metadata.get("error_mean"), error_std=metadata.get("error_std")
    )
    for name, array in sorted(arrays.items()):
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            problems.append(f"tensor {name} contains NaN or infinite values; train again")
    if problems:
        raise InvalidInputError([f"{source}: {p}" for p in problems])
    return metadata
