"""Real pen-digits: rendering cross-check and a short training run with quality floors."""

import numpy as np
import pytest

from imgprivacy.anonymizer import Anonymizer, AnonymizerConfig, AttackConfig, assess
from imgprivacy.data.pendigits import load_pendigits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pendigits(data_dir):
    return load_pendigits(data_dir=data_dir, seed=0)


def test_rendering_matches_the_files_cross_check(pendigits, data_dir):
    file_images = load_pendigits(data_dir=data_dir, use_file_renderings=True).images
    ours = pendigits.images.astype(np.float64)
    assert pendigits.images.shape == (7494, 20, 20)
    assert np.bincount(pendigits.split).tolist() == [5494, 1000, 1000]
    assert sorted(set(pendigits.writer.tolist())) == list(range(30))
    assert np.corrcoef(ours.ravel(), file_images.ravel().astype(np.float64))[0, 1] > 0.99


@pytest.fixture(scope="module")
def short_run(pendigits):
    config = AnonymizerConfig(
        lam=2.0, pretrain_epochs=8, disc_pretrain_epochs=2, adversarial_epochs=3
    )
    train = pendigits.part("train")
    return Anonymizer(config).fit(train.images, train.writer)


def _forest(images, pendigits):
    attack = AttackConfig(families=("random_forest",), trees=100)
    labels = dict(writer=pendigits.writer, digit=pendigits.digit, split=pendigits.split)
    return assess(images, **labels, config=attack)


def test_short_run_lowers_writer_accuracy_and_keeps_the_digit(pendigits, short_run):
    """Floors the current defaults meet (autoencoder + 40-prototype substitution): the forest's
    writer accuracy falls from ~45% to <= 15% (measured 8-10% in quick runs) while its digit
    accuracy stays >= 78% (measured 79-86%). The issue's goal (writer <= 6.7% with the digit
    >= 95%) is not met; see docs/results.md (Anonymizer)."""
    original = _forest(pendigits.images, pendigits)
    anonymized = _forest(short_run.transform(pendigits.images), pendigits)
    assert original.writer.best >= 0.35
    assert anonymized.writer.best <= 0.15
    assert anonymized.digit.best >= 0.78


def test_outputs_stay_tied_to_their_inputs(pendigits, short_run):
    """No collapse: the outputs use all 40 prototypes and vary across images (per-pixel spread
    ~34/255 measured; originals ~59, a constant image 0)."""
    out = short_run.transform(pendigits.images)
    flat = out.reshape(len(out), -1).astype(np.float64)
    assert len(np.unique(flat, axis=0)) == short_run.config.n_prototypes
    assert flat.std(axis=0).mean() > 25
