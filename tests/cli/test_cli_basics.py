import subprocess
import sys

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
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert result.returncode == 2
    assert "mnist.npz" in result.stderr and "--data-dir" in result.stderr
    assert "Traceback" not in result.stderr
