"""The DOCL protocol with outlier exposure: users and adversaries train against the negatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgprivacy.docl import AutoencoderConfig, Guard, OneClassAutoencoder
from imgprivacy.errors import InvalidInputError
from imgprivacy.reproduce.docl_experiments import adversary_matrix, bank_of, train_class_models

CONFIG = AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(), epochs=2, batch_size=16)


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    centres = torch.rand(3, 16, generator=generator)
    labels = np.repeat(np.arange(3), 40)
    x = (centres[labels] + 0.05 * torch.randn(120, 16, generator=generator)).clamp(0, 1)
    negatives = torch.rand(30, 16, generator=generator)
    return x, labels, negatives


def test_users_train_against_the_negatives_only_when_the_config_asks(data):
    x, labels, negatives = data
    exposed = CONFIG.replace(negative_weight=1.0)
    models = train_class_models(x, labels, [0, 1], config=exposed, negatives=negatives)
    direct = OneClassAutoencoder(exposed).fit(x[torch.as_tensor(labels == 1)], negatives=negatives)
    torch.testing.assert_close(models[1].distances(x), direct.distances(x), rtol=0, atol=0)
    # without the weight the negatives are not used: the paper's models
    plain = train_class_models(x, labels, [1], config=CONFIG, negatives=negatives)
    paper = OneClassAutoencoder(CONFIG).fit(x[torch.as_tensor(labels == 1)])
    torch.testing.assert_close(plain[0].distances(x), paper.distances(x), rtol=0, atol=0)
    with pytest.raises(InvalidInputError, match="pass negatives=FEATURES"):
        train_class_models(x, labels, [0], config=exposed)


def test_adversaries_train_as_the_users_do(data):
    x, labels, negatives = data
    exposed = CONFIG.replace(negative_weight=1.0)
    classes = [0, 1, 2]
    models = train_class_models(x, labels, classes, config=exposed, negatives=negatives)
    scores = bank_of(models, classes).score(x)
    arguments = dict(
        train_features=x,
        train_labels=labels,
        test_scores=scores,
        test_features=x,
        test_labels=labels,
        classes=classes,
        config=exposed,
        guards={"margin": Guard(policy="margin", alpha=2.0)},
    )
    matrix = adversary_matrix(**arguments, negatives=negatives).blocked["margin"]
    assert matrix.shape == (3, 3) and ((matrix >= 0) & (matrix <= 1)).all()
    with pytest.raises(InvalidInputError, match="pass negatives=FEATURES"):
        adversary_matrix(**arguments)
