import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from imgprivacy.cli import app

runner = CliRunner()


def test_help_lists_command_groups():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "reproduce" in result.output


def test_reproduce_help_explains_docl_mnist():
    result = runner.invoke(app, ["reproduce", "docl-mnist", "--help"])
    assert result.exit_code == 0
    for option in ("--out", "--quick", "--data-dir", "--seed", "--device"):
        assert option in result.output


def test_missing_data_is_a_clear_error_not_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from imgprivacy.cli import app; app()",
            "reproduce",
            "docl-mnist",
            "--quick",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 3
    assert "mnist.npz" in result.stderr and "--data-dir" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "resume"), [([], True), (["--resume"], True), (["--restart"], False)]
)
def test_anonymize_train_resumes_from_its_checkpoint_by_default(
    monkeypatch, tmp_path, flags, resume
):
    from imgprivacy.anonymizer import Anonymizer

    calls = []
    monkeypatch.setattr(
        "imgprivacy.cli.anonymize.training_images",
        lambda **kwargs: (np.zeros((4, 20, 20), np.uint8), np.arange(4) % 2, "four images"),
    )

    def fit(self, images, labels, **kwargs):
        calls.append(kwargs)
        return self

    monkeypatch.setattr(Anonymizer, "fit", fit)
    monkeypatch.setattr(Anonymizer, "save", lambda self, path: path)
    checkpoint = tmp_path / "run.ckpt"
    checkpoint.write_bytes(b"")
    result = runner.invoke(
        app,
        [
            "anonymize",
            "train",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "m"),
            *flags,
        ],
    )
    assert result.exit_code == 0, result.output
    assert calls[0]["resume"] is resume and calls[0]["checkpoint"] == checkpoint
    assert ("resuming from" in result.output) is resume


def test_training_commands_share_the_resume_spelling():
    for command in (["guard", "train"], ["anonymize", "train"]):
        result = CliRunner(env={"COLUMNS": "200"}).invoke(app, [*command, "--help"])
        assert "--resume" in result.output and "--restart" in result.output
        assert "[default: resume]" in result.output


def test_help_lists_the_choices_of_every_closed_set():
    from imgprivacy.anonymizer import AnonymizerConfig
    from imgprivacy.anonymizer.presets import faces_anonymizer_config
    from imgprivacy.data.registry import DATASETS
    from imgprivacy.docl import POLICIES
    from imgprivacy.features import FEATURES

    wide = CliRunner(env={"COLUMNS": "400"})
    serve_help = wide.invoke(app, ["serve", "--help"]).output
    assert f"<{'|'.join(POLICIES)}>" in serve_help and f"<{'|'.join(FEATURES)}>" in serve_help
    train_help = wide.invoke(app, ["anonymize", "train", "--help"]).output
    assert f"<{'|'.join(DATASETS)}>" in train_help and "<mlp|conv>" in train_help
    digits, faces = AnonymizerConfig(), faces_anonymizer_config()
    assert f"(default: {digits.lam} pen-digits, {faces.lam} faces)" in train_help
    guard_help = wide.invoke(app, ["guard", "train", "--help"]).output
    assert f"<{'|'.join(FEATURES)}>" in guard_help and "<cpu|cuda|cuda:N|mps>" in guard_help
