"""Building blocks of the intertwined method (issue 5) that the anonymizer plugs in.

* :mod:`~imgprivacy.anonymizer_tools.target_identity` - the discriminator's "real" batches drawn
  from one chosen identity only;
* :mod:`~imgprivacy.anonymizer_tools.substitution` - each anonymized image replaced by the
  nearest real training image of that identity (pixel Euclidean distance).

They are kept apart from :mod:`imgprivacy.anonymizer` so they depend on nothing but numpy / torch
and can be tested on their own.
"""

from imgprivacy.anonymizer_tools.substitution import (
    Substitution,
    SubstitutionConfig,
    nearest_neighbours,
    substitute,
    substitute_with_identity,
)
from imgprivacy.anonymizer_tools.target_identity import TargetIdentitySampler

__all__ = [
    "Substitution",
    "SubstitutionConfig",
    "TargetIdentitySampler",
    "nearest_neighbours",
    "substitute",
    "substitute_with_identity",
]
