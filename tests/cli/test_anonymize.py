import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgprivacy.cli import app
from imgprivacy.data.paths import resolve_data_dir
from tests.conftest import tiny_config
from tests.reproduce.result_keys import assert_same_keys


def test_apply_anonymizes_a_folder(fitted, tiny_data, tmp_path):
    images, _ = tiny_data
    model = fitted.save(tmp_path / "anon.safetensors")
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.kron(images[i], np.ones((2, 2), np.uint8))).save(folder / f"d{i}.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["anonymize", "apply", "--model", str(model), "--images", str(folder), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["d0.png", "d1.png", "d2.png"]
    assert np.asarray(Image.open(out / "d0.png")).shape == (8, 8)


def test_apply_reports_a_missing_model(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "anonymize",
            "apply",
            "--model",
            str(tmp_path / "x"),
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "Invalid value for '--model'" in result.output


@pytest.mark.skipif(
    not (resolve_data_dir() / "pendigits_orig.npz").is_file(),
    reason="needs the shared pendigits_orig.npz",
)
def test_reproduce_anonymizer_pendigits_prints_the_sweep(monkeypatch, tmp_path):
    from imgprivacy.anonymizer.evaluate import AttackConfig
    from imgprivacy.anonymizer.warp_game import WarpGameConfig
    from imgprivacy.reproduce import anonymizer_pendigits as reproduce
    from imgprivacy.reproduce.anonymizer_pendigits_frontier import FrontierSettings

    tiny = reproduce.SweepSettings(
        lambdas=(0.0, 1.0),
        anonymizer=tiny_config(
            image_size=20, pretrain_epochs=1, disc_pretrain_epochs=1, adversarial_epochs=1
        ),
        attack=AttackConfig(families=("random_forest",), trees=5, n_jobs=1),
        raw_families=("random_forest", "knn"),
        frontier=FrontierSettings(
            lambdas=(0.0, 1.0),
            prototype_counts=(10,),
            warp=WarpGameConfig(epochs=1, hidden=8, private_hidden=16, private_refresh_epochs=1),
            attack=AttackConfig(families=("random_forest", "knn"), trees=5, n_jobs=1),
        ),
    )
    monkeypatch.setattr(reproduce.SweepSettings, "quick", classmethod(lambda cls, seed=0: tiny))
    out = tmp_path / "anon"
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["reproduce", "anonymizer-pendigits", "--quick", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "lambda=1" in result.output and "originals" in result.output
    assert "best lambda=" in result.output and "results.json" in result.output
    assert_same_keys(out / "results.json", "anonymizer-pendigits")
    stored = json.loads((out / "results.json").read_text())
    assert [row["lambda"] for row in stored["sweep"]] == [0.0, 1.0]
    assert f"best lambda={stored['best']['lambda']:g}: writer" in result.output
