"""Every user error ends with a message and its exit code, never a traceback.

Exit codes: 0 success (check: share), 1 check: block, 2 usage error, 3 input or server error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgprivacy.cli import app
from imgprivacy.cli import guard as guard_cli
from imgprivacy.client import GuardClient

USAGE, INPUT = 2, 3


def run(*args, env: dict | None = None):
    """Invoke the CLI in-process; an exception escaping the app fails the test."""
    result = CliRunner(env={"COLUMNS": "300", **(env or {})}).invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    return result


def assert_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def started(monkeypatch):
    """uvicorn never starts here: the calls `imgprivacy serve` would make are recorded."""
    calls = []
    monkeypatch.setattr("imgprivacy.service.server.run_server", lambda **kw: calls.append(kw))
    return calls


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(folder / f"{k}.png")
    return folder


# -- wrong paths, names and devices: usage errors (2) -------------------------------------------
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["check", "/nonexistent.png", "--token", "t"], ["'/nonexistent.png' does not exist"]),
        (
            ["guard", "upload", "/nonexistent.safetensors", "--token", "t"],
            ["'/nonexistent.safetensors' does not exist"],
        ),
        (["guard", "train", "--images", "/nonexistent", "--out", "g"], ["does not exist"]),
        (["serve", "--data-dir", "/nonexistent"], ["--data-dir", "'/nonexistent' does not exist"]),
        (["serve", "--policy", "strict"], ["'strict' is not a guard policy", "margin"]),
        (
            ["serve", "--features", "vgg"],
            ["'vgg' is not a feature extractor", "pixels, pixels-smooth"],
        ),
        (
            ["anonymize", "train", "--dataset", "mnist"],
            ["choose one of: pendigits, ferg-like, att-faces"],
        ),
        (["anonymize", "train", "--ae-arch", "cnn"], ["choose one of: mlp, conv"]),
        (
            ["anonymize", "apply", "--model", "/nonexistent", "--images", ".", "--out", "o"],
            ["'/nonexistent' does not exist"],
        ),
        (["features", "train-face-extractor", "--epochs", "0"], ["--epochs"]),
        (["guard", "trian"], ["No such command 'trian'", "Did you mean 'train'"]),
        (
            ["reproduce", "anonymizer-faces", "--variation", "indoor"],
            ["'indoor' is not a FERG-like variation", "studio"],
        ),
        (["demo", "service", "--policy", "strict"], ["'strict' is not a guard policy", "margin"]),
    ],
)
def test_wrong_paths_and_names_are_usage_errors(args, fragments, started):
    assert_error(run(*args), USAGE, *fragments)
    assert started == []


@pytest.mark.parametrize(
    ("device", "fragment"),
    [
        ("foo", "'foo' is not a device; use cpu, cuda, cuda:N (N = GPU index) or mps"),
        ("cuda1", "'cuda1' is not a device"),
    ],
)
def test_a_bad_device_is_a_usage_error(images, tmp_path, device, fragment):
    result = run("guard", "train", "--images", images, "--out", tmp_path / "g", "--device", device)
    assert_error(result, USAGE, fragment)
    assert not (tmp_path / "g").exists()


def test_a_missing_accelerator_is_a_usage_error(images, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run("guard", "train", "--images", images, "--out", tmp_path / "g", "--device", "cuda")
    assert_error(result, USAGE, "CUDA is not available on this machine; use --device cpu")


def test_a_folder_given_for_a_file_and_a_file_for_a_folder(images, tmp_path):
    image = images / "0.png"
    assert_error(run("check", images, "--token", "t"), USAGE, "is a directory")
    result = run("guard", "train", "--images", image, "--out", tmp_path / "g")
    assert_error(result, USAGE, "is a file")


def test_substitute_needs_a_target_identity():
    result = run("anonymize", "train", "--substitute")
    assert_error(result, USAGE, "--substitute", "--target-identity K")


# -- unusable input: input errors (3) -----------------------------------------------------------
def test_unreadable_inputs_are_input_errors(images, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    result = run("check", text, "--token", "t")
    assert_error(result, INPUT, "error: Expected a PNG or JPEG image", str(text))
    garbage = tmp_path / "guard.safetensors"
    garbage.write_bytes(b"garbage")
    result = run("guard", "upload", garbage, "--token", "t")
    assert_error(
        result, INPUT, f"{garbage} is not a guard file written by `imgprivacy guard train`"
    )
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = run("guard", "train", "--images", images, "--out", tmp_path / "g.safetensors")
    assert_error(result, INPUT, "Could not read", "broken.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("guard", "train", "--images", empty, "--out", tmp_path / "g.safetensors")
    assert_error(result, INPUT, "Found no images")


def test_guard_train_refuses_identical_images(tmp_path):
    folder = tmp_path / "same"
    folder.mkdir()
    for k in range(6):
        Image.fromarray(np.full((28, 28), 90, np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "guard.safetensors"
    result = run(
        "guard", "train", "--images", folder, "--out", out, "--epochs", "1", "--hidden-dim", "4",
        "--negative-weight", "0",
    )  # fmt: skip
    assert_error(result, INPUT, f"refusing to write {out}: sigma is", "images are identical")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same"]


def test_a_bad_server_url_is_an_input_error():
    result = run("guard", "list", "--token", "t", "--server", "localhost:8000")
    assert_error(result, INPUT, "Expected the service URL as http://HOST:PORT", "'localhost:8000'")


def test_os_errors_name_their_path_and_end_with_code_3():
    from imgprivacy.cli.common import ImgPrivacyApp

    demo = ImgPrivacyApp()
    demo.callback()(lambda: None)  # a group, like the real app

    @demo.command()
    def write() -> None:
        raise PermissionError(13, "Permission denied", "/srv/out.png")

    result = CliRunner().invoke(demo, ["write"])
    assert result.exit_code == INPUT and isinstance(result.exception, SystemExit)
    assert "error: Permission denied: /srv/out.png. Check the path" in result.output


# -- the service's answers: check's exit codes, refusals ----------------------------------------
@pytest.fixture()
def service(monkeypatch):
    """The CLI talks to a fake service: `answers` maps a path to (status, JSON body)."""
    answers = {}

    def handler(request):
        status, body = answers[request.url.path]
        return httpx.Response(status, json=body)

    def client(server, token=None):
        return GuardClient(server, token, retries=0, transport=httpx.MockTransport(handler))

    monkeypatch.setattr(guard_cli, "client", client)
    return answers


def decision(share: bool) -> dict:
    name = "share" if share else "block"
    return {"decision": name, "share": share, "reason": "r", "policy": "margin", "alpha": 1.0}


def test_check_exits_0_to_share_1_to_block_3_on_a_refusal(service, images):
    image = images / "0.png"
    service["/v1/check"] = (200, decision(True))
    assert_error(run("check", image, "--token", "t"), 0, "share: r")
    service["/v1/check"] = (200, decision(False))
    assert_error(run("check", image, "--token", "t"), 1, "block: r")
    service["/v1/check"] = (401, {"detail": "invalid token", "problems": []})
    assert_error(run("check", image, "--token", "t"), INPUT, "error: HTTP 401: invalid token")
    service["/v1/models/diary"] = (404, {"detail": "model not found", "problems": ["diary"]})
    result = run("guard", "delete", "diary", "--token", "t")
    assert_error(result, INPUT, "error: HTTP 404: model not found - diary")


def test_missing_token_is_a_usage_error(images):
    result = run("check", images / "0.png", env={"IMGPRIVACY_TOKEN": None})
    assert_error(result, USAGE, "Missing option '--token'")


# -- serve: everything is checked before uvicorn starts, nothing is left behind ----------------
SERVICE_VARIABLES = (
    "DATABASE_URL",
    "ADMIN_TOKEN",
    "POLICY",
    "ALPHA",
    "DATA_DIR",
    "FEATURE_EXTRACTOR",
    "BATCH_MAX_SIZE",
    "ACCESS_LOG",
    "PROBE_COUNT",
)


@pytest.fixture()
def serve_in(tmp_path, monkeypatch, started):
    """A working folder with a data dir holding fashion_mnist.npz, and run_server's calls."""
    for name in SERVICE_VARIABLES:  # set then delete: serve's writes are undone after the test
        monkeypatch.setenv(f"IMGPRIVACY_{name}", "")
        monkeypatch.delenv(f"IMGPRIVACY_{name}")
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "fashion_mnist.npz").write_bytes(b"")
    return tmp_path, data, started


