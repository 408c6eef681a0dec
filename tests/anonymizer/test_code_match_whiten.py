"""Code match with per-identity whitening, and the per-group query maps of the substitution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgprivacy.anonymizer.code_match import CodeMatchAnonymizer, identity_whiteners
from imgprivacy.anonymizer.code_match_trainer import CodeMatchConfig
from imgprivacy.anonymizer.substitution.code_nearest import MAPS_KEY, CodeNearestSubstitution
from imgprivacy.errors import InvalidInputError

RNG = np.random.default_rng(1)
IMAGES = RNG.integers(0, 256, size=(36, 12, 12), dtype=np.uint8)
IDENTITY = np.repeat([0, 1, 2], 12)
CONFIG = CodeMatchConfig(
    image_size=12, channels=2, code_dim=4, projection_dim=4, epochs=2, batch_size=12, whiten=True
)


@pytest.fixture(scope="module")
def whitened():
    return CodeMatchAnonymizer(CONFIG).fit(IMAGES, IDENTITY)


def pool_rows(released, identity):
    pool = IMAGES[identity == IDENTITY].reshape(1, -1, 144)
    hits = (released.reshape(len(released), 1, 144) == pool).all(-1)
    assert hits.any(-1).all()
    return hits.argmax(-1)


def test_whitened_release_is_the_nearest_whitened_target_code(whitened):
    released = whitened.retarget(2).transform(IMAGES, identities=IDENTITY)
    chosen = pool_rows(released, 2)
    x = torch.as_tensor(IMAGES.reshape(36, -1) / 255.0).float()
    codes, ids = whitened._encode(x), torch.as_tensor(IDENTITY)
    w = identity_whiteners(codes, ids, 3)
    white = torch.bmm((codes - whitened.code_means_[ids])[:, None], w[ids])[:, 0]
    expected = torch.cdist(white, white[ids == 2]).argmin(1).numpy()
    assert np.array_equal(chosen, expected)
    # a different metric from the per-dimension standardisation on these codes
    plain = CodeMatchAnonymizer(CONFIG.replace(whiten=False)).fit(IMAGES, IDENTITY)
    assert plain.config.whiten is False and whitened.substitution_.query_maps_.shape == (3, 4, 4)
    assert plain.substitution_.query_maps_ is None


def test_whitened_model_round_trips(whitened, tmp_path):
    loaded = CodeMatchAnonymizer.load(whitened.save(tmp_path / "w.safetensors"))
    assert loaded.config.whiten is True
    assert np.array_equal(
        loaded.transform(IMAGES, identities=IDENTITY),
        whitened.transform(IMAGES, identities=IDENTITY),
    )
    assert np.array_equal(loaded.transform(IMAGES), whitened.transform(IMAGES))
    with pytest.raises(InvalidInputError, match="whiten must be True or False"):
        CONFIG.replace(whiten="yes")


def test_query_maps_need_groups_and_the_right_shape():
    refs = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    maps = torch.stack([torch.eye(2), -torch.eye(2)])
    method = CodeNearestSubstitution(target_identity=1).fit(
        refs, np.array([1, 1]), autoencode=lambda x: x, query_maps=maps
    )
    queries = torch.tensor([[0.9, 0.9], [-0.9, -0.9]])
    assert method.transform(queries, groups=[1, 1]).tolist() == [[0, 0], [255, 255]]
    assert method.transform(queries, groups=[0, 1]).tolist() == [[255, 255], [255, 255]]
    with pytest.raises(InvalidInputError, match="Pass groups="):
        method.transform(queries)
    with pytest.raises(InvalidInputError, match=r"group in 0..1"):
        method.transform(queries, groups=[0, 2])
    with pytest.raises(InvalidInputError, match=r"query maps of shape \(groups, query size, 2\)"):
        CodeNearestSubstitution(target_identity=1).fit(
            refs, np.array([1, 1]), autoencode=lambda x: x, query_maps=torch.eye(2)
        )
    tensors, metadata = method.state()
    config = CONFIG.replace(target_identity=1)
    bad = {**tensors, MAPS_KEY: torch.zeros(2, 2, 3)}
    problems = CodeNearestSubstitution.state_problems(bad, metadata, config=config)
    assert any(MAPS_KEY in p and "expected (2, 2, 2)" in p for p in problems)
