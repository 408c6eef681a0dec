"""Slow: the code-match anonymizer on FERG-like faces, target 0, against the paper's Table 1.

A reduced run (2520 faces, 60 per character and expression; the preset's 60 encoder epochs with
negatives drawn within an identity and whitening ridge 0.1; CNN and forest attackers), with the
codes whitened per identity as the faces reproduction runs it. Measured with one torch thread:
identity 21.4% (the paper's bar for target 0: <= 42.5%) and expression 72.0% (25 epochs: 23.3%
/ 67.7%; 15 epochs: 17.2% / 63.8%); the earlier encoder (negatives over the whole batch, ridge
0.01, 15 epochs) gave 28.3% / 66.4% with one thread and 27.2% / 61.4% with two (the test
suite's); the paper's expression, >= 72.5%, is *not reached*.
Per-dimension standardisation gave 56.6%. The floor is the measured 72.0% less 10 points for the
thread count (which moved the earlier encoder by 5). The test asserts the identity bar and the
expression floor reached, so a change that loses either fails; it does not claim the paper's
expression.
"""

from __future__ import annotations

import numpy as np
import pytest

from imgprivacy.anonymizer.code_match import CodeMatchAnonymizer
from imgprivacy.anonymizer.evaluate import AttackConfig, assess_tasks
from imgprivacy.anonymizer.presets import faces_code_match_config
from imgprivacy.data.labelled_faces import ferg_like_data
from imgprivacy.reproduce.anonymizer_faces_settings import PAPER_TABLE1

pytestmark = pytest.mark.slow

TARGET = 0
EXPRESSION_FLOOR = 0.62  # measured 72.0% (25 epochs 67.7%, earlier encoder 61.4-66.4%)


@pytest.fixture(scope="module")
def faces():
    return ferg_like_data(per_cell=60, seed=0, variation="studio")


@pytest.fixture(scope="module")
def released(faces):
    model = CodeMatchAnonymizer(faces_code_match_config(target_identity=TARGET, whiten=True))
    model.fit(faces.images[faces.train], faces.private[faces.train])
    return model.transform(faces.images, identities=faces.private)


def test_released_images_are_training_images_of_the_target(faces, released):
    pool = faces.images[faces.train & (faces.private == TARGET)].reshape(-1, 2500)
    flat = released.reshape(len(released), 1, -1)
    assert (flat == pool[None]).all(-1).any(-1).all()
    assert len(np.unique(released.reshape(len(released), -1), axis=0)) >= 100  # no collapse


def test_identity_meets_the_paper_bar_and_expression_its_floor(faces, released):
    results = assess_tasks(
        released,
        labels={"identity": faces.private, "expression": faces.utility},
        split=faces.split,
        config=AttackConfig(cnn_epochs=6, trees=200),
    )
    identity, expression = results["identity"].best, results["expression"].best
    print({"identity": identity, "expression": expression})
    assert identity <= PAPER_TABLE1[TARGET]["identity_accuracy"]
    assert expression >= EXPRESSION_FLOOR
