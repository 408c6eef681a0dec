"""The CLI of the intertwined method: `anonymize train --manifest ... --target-identity K
--substitute`, `anonymize apply`, and `reproduce anonymizer-faces`."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgprivacy.anonymizer import Anonymizer
from imgprivacy.cli import app
from imgprivacy.data.paths import resolve_data_dir
from imgprivacy.data.synthetic.ferg_like import FERG_VARIATIONS, generate_ferg_like
from tests.reproduce.result_keys import assert_same_keys

SMALL = 24  # the manifest's images are 64x64 PNGs, trained at SMALL x SMALL


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    faces = generate_ferg_like(per_cell=2, seed=3, config=FERG_VARIATIONS["studio"])
    lines = ["path,person,mood"]
    for i, image in enumerate(faces.images):
        Image.fromarray(image).resize((64, 64)).save(folder / f"{i:03d}.png")
        lines.append(f"{i:03d}.png,{faces.identity[i]},{faces.expression[i]}")
    (folder / "faces.csv").write_text("\n".join(lines) + "\n")
    return folder / "faces.csv", faces


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_train_on_a_manifest_with_target_and_substitution(manifest, tmp_path):
    csv, faces = manifest
    model_path = tmp_path / "anon.safetensors"
    result = invoke(
        "anonymize", "train", "--manifest", csv, "--private-label", "person",
        "--image-size", SMALL, "--target-identity", 1, "--substitute",
        "--pretrain-epochs", 1, "--disc-pretrain-epochs", 1, "--adversarial-epochs", 1,
        "--out", model_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "substitution=target" in result.output and "target identity 1" in result.output
    model = Anonymizer.load(model_path)
    assert model.config.target_identity == 1 and model.config.image_size == SMALL
    assert model.config.ae_arch == "conv"
    assert len(model.substitution_.references_) == int((faces.identity == 1).sum())

    out = tmp_path / "out"
    result = invoke("anonymize", "apply", "--model", model_path, "--images", csv.parent,
                    "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    released = np.stack([np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))])
    references = model.substitution_.references_.numpy()
    flat = released.reshape(len(released), 1, -1)
    assert released.shape == (len(faces.images), SMALL, SMALL)
    assert (flat == references[None]).all(-1).any(-1).all()  # each is a person-1 image


def test_substitute_without_target_is_refused(manifest, tmp_path):
    csv, _ = manifest
    result = CliRunner().invoke(
        app, ["anonymize", "train", "--manifest", str(csv), "--private-label", "person",
              "--substitute", "--out", str(tmp_path / "m")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--target-identity" in result.output


def test_manifest_with_an_unknown_column_names_the_columns(manifest, tmp_path):
    csv, _ = manifest
    result = CliRunner().invoke(
        app, ["anonymize", "train", "--manifest", str(csv), "--private-label", "face",
              "--out", str(tmp_path / "m")],
    )  # fmt: skip
    assert result.exit_code == 3
    message = result.output
    assert "face" in message and "person" in message and "mood" in message


def test_reproduce_anonymizer_faces_prints_table1(monkeypatch, tmp_path):
    from imgprivacy.reproduce import anonymizer_faces
    from tests.reproduce.test_anonymizer_faces import TINY

    monkeypatch.setattr(
        anonymizer_faces.FacesSettings,
        "quick",
        classmethod(lambda cls, seed=0: dataclasses.replace(TINY, targets=(0,))),
    )
    out = tmp_path / "faces"
    result = CliRunner(env={"COLUMNS": "220"}).invoke(
        app, ["reproduce", "anonymizer-faces", "--quick", "--targets", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "intertwined, target 3" in result.output
    assert "paper identity" in result.output and "36.2%" in result.output  # paper, target 3
    stored = json.loads((out / "results.json").read_text())
    assert [r["target_identity"] for r in stored["intertwined"]] == [3]
    assert "variation=studio" in stored["data"]["source"]
    assert_same_keys(out / "results.json", "anonymizer-faces")


@pytest.mark.skipif(
    not (resolve_data_dir() / "att_faces.npz").is_file(), reason="needs the shared att_faces.npz"
)
def test_train_on_att_faces_the_single_label_path(tmp_path):
    model_path = tmp_path / "att.safetensors"
    result = invoke(
        "anonymize", "train", "--dataset", "att-faces", "--image-size", SMALL,
        "--target-identity", 5, "--substitute", "--pretrain-epochs", 1,
        "--disc-pretrain-epochs", 1, "--adversarial-epochs", 1, "--out", model_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "training on 400 images: AT&T faces" in result.output
    model = Anonymizer.load(model_path)
    assert model.config.n_private == 40
    assert len(model.substitution_.references_) == 10  # 10 photos of s6