def test_serve_refuses_a_data_dir_without_probe_images(serve_in):
    folder, data, started = serve_in
    (data / "fashion_mnist.npz").unlink()
    result = run("serve", "--data-dir", data)
    assert_error(result, INPUT, "fashion_mnist.npz", "--data-dir")
    assert started == [] and sorted(p.name for p in folder.iterdir()) == ["data"]


def test_serve_lists_every_problem_at_once(serve_in):
    folder, data, started = serve_in
    result = run(
        "serve", "--data-dir", data, "--alpha", "-1", "--database-url", "sqlite:///nowhere/s.db"
    )
    assert_error(
        result,
        INPUT,
        "error: 2 problems:",
        "IMGPRIVACY_ALPHA: Input should be in [0.5, 4.0] standard deviations",
        f"the folder of the SQLite database nowhere/s.db does not exist; create {folder / 'nowhere'}",
    )
    result = run("serve", "--data-dir", data, "--database-url", "nonsense")
    assert_error(result, INPUT, "database URL 'nonsense' is not a SQLAlchemy URL")
    (folder / "notes.db").write_text("not a database")
    result = run("serve", "--data-dir", data, "--database-url", "sqlite:///notes.db")
    assert_error(result, INPUT, "notes.db is not a SQLite database")
    result = run("serve", "--data-dir", data, "--features", "faces-cnn", env={
        "IMGPRIVACY_FACE_EXTRACTOR": str(folder / "missing.safetensors")})  # fmt: skip
    assert_error(result, INPUT, "No face extractor at", "train-face-extractor")
    assert started == [] and sorted(p.name for p in folder.iterdir()) == ["data", "notes.db"]


