"""Slow: the code-match anonymizer on FERG-like faces, target 0, against the paper's Table 1.

A reduced run (2520 faces, 60 per character and expression; the preset's 100 encoder epochs
with negatives drawn within an identity and whitening ridge 0.1; CNN and forest attackers), with
the codes whitened per identity as the faces reproduction runs it. Measured: identity 25.4% and
expression 79.4% with two torch threads (the test suite's), 27.2% / 80.7% with one; the paper's
first bar for target 0 is identity <= 42.5% and expression >= 72.5%. Earlier presets gave 21.4%
/ 72.0% (60 epochs) and 23.3% / 67.7% (25 epochs); a change of thread count moved an earlier
encoder by 5 points. The test asserts the paper's first bar for target 0, so a change that loses
either side of it fails.
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


def test_identity_and_expression_meet_the_papers_first_bar(faces, released):
    results = assess_tasks(
        released,
        labels={"identity": faces.private, "expression": faces.utility},
        split=faces.split,
        config=AttackConfig(cnn_epochs=6, trees=200),
    )
    identity, expression = results["identity"].best, results["expression"].best
    print({"identity": identity, "expression": expression})
    assert identity <= PAPER_TABLE1[TARGET]["identity_accuracy"]
    assert expression >= PAPER_TABLE1[TARGET]["expression_accuracy"]
