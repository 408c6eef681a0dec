"""`reproduce anonymizer-faces` end to end on a tiny run: files, keys, values, the manifest path."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.evaluate import AttackConfig
from imgprivacy.anonymizer.presets import (
    faces_anonymizer_config,
    faces_code_match_config,
    faces_swap_config,
)
from imgprivacy.errors import InvalidInputError
from imgprivacy.reports.results import results_json
from imgprivacy.reproduce.anonymizer_faces import FacesSettings, reproduce_anonymizer_faces
from imgprivacy.reproduce.anonymizer_faces_output import summary_rows
from imgprivacy.reproduce.anonymizer_results import FacesGoal, FacesResult
from tests.reproduce.result_keys import assert_same_keys

TINY = FacesSettings(
    per_cell=4,
    targets=(0, 2),
    anonymizer=faces_anonymizer_config(
        ae_channels=4,
        code_dim=8,
        disc_hidden=16,
        private_hidden=16,
        pretrain_epochs=1,
        disc_pretrain_epochs=1,
        adversarial_epochs=1,
        private_refresh_epochs=1,
    ),
    swap=faces_swap_config(channels=2, code_dim=4, adversary_hidden=8, epochs=1),
    code_match=faces_code_match_config(channels=2, code_dim=4, projection_dim=4, epochs=1),
    methods=("code_match", "swap"),
    attack=AttackConfig(cnn_epochs=1, cnn_channels=4, trees=5, n_jobs=1),
    transfer_held_out=(0,),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("faces")
    return out, reproduce_anonymizer_faces(out=out, settings=TINY)


def test_results_hold_the_issue_keys(tiny_run):
    out, results = tiny_run
    stored = json.loads((out / "results.json").read_text())
    assert set(stored) >= {"baseline", "standard", "intertwined", "standard_no_substitution"}
    for row in [stored["baseline"], stored["standard_no_substitution"], *stored["standard"]]:
        assert 0 <= row["identity_accuracy"] <= 1 and 0 <= row["expression_accuracy"] <= 1
    assert [r["target_identity"] for r in stored["intertwined"]] == [0, 2]
    assert [r["target_identity"] for r in stored["standard"]] == [0, 2]
    assert stored["intertwined"][1]["paper"] == {
        "identity_accuracy": 0.3825,
        "expression_accuracy": 0.7746,
    }
    test_identity = results_identity_of_test(results)
    assert stored["chance"]["identity_accuracy"] == pytest.approx(
        np.bincount(test_identity).max() / len(test_identity)
    )
    rows = summary_rows(results)
    names = [row[0] for row in rows]
    assert names[0] == "originals" and rows[-1][0] == "goal" and rows[-2][0] == "chance"
    row = rows[names.index("intertwined, target 2")]
    assert row[5] == "38.2%"  # the paper's identity accuracy for target 2
    assert rows[names.index("identity swap, target 2")][5] == "38.2%"
    assert "identity swap + nearest in z, target 0" in names
    assert [r["target_identity"] for r in stored["swap"]] == [0, 2]
    assert [r["target_identity"] for r in stored["code_match"]] == [0, 2]
    assert rows[names.index("code match (nearest target image), target 2")][6] == "77.5%"
    assert [r["target_identity"] for r in stored["swap_code_nearest"]] == [0, 2]
    methods = {"standard", "intertwined", "code_match", "swap", "swap_code_nearest"}
    assert set(stored["goal_met_by"]) == set(stored["paper_bar_met_by"]) == methods
    assert list(stored["expression_transfer"]["per_identity"]) == ["0"]


def results_identity_of_test(results):
    from imgprivacy.data.synthetic.ferg_like import FERG_VARIATIONS, generate_ferg_like

    faces = generate_ferg_like(per_cell=4, seed=0, config=FERG_VARIATIONS[TINY.variation])
    return faces.identity[faces.split == 2]


def test_results_json_keeps_its_keys_and_is_the_typed_result(tiny_run):
    out, results = tiny_run
    assert isinstance(results, FacesResult)
    assert_same_keys(out / "results.json", "anonymizer-faces")
    stored = json.loads((out / "results.json").read_text())
    assert stored == results_json(dataclasses.asdict(results))
    assert isinstance(results.config, AnonymizerConfig) and results.config.seed == 0
    assert stored["config"] == results.config.to_dict()
    assert isinstance(results.goal, FacesGoal)
    assert results.goal.identity_accuracy_at_most == pytest.approx(
        results.chance["identity_accuracy"] + 0.10
    )
    assert results.paper_chance == {"identity_accuracy": 1 / 6, "expression_accuracy": 1 / 7}
    assert results.attack.families == ["cnn", "random_forest"] and results.attack.trees == 5


def test_processed_images_are_saved_per_run(tiny_run):
    out, _ = tiny_run
    names = sorted(p.stem for p in (out / "anonymized").glob("*.npz"))
    assert names == [
        "code_match_target_0",
        "code_match_target_2",
        "intertwined_target_0",
        "intertwined_target_2",
        "standard",
        "standard_target_0",
        "standard_target_2",
        "swap_code_nearest_target_0",
        "swap_code_nearest_target_2",
        "swap_target_0",
        "swap_target_2",
    ]
    with np.load(out / "anonymized" / "intertwined_target_2.npz") as run:
        images, identity, split = run["images"], run["identity"], run["split"]
        assert images.dtype == np.uint8 and images.shape == (168, 50, 50)
        assert set(np.unique(run["expression"])) == set(range(7))
    # every released image of the intertwined run is a training image of identity 2
    with np.load(out / "anonymized" / "standard.npz") as raw:
        assert not np.array_equal(raw["images"], images)
    from imgprivacy.data.synthetic.ferg_like import FERG_VARIATIONS, generate_ferg_like

    faces = generate_ferg_like(per_cell=4, seed=0, config=FERG_VARIATIONS[TINY.variation])
    pool = faces.images[(faces.split == 0) & (faces.identity == 2)].reshape(-1, 2500)
    flat = images.reshape(len(images), 1, -1)
    assert (flat == pool[None]).all(-1).any(-1).all()
    assert np.array_equal(identity, faces.identity) and np.array_equal(split, faces.split)
    with np.load(out / "anonymized" / "code_match_target_2.npz") as run:  # the same for code match
        assert (run["images"].reshape(len(images), 1, -1) == pool[None]).all(-1).any(-1).all()


def test_figures_are_written(tiny_run):
    out, results = tiny_run
    names = {p.name for p in out.glob("*.png")}
    assert {
        "table1_accuracy.png",
        "fig3_evolution_standard.png",
        "fig3_evolution_intertwined_target_0.png",
        "fig4_pairs_intertwined_target_0.png",
        "fig4_pairs_intertwined_target_0_released.png",
        "fig3_evolution_swap_target_0.png",
        "fig4_pairs_swap_target_2.png",
        "fig4_pairs_swap_code_nearest_target_0.png",
        "fig4_pairs_code_match_target_2.png",
    } <= names
    assert "fig3_evolution_swap_target_2.png" not in names  # one swap training, one Fig. 3
    assert all(str(out / n) in results.figures for n in names)
    with Image.open(out / "fig3_evolution_intertwined_target_0.png") as image:
        assert image.size[0] > 200


def test_bad_targets_and_missing_utility_label_are_refused(tmp_path):
    settings = FacesSettings(per_cell=1, targets=(7,), anonymizer=TINY.anonymizer)
    with pytest.raises(InvalidInputError, match=r"among the 6 private classes \(0..5\), got \[7\]"):
        reproduce_anonymizer_faces(out=tmp_path, settings=settings)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,identity\n")
    with pytest.raises(InvalidInputError, match="needs a utility label"):
        reproduce_anonymizer_faces(
            out=tmp_path, settings=TINY, manifest=manifest, utility_label=None
        )


def test_runs_on_a_manifest(tmp_path):
    """The bring-your-own path: a folder of PNGs of another size and a CSV with two labels."""
    from imgprivacy.data.synthetic.ferg_like import generate_ferg_like

    faces = generate_ferg_like(per_cell=3, seed=1)
    lines = ["path,person,mood"]
    for i, image in enumerate(faces.images):
        Image.fromarray(image).resize((64, 64)).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png,p{faces.identity[i]},{faces.expression_names[faces.expression[i]]}")
    (tmp_path / "faces.csv").write_text("\n".join(lines) + "\n")
    settings = FacesSettings(
        targets=(1,), anonymizer=TINY.anonymizer, attack=TINY.attack, per_cell=0
    )
    results = reproduce_anonymizer_faces(
        out=tmp_path / "out",
        settings=settings,
        manifest=tmp_path / "faces.csv",
        private_label="person",
        utility_label="mood",
    )
    assert results.data.private_classes == ["p0", "p1", "p2", "p3", "p4", "p5"]
    assert results.private_key == "person_accuracy" and results.utility_key == "mood_accuracy"
    assert "person_accuracy" in results.intertwined[0]
    assert results.intertwined[0]["paper"] is None and results.paper_chance is None
    rows = summary_rows(results)
    assert rows[-2][5:] == ("-", "-")  # no FERG chance beside a manifest's
    with np.load(tmp_path / "out" / "anonymized" / "intertwined_target_1.npz") as run:
        assert set(run.files) == {"images", "person", "mood", "split"}