def test_serve_reports_bad_environment_values(serve_in):
    _, data, started = serve_in
    result = run("serve", "--data-dir", data, env={"IMGPRIVACY_ALPHA": "wide"})
    assert_error(result, INPUT, "IMGPRIVACY_ALPHA: Input should be a valid number", "'wide'")
    assert started == []


def test_serve_checks_the_guard_and_probe_values_with_everything_else(serve_in):
    folder, data, started = serve_in
    env = {"IMGPRIVACY_BREADTH_RATIO": "0.5", "IMGPRIVACY_PROBE_SEED": "-1"}
    result = run("serve", "--data-dir", data, "--database-url", "sqlite:///nowhere/s.db", env=env)
    assert_error(
        result,
        INPUT,
        "error: 3 problems:",
        "IMGPRIVACY_BREADTH_RATIO: Input should be greater than or equal to 1, got '0.5'",
        "IMGPRIVACY_PROBE_SEED: Input should be an integer >= 0, or none for a secret one, "
        "got '-1'",
        "the folder of the SQLite database nowhere/s.db does not exist",
    )
    assert started == [] and sorted(p.name for p in folder.iterdir()) == ["data"]


def test_serve_refuses_a_port_in_use(serve_in):
    _, data, started = serve_in
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", "--data-dir", data, "--port", port)
    assert_error(result, INPUT, f"cannot listen on 127.0.0.1:{port}", "--port")
    assert started == []


def test_serve_starts_uvicorn_once_everything_is_right(serve_in):
    folder, data, started = serve_in
    url = f"sqlite:///{folder / 'service.db'}"
    result = run(
        "serve", "--data-dir", data, "--database-url", url, "--policy", "paper", "--port", 0
    )
    assert_error(result, 0)
    assert started == [{"host": "127.0.0.1", "port": 0, "workers": 1}]
    assert (
        os.environ["IMGPRIVACY_POLICY"] == "paper" and os.environ["IMGPRIVACY_DATABASE_URL"] == url
    )
    assert not (folder / "service.db").exists()  # the workers create it, not the checks


# -- in a fresh process: no traceback, no torch --------------------------------------------------
def run_cli_process(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `imgprivacy ARGS` in a new interpreter; also return the heavy modules it imported."""
    code = (
        "import sys\n"
        "from imgprivacy.cli import app\n"
        "try:\n"
        "    app()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(sorted({'torch', 'sklearn'} & set(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )
    heavy = result.stdout.strip().splitlines()[-1]
    return result, heavy


def test_help_imports_neither_torch_nor_sklearn():
    result, heavy = run_cli_process("--help")
    assert result.returncode == 0, result.stderr
    assert "Exit codes: 0 success (check: share), 1 check: block, 2 usage error" in result.stdout
    assert heavy == "[]"


def test_check_against_a_service_that_is_down(tmp_path):
    image = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(image)
    server = f"http://127.0.0.1:{closed_port()}"
    result, heavy = run_cli_process("check", str(image), "--token", "t", "--server", server)
    assert result.returncode == INPUT
    assert f"error: no answer: cannot reach {server}" in result.stderr
    assert "Traceback" not in result.stderr
    assert heavy == "[]"


def test_the_client_imports_neither_torch_nor_sklearn():
    code = (
        "import sys\n"
        "from imgprivacy.client import GuardClient\n"
        "print(sorted({'torch', 'sklearn'} & set(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_serve_refuses_several_workers_on_a_local_ray_bank(serve_in, monkeypatch):
    pytest.importorskip("ray")
    folder, data, started = serve_in
    for name in ("IMGPRIVACY_BANK", "IMGPRIVACY_RAY_ADDRESS"):  # serve's writes undone after
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    url = f"sqlite:///{folder / 'service.db'}"
    args = ("serve", "--data-dir", data, "--database-url", url, "--port", 0, "--bank", "ray")
    result = run(*args, "--workers", 2)
    assert_error(
        result,
        INPUT,
        "--bank ray with --workers 2 needs --ray-address",
        "every worker starts its own local Ray",
        "`ray start --head`",
        "--ray-address 127.0.0.1:6379",
    )
    assert started == []
    result = run(*args, "--workers", 2, "--ray-address", "127.0.0.1:6379")
    assert_error(result, 0)
    assert started == [{"host": "127.0.0.1", "port": 0, "workers": 2}]
    assert run(*args, "--workers", 1).exit_code == 0  # one worker may start a local Ray


def test_python_m_service_refuses_several_workers_on_a_local_ray_bank():
    env = {k: v for k, v in os.environ.items() if k != "IMGPRIVACY_RAY_ADDRESS"}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), IMGPRIVACY_BANK="ray")
    result = subprocess.run(
        [sys.executable, "-m", "imgprivacy.service", "--port", "0", "--workers", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert "error: --bank ray with --workers 3 needs --ray-address" in result.stderr
    assert "Traceback" not in result.stderr
