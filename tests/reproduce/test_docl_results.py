"""The DOCL reproductions through the CLI on tiny settings (real data, slow): typed results whose
``dataclasses.asdict`` is results.json with its stored keys, tables read from attributes, and
docl-faces giving the same numbers twice for one seed."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from imgprivacy.cli import app
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.evaluate import GuardPoint
from imgprivacy.features.faces import FaceNetConfig
from imgprivacy.reports.results import results_json
from imgprivacy.reproduce import docl_cifar10, docl_faces, docl_mnist
from imgprivacy.reproduce.docl_results import (
    DoclCifar10Result,
    DoclFacesResult,
    DoclMnistResult,
    DoclRun,
    ErrorStatistics,
    FeatureRun,
    OperatingPoint,
)
from tests.reproduce.result_keys import assert_same_keys

pytestmark = pytest.mark.slow

TINY_EXTRACTOR = FaceNetConfig(channels=(4, 8), embedding_dim=256, epochs=1)
TIMINGS = {"seconds", "train_seconds_total", "train_seconds_per_user", "figures"}


def one_epoch(configs: dict[str, AutoencoderConfig]) -> dict[str, AutoencoderConfig]:
    return {label: config.replace(epochs=1) for label, config in configs.items()}


def run_cli(module, function: str, args: list[str], **extra):
    """Invoke ``imgprivacy reproduce ...`` and return (printed output, the returned result)."""
    captured = {}
    reproduce = getattr(module, function)

    def capture(**kwargs):
        captured["result"] = reproduce(**kwargs, **extra)
        return captured["result"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, function, capture)
        result = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["reproduce", *args])
    assert result.exit_code == 0, result.output
    return result.output, captured["result"]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("docl-mnist")
    configurations = docl_mnist.configurations
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            docl_mnist, "QUICK", dict(train_per_class=30, test_per_class=10, public_count=40)
        )
        patch.setattr(
            docl_mnist,
            "configurations",
            lambda quick, **kwargs: one_epoch(configurations(quick, **kwargs)),
        )
        args = ["docl-mnist", "--quick", "--data-dir", str(data_dir), "--out", str(out)]
        return out, *run_cli(docl_mnist, "reproduce_docl_mnist", args)


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("docl-cifar10")
    configurations = docl_cifar10.configurations
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            docl_cifar10, "QUICK", dict(train_per_class=10, test_per_class=5, public_count=20)
        )
        patch.setattr(
            docl_cifar10,
            "configurations",
            lambda features=docl_cifar10.FEATURES: one_epoch(configurations(features)),
        )
        args = ["docl-cifar10", "--quick", "--data-dir", str(data_dir), "--out", str(out)]
        return out, *run_cli(docl_cifar10, "reproduce_docl_cifar10", args)


@pytest.fixture(scope="module")
def faces_runs(tmp_path_factory, data_dir):
    """The same tiny docl-faces command twice, into two folders."""
    runs = []
    configurations = docl_faces.configurations
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(docl_faces, "configurations", lambda quick: one_epoch(configurations(quick)))
        for name in ("first", "second"):
            out = tmp_path_factory.mktemp(f"docl-faces-{name}")
            args = ["docl-faces", "--quick", "--data-dir", str(data_dir), "--out", str(out)]
            runs.append(
                (
                    out,
                    *run_cli(
                        docl_faces, "reproduce_docl_faces", args, extractor_config=TINY_EXTRACTOR
                    ),
                )
            )
    return runs


def check_written(out, results, experiment: str) -> dict:
    assert_same_keys(out / "results.json", experiment)
    stored = json.loads((out / "results.json").read_text())
    assert stored == results_json(dataclasses.asdict(results))
    assert stored["experiment"] == results.experiment == experiment
    return stored


def test_docl_mnist_result_is_typed_and_written_with_its_keys(mnist_run):
    out, printed, results = mnist_run
    assert isinstance(results, DoclMnistResult) and isinstance(results, DoclRun)
    stored = check_written(out, results, "docl-mnist")
    assert isinstance(results.paper_faithful, DoclRun)
    assert isinstance(results.config, AutoencoderConfig)
    assert stored["config"] == results.config.to_dict() and results.config.input_dim == 784
    # the default run trains as a device does: against the public negative set
    assert stored["config"]["negative_weight"] == 1.0
    assert stored["paper_faithful"]["config"]["negative_weight"] == 0.0
    assert isinstance(results.guard["paper"][0], GuardPoint)
    assert [p.alpha for p in results.guard["paper"]] == [1.0, 1.5, 2.0]
    assert results.error_statistics[0] == ErrorStatistics(
        user="u0",
        mu=stored["error_statistics"][0]["mu"],
        sigma=stored["error_statistics"][0]["sigma"],
    )
    assert results.data.train_images == 300 and stored["data"]["train_images"] == 300
    assert len(results.adversary["paper"]) == 10 and results.adversary_epochs == 1
    assert "DOCL on MNIST: ours beside the paper (--quick)" in printed
    assert "u7 attacking u2" in printed and str(out / "results.json") in printed.replace("\n", "")
    assert {p.split("/")[-1] for p in results.figures} >= {"fig4_adversary_paper_faithful.png"}


def test_docl_cifar10_result_is_typed_and_written_with_its_keys(cifar_run):
    out, printed, results = cifar_run
    assert isinstance(results, DoclCifar10Result)
    stored = check_written(out, results, "docl-cifar10")
    assert results.main_run == "default" and set(results.runs) == {"default", "paper_faithful"}
    assert all(isinstance(run, FeatureRun) for run in results.runs.values())
    assert results.overall_accuracy == results.runs["default"].overall_accuracy
    point = results.runs["paper_faithful"].operating_points["paper"]
    assert isinstance(point, OperatingPoint) and isinstance(point.meets_goal, bool)
    assert stored["runs"]["paper_faithful"]["operating_points"]["paper"] == point.to_dict()
    assert results.data.feature_dim == 128 and results.variant == "lossless"
    assert results.data.feature_extractor == "resnet-pair-cifar"
    assert "DOCL on CIFAR-10 (lossless, resnet-pair-cifar features)" in printed
    assert "Best Guard operating point per policy" in printed


def test_docl_faces_result_is_typed_and_written_with_its_keys(faces_runs):
    out, printed, results = faces_runs[0]
    assert isinstance(results, DoclFacesResult)
    check_written(out, results, "docl-faces")
    assert results.face_extractor == str(out / "models" / docl_faces.EXTRACTOR_FILE)
    assert results.identities["face extractor training"] == list(range(16, 38))
    assert set(results.runs) == {"m32", "m132"} and results.data.feature_dim == 256
    assert "DOCL on faces (Extended Yale B, faces-cnn features)" in printed


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_docl_faces_gives_the_same_numbers_twice_for_one_seed(faces_runs):
    (first_out, _, first), (second_out, _, second) = faces_runs
    stored = [json.loads((out / "results.json").read_text()) for out in (first_out, second_out)]
    for results in stored:
        results.pop("face_extractor")  # each run's own folder
    assert without_timings(stored[0]) == without_timings(stored[1])
    assert (first_out / "models" / docl_faces.EXTRACTOR_FILE).read_bytes() == (
        second_out / "models" / docl_faces.EXTRACTOR_FILE
    ).read_bytes()
