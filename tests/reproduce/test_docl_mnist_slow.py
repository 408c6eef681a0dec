"""A reduced docl-mnist reproduction on the real data, with quality floors (slow)."""

import json

import numpy as np
import pytest

from imgprivacy.reproduce.docl_mnist import reproduce_docl_mnist, summary_tables
from tests.reproduce.result_keys import assert_same_keys

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("docl-mnist")
    # Without the public negative set, which would double the default model's training here; the
    # default run with it is tested on tiny settings (test_docl_results.py).
    return out, reproduce_docl_mnist(out=out, quick=True, data_dir=data_dir, negatives=False)


def test_results_json_has_every_documented_key(quick_run):
    out, results = quick_run
    assert_same_keys(out / "results.json", "docl-mnist")
    saved = json.loads((out / "results.json").read_text())
    for key in (
        "overall_accuracy",
        "per_class_accuracy",
        "per_class_auc",
        "guard",
        "adversary",
        "scalability",
        "paper_faithful",
    ):
        assert key in saved, key
    assert len(saved["per_class_accuracy"]) == 10 and len(saved["per_class_auc"]) == 10
    for policy, matrix in saved["adversary"].items():
        assert np.asarray(matrix).shape == (10, 10), policy
    fractions = [saved["overall_accuracy"], *saved["per_class_accuracy"]]
    for points in saved["guard"].values():
        for point in points:
            fractions += [point["accuracy"], point["acceptance_rate"], point["owner_share_rate"]]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert set(saved["scalability"]) == {"1", "3", "5", "7", "9", "10"}
    assert saved["scalability"]["1"] == [1.0] * 10  # one user: the argmin is always right


def test_figures_are_written(quick_run):
    out, results = quick_run
    names = {p.split("/")[-1] for p in results.figures}
    assert {
        "fig2_per_class_accuracy.png",
        "fig3_accuracy_vs_acceptance.png",
        "fig4_adversary.png",
        "fig5_scalability.png",
        "one_class_auc.png",
    } <= names
    for path in results.figures:
        assert (out / path.split("/")[-1]).stat().st_size > 5000


def test_quality_floors_even_in_the_reduced_run(quick_run):
    _, results = quick_run
    # 1500 training images per user instead of ~6000: floors below the full run's 97.7% / 97.3.
    assert results.overall_accuracy >= 0.93
    assert results.mean_auc >= 0.95
    assert results.paper_faithful.overall_accuracy >= 0.85
    # The improved model must beat the paper-exact one where the issue asks for it.
    assert results.mean_auc > results.paper_faithful.mean_auc


def test_stricter_policies_block_every_attack_the_paper_rule_blocks(quick_run):
    """exclude-uploader blocks a superset of what the paper's rule blocks (the uploader's models
    can only ever exempt), and any-other a superset of exclude-uploader."""
    _, results = quick_run
    for run in (results, results.paper_faithful):
        paper = np.asarray(run.adversary["paper"])
        strict = np.asarray(run.adversary["exclude-uploader"])
        widest = np.asarray(run.adversary["any-other"])
        assert np.all(strict >= paper - 1e-12)
        assert np.all(widest >= strict - 1e-12)


def test_summary_tables_render(quick_run):
    _, results = quick_run
    tables = summary_tables(results)
    assert len(tables) == 3 and tables[0].row_count == 5
