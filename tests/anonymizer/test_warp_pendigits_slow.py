"""Real pen-digits: the warp game's configuration chosen on validation meets the goal on the test
split, and the same pipeline at lambda = 0 is clearly worse."""

import numpy as np
import pytest

from imgprivacy.anonymizer import AttackConfig
from imgprivacy.anonymizer.evaluate import STRONG_FAMILIES
from imgprivacy.data.pendigits import N_WRITERS, load_pendigits
from imgprivacy.reproduce.anonymizer_pendigits_frontier import FrontierSettings
from imgprivacy.reproduce.anonymizer_pendigits_warp import run_frontier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(data_dir):
    data = load_pendigits(data_dir=data_dir, seed=0)
    settings = FrontierSettings(
        lambdas=(0.0, 1.0),
        prototype_counts=(10, 12, 15, 20, 25, 30),
        attack=AttackConfig(families=STRONG_FAMILIES, cnn_epochs=4, trees=100),
    )
    return data, run_frontier(data, settings=settings, goal_writer=2 / N_WRITERS, seed=0)


def test_selected_configuration_meets_the_goal_on_the_test_split(run):
    """Measured (seed 0, pool 100, the same trained warp measured outside the test): lambda 1,
    k = 20; validation 4.1% / 97.4% (cluster vote); test: the strongest of five attackers 5.2%
    (the standardised CNN; vote 4.2%), digit 96.6%, a CNN trained on the originals reads 96.5%
    of the released digits. (With pool 250 the digit was 96.2%. Seeds 1 and 2 at the k their
    validation selects: 93.8% / 96.2% digit; this floor holds for the seed-0 split.)"""
    _, result = run
    chosen = result.selected
    assert chosen["lambda"] > 0
    assert chosen["validation"]["writer"] <= 2 / N_WRITERS  # chosen on validation
    assert chosen["test"]["writer"] <= 2 / N_WRITERS
    assert chosen["test"]["digit"] >= 0.96
    assert set(chosen["test"]["writer_accuracy_by_family"]) == set(STRONG_FAMILIES)
    assert chosen["transfer_digit_accuracy"]["cnn"] >= 0.95  # trained on originals


def test_lambda_zero_is_clearly_worse_on_the_frontier(run):
    """The game does the work: within the goal's writer level, the best digit the lambda = 0
    pipeline (an identity warp, i.e. the clusters of the pixels) reaches is at least 3 points
    below the selected configuration's, on validation and on test, and so is its digit at the
    selected k. Measured (seed 0): validation 91.9% (k = 25) against 97.4%; at k = 20 the test
    digit is 89.9% against 96.7%. (At k = 10 both are at 85-87%: too few clusters for ten
    digits, whatever the warp.)"""
    _, result = run
    chosen = result.selected
    rows = [r for r in result.frontier if r.get("method") == "warp-game"]
    plain = [r for r in rows if r["lambda"] == 0.0]
    limit = 2 / N_WRITERS
    for split, target in (
        ("val", chosen["validation"]["digit"]),
        ("test", chosen["test"]["digit"]),
    ):
        best = max(r[f"{split}_digit"] for r in plain if r[f"{split}_writer"] <= limit)
        assert best <= target - 0.03, split
    ablation = chosen["ablation_lambda_0"]
    assert ablation["n_prototypes"] == chosen["n_prototypes"]
    assert ablation["test_digit"] <= chosen["test"]["digit"] - 0.03


def test_released_images_are_real_training_digits_from_their_clusters_pool(run):
    data, result = run
    stem = result.selected["release"]
    released, model = result.released[stem], result.models[stem]
    pool_size = model.config.pool_size
    train = {image.tobytes() for image in data.images[data.split == 0]}
    distinct = np.unique(released.reshape(len(released), -1), axis=0)
    assert len(distinct) <= result.selected["n_prototypes"] * pool_size
    assert pool_size == 1 or len(distinct) > result.selected["n_prototypes"]
    assert all(row.reshape(20, 20).tobytes() in train for row in distinct)
    pools = np.rint(model.substitution_.pool_.numpy() * 255).astype(np.uint8)
    ids = model.cluster_ids(data.images)
    members = [{image.tobytes() for image in pool} for pool in pools]
    assert all(image.reshape(-1).tobytes() in members[c] for image, c in zip(released, ids))
