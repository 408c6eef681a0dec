"""The distribution: the wheel holds what the installed package reads at run time, the command
line and the edge client run without the ML stack, and the Makefile's torch pin lies in
pyproject's range."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from imgprivacy.service.migrations import head_revision

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
ML = {"torch", "scikit-learn", "matplotlib"}
# Import names of the `ml` and `service` extras: a client-only install has none of them.
NOT_IN_A_CLIENT_INSTALL = {
    "torch", "scipy", "sklearn", "matplotlib", "fastapi", "starlette", "uvicorn", "sqlalchemy",
    "alembic", "pydantic_settings", "psycopg", "prometheus_client",
}  # fmt: skip


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_makefile_torch_pin_lies_in_the_ml_range():
    pin = re.search(r"pip install --quiet torch==(\S+)", (ROOT / "Makefile").read_text())
    assert pin, "the Makefile should install a pinned CPU torch before the project"
    (torch,) = [
        r for r in map(Requirement, project()["optional-dependencies"]["ml"]) if r.name == "torch"
    ]
    assert torch.specifier.contains(pin.group(1)), (pin.group(1), str(torch.specifier))


def test_the_base_install_needs_no_ml_stack_and_the_full_one_has_it():
    extras = project()["optional-dependencies"]
    assert not {Requirement(r).name for r in project()["dependencies"]} & ML
    assert {Requirement(r).name for r in extras["ml"]} >= ML
    assert "httpx" in {Requirement(r).name for r in extras["client"]}
    # `make` installs `.[dev]`, which must reach `ml` and `client` through `service`.
    assert Requirement(next(r for r in extras["dev"] if r.startswith("imgprivacy"))).extras == {
        "service"
    }
    service = Requirement(next(r for r in extras["service"] if r.startswith("imgprivacy")))
    assert service.extras == {"ml", "client"}


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from a copy of the sources (the checkout stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", tree / "src", ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    built = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        str(tree),
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--wheel-dir",
        str(tmp / "dist"),
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = (tmp / "dist").glob("imgprivacy-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_holds_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    features = {
        f"imgprivacy/features/{p.name}" for p in (ROOT / "src/imgprivacy/features").glob("*.json")
    }
    assert features and features <= names
    assert {
        "imgprivacy/py.typed",
        "imgprivacy/docl/bank_kernel.c",  # the bank's native kernel, compiled on first use
        "imgprivacy/service/migrations/env.py",
        "imgprivacy/service/migrations/script.py.mako",
        "imgprivacy/service/migrations/versions/0001_baseline.py",
    } <= names
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = zipfile.ZipFile(wheel).read(metadata).decode()
    unconditional = {
        Requirement(line.split(":", 1)[1]).name
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    assert unconditional and not unconditional & ML


@pytest.mark.slow
def test_the_installed_wheel_runs_without_the_ml_stack(wheel, tmp_path):
    venv = tmp_path / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--no-deps",
        "--no-index",
        "--ignore-installed",
        str(wheel),
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # The dependencies come from this environment (a plain path entry: its editable install of
    # imgprivacy is not activated); IMGPRIVACY_TEST_CLIENT_ONLY makes the ML stack unimportable.
    site = Path(
        _run(
            str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        ).stdout.strip()
    )
    paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_parent_env.pth").write_text("\n".join(paths) + "\nimport _client_only\n")
    (site / "_client_only.py").write_text(
        "import importlib.abc, os, sys\n"
        f"BLOCKED = {NOT_IN_A_CLIENT_INSTALL!r}\n"
        "class _Blocker(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "if os.environ.get('IMGPRIVACY_TEST_CLIENT_ONLY'):\n"
        "    sys.meta_path.insert(0, _Blocker())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    client_only = {**env, "IMGPRIVACY_TEST_CLIENT_ONLY": "1", "COLUMNS": "200"}

    where = _run(str(python), "-c", "import imgprivacy; print(imgprivacy.__file__)", env=env)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    blocked = _run(str(python), "-c", "import torch", env=client_only)
    assert "No module named 'torch'" in blocked.stderr  # the stand-in for a client-only install

    cli = str(venv / "bin" / "imgprivacy")
    helped = _run(cli, "--help", env=client_only)
    assert helped.returncode == 0, helped.stderr
    assert "check" in helped.stdout and "guard" in helped.stdout
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        server = f"http://127.0.0.1:{probe.getsockname()[1]}"
    checked = _run(cli, "check", str(image), "--token", "t", "--server", server, env=client_only)
    assert checked.returncode == 3, checked.stdout + checked.stderr  # input or server error
    assert f"cannot reach {server}" in checked.stderr
    typed = _run(
        str(python),
        "-c",
        "from importlib.resources import files\n"
        "from imgprivacy.client import GuardClient\n"
        "print(files('imgprivacy').joinpath('py.typed').is_file())",
        env=client_only,
    )
    assert typed.stdout.strip() == "True", typed.stderr

    # The migrations run from the installed package (full environment).
    url = f"sqlite:///{tmp_path / 'service.db'}"
    migrated = _run(
        str(python),
        "-c",
        "import sys\n"
        "from imgprivacy.service.migrations import head_revision, upgrade_schema\n"
        "upgrade_schema(sys.argv[1])\n"
        "print(head_revision(), upgrade_schema(sys.argv[1]))",
        url,
        env=env,
    )
    assert migrated.returncode == 0, migrated.stderr
    head = head_revision()  # of the sources
    assert migrated.stdout.strip() == f"{head} ('{head}',)"
