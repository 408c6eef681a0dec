import numpy as np
from PIL import Image
from typer.testing import CliRunner

from imgprivacy.cli import app


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
    assert result.exit_code != 0
