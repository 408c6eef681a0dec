"""The DOCL faces experiment's data: 10 users = 10 identities, as the provider's face features.

Extended Yale B identities play three disjoint roles (:class:`IdentitySplit`): users, new
identities whose faces must be shared (the acceptance rate, the paper's "very similar" scenario)
and the identities the face extractor was trained on. The extractor file records the latter, and
the experiment refuses an extractor that has seen a user or a new identity.
"""

from __future__ import annotations

import os

import numpy as np

from imgprivacy.data.faces import IdentitySplit, identities, load_yaleb
from imgprivacy.errors import InvalidInputError
from imgprivacy.features.faces import FaceCNNFeatures
from imgprivacy.reproduce.docl_data import DoclData


def split_per_identity(
    labels: np.ndarray, *, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) row indices holding ``test_fraction`` of each identity's images."""
    train, test = [], []
    for identity in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == identity))
        cut = int(round(len(rows) * test_fraction))
        test.append(rows[:cut])
        train.append(rows[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def faces_experiment(
    *,
    data_dir: str | os.PathLike | None = None,
    extractor_path: str | os.PathLike | None = None,
    split: IdentitySplit | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> DoclData:
    """User i protects the faces of identity ``split.users[i]``; the faces of ``split.unseen``
    are the non-sensitive uploads.

    Raises
    ------
    InvalidInputError
        When the face extractor was trained on a user's or a new identity's faces.
    DataNotFoundError
        When there is no face extractor file (the message says how to train one).
    """
    split = split or IdentitySplit()
    extractor = FaceCNNFeatures(path=None if extractor_path is None else str(extractor_path))
    seen = set(extractor.model().info.get("identities", []))
    leaked = sorted(seen & (set(split.users) | set(split.unseen)))
    if leaked:
        raise InvalidInputError(
            f"The face extractor was trained on identities {leaked}, which are users or new "
            "identities of this experiment. Train it on the extractor identities only: "
            "`imgprivacy features train-face-extractor`."
        )
    faces = load_yaleb(data_dir=data_dir)
    users = identities(faces, split.users)
    rng = np.random.default_rng(seed)
    train_rows, test_rows = split_per_identity(users.labels, test_fraction=test_fraction, rng=rng)
    unseen = identities(faces, split.unseen)
    return DoclData(
        name="faces-yaleb",
        classes=tuple(split.users),
        train_x=extractor.transform(users.images[train_rows]),
        train_y=users.labels[train_rows],
        test_x=extractor.transform(users.images[test_rows]),
        test_y=users.labels[test_rows],
        public_x=extractor.transform(unseen.images),
        public_name=f"faces of {len(split.unseen)} new Extended Yale B identities",
        feature_extractor=extractor.name,
    )
