"""Every upload validation failure is a 4xx with a stable detail, and storage stays unchanged."""

from __future__ import annotations

import json

import httpx
import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from sqlalchemy import event, insert

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
from imgprivacy.docl.persistence import METADATA_KEY, expected_shapes, read_metadata
from imgprivacy.errors import SchemaError
from imgprivacy.service.probe import PROBE_SOURCES, build_probe_set, deployment_probe_seed
from imgprivacy.service.storage import Storage, make_engine
from imgprivacy.service.tables import ServiceSecret
from imgprivacy.service.validation import cost_problems, model_flops, statistics_problems
from tests.service.conftest import TEST_CONFIG


def rebuild(blob: bytes, *, tensors=None, **metadata_changes) -> bytes:
    """``blob`` with some tensors and/or metadata fields replaced (a crafted upload)."""
    meta = read_metadata(blob)
    meta.update(metadata_changes)
    current = load_tensors(blob)
    current.update(tensors or {})
    return save_tensors(current, metadata={METADATA_KEY: json.dumps(meta)})


@pytest.fixture(scope="module")
def generalist(digits):
    """The paper's adversary pushed further: trained on many digits AND public images."""
    x = torch.cat([*(digits["train"][d][:150] for d in range(10)), digits["fashion"]])
    config = AutoencoderConfig(
        hidden_dim=64,
        layer_widths=(),
        epochs=6,
        optimizer="adam",
        learning_rate=3e-3,
        batch_size=64,
        feature_extractor="pixels",
    )
    return autoencoder_to_bytes(OneClassAutoencoder(config).fit(x))


def crafted(honest: bytes, generalist: bytes) -> list[tuple[str, bytes, int, str]]:
    tensors = load_tensors(honest)
    first = sorted(tensors)[0]
    wrong_shape = {first: torch.zeros(3, 3)}
    float64 = {first: tensors[first].double()}
    nan = {first: torch.full_like(tensors[first], float("nan"))}
    meta = read_metadata(honest)
    other_features = dict(meta["config"], feature_extractor="resnet20-cifar")
    return [
        ("garbage", b"definitely not safetensors", 422, "invalid model file"),
        ("empty", b"", 422, "invalid model file"),
        ("truncated", honest[: len(honest) // 2], 422, "invalid model file"),
        ("wrong shape", rebuild(honest, tensors=wrong_shape), 422, "invalid model file"),
        ("float64", rebuild(honest, tensors=float64), 422, "invalid model file"),
        ("NaN weights", rebuild(honest, tensors=nan), 422, "invalid model file"),
        ("mu = 0", rebuild(honest, error_mean=0.0), 422, "invalid model file"),
        ("sigma < 0", rebuild(honest, error_std=-1.0), 422, "invalid model file"),
        ("sigma infinite", rebuild(honest, error_std=float("inf")), 422, "invalid model file"),
        ("format version", rebuild(honest, format_version=99), 422, "invalid model file"),
        (
            "other features",
            rebuild(honest, config=other_features, feature_extractor="resnet20-cifar"),
            422,
            "model does not match this service",
        ),
        (
            "implausible sigma",
            rebuild(honest, error_std=5000.0),
            422,
            "model does not match this service",
        ),
        (
            "interval covers everything",
            rebuild(honest, error_std=40.0 * meta["error_std"]),
            422,
            "model claims public probe images",
        ),
        ("generalist autoencoder", generalist, 422, "model claims public probe images"),
    ]


def test_every_invalid_upload_is_refused_and_changes_nothing(
    server, new_user, honest_bytes, generalist
):
    user = new_user()
    user.upload("mine", honest_bytes[0])
    before_models = user.models()
    before_revision = user.ready()["revision"]
    url, auth = f"{server.url}/v1/models/mine", {"Authorization": f"Bearer {user.token}"}
    for label, body, status, detail in crafted(honest_bytes[0], generalist):
        for name in ("mine", "new"):  # replacing an existing model and creating one
            response = httpx.put(url.replace("mine", name), content=body, headers=auth)
            assert (response.status_code, response.json()["detail"]) == (status, detail), label
            assert response.json()["problems"], label
    assert user.models() == before_models
    assert user.ready()["revision"] == before_revision


def test_size_cap_name_and_architecture_limits(server, new_user, honest_bytes, digits):
    user = new_user()
    auth = {"Authorization": f"Bearer {user.token}"}
    big = httpx.put(
        f"{server.url}/v1/models/big", content=b"\0" * (4 * 1024 * 1024 + 1), headers=auth
    )
    assert (big.status_code, big.json()["detail"]) == (413, "upload too large")
    bad_name = httpx.put(f"{server.url}/v1/models/..%2Fx", content=honest_bytes[0], headers=auth)
    assert bad_name.status_code in (404, 422)
    wrong_dim = autoencoder_to_bytes(
        OneClassAutoencoder(
            AutoencoderConfig(
                input_dim=16, hidden_dim=4, layer_widths=(), epochs=1, feature_extractor="pixels"
            )
        ).fit(torch.rand(8, 16))
    )
    response = httpx.put(f"{server.url}/v1/models/small", content=wrong_dim, headers=auth)
    assert (response.status_code, response.json()["detail"]) == (
        422,
        "model does not match this service",
    )
    assert "input_dim is 16" in response.json()["problems"][0]
    assert user.models() == []


# -- admission: behaviour, not only format (attacks crafted through the public Python API) -------
def overflowing_bytes() -> bytes:
    """The default architecture with finite weights whose hidden layer overflows (NaN distances)."""
    config = AutoencoderConfig(feature_extractor="pixels")
    weights = {name: torch.zeros(shape) for name, shape in expected_shapes(config).items()}
    weights["layers.0.bias"].fill_(3e38)
    weights["layers.1.weight"].fill_(3e38)
    model = OneClassAutoencoder.from_weights(config, weights, error_mean=20.0, error_std=5.0)
    return autoencoder_to_bytes(model)


def deep_bytes(layers: int = 6002) -> bytes:
    """A tiny file describing a very deep model: every check would pay for its depth."""
    config = AutoencoderConfig(
        hidden_dim=1, layer_widths=(1,) * ((layers - 2) // 2), feature_extractor="pixels"
    )
    weights = {name: torch.zeros(shape) for name, shape in expected_shapes(config).items()}
    model = OneClassAutoencoder.from_weights(config, weights, error_mean=20.0, error_std=5.0)
    return autoencoder_to_bytes(model)


def over_broad_bytes(digits) -> tuple[bytes, float]:
    """Trained on every digit, statistics tuned to claim 34% of the old (clothes) probe set.

    Returns the file and the fraction of clothes (and binarised clothes) it claims.
    """
    x = torch.cat([digits["train"][d][:150] for d in range(10)])
    model = OneClassAutoencoder(AutoencoderConfig(**TEST_CONFIG)).fit(x)
    clothes = torch.cat([digits["fashion"], (digits["fashion"] >= 0.5).float()])
    distances = model.distances(clothes).double()
    bound = float(distances.quantile(0.34))
    model.error_mean_, model.error_std_ = bound / 1.5, bound / 6  # mu + 2 sigma = bound
    claimed = float((distances <= model.error_mean_ + 2 * model.error_std_).double().mean())
    return autoencoder_to_bytes(model), claimed


def shadow_bytes(generalist: bytes) -> bytes:
    """A model that reconstructs everything, with an interval that holds nothing."""
    return rebuild(generalist, error_mean=1e-3, error_std=1e-3)


def test_hostile_models_are_refused_with_the_reason(server, new_user, digits, generalist):
    user = new_user()
    auth = {"Authorization": f"Bearer {user.token}"}
    broad, clothes_claim = over_broad_bytes(digits)
    assert clothes_claim <= 0.35  # the old probe set (clothes only) would have let it in
    cases = [
        ("nan-distances", overflowing_bytes(), "model gives non-finite distances", "NaN"),
        ("shadow", shadow_bytes(generalist), "model statistics do not match its distances", "mu"),
        ("over-broad", broad, "model claims public probe images", "digits probe images"),
        ("deep", deep_bytes(), "model does not match this service", "6002 linear layers"),
    ]
    for label, body, detail, problem in cases:
        response = httpx.put(f"{server.url}/v1/models/{label}", content=body, headers=auth)
        assert (response.status_code, response.json()["detail"]) == (422, detail), label
        assert problem in " ".join(response.json()["problems"]), label
    assert user.models() == []


def test_a_claims_refusal_says_to_train_with_the_negative_set_when_it_was_not(
    generalist, server_probes
):
    from imgprivacy.service.settings import load_settings
    from imgprivacy.service.validation import BehaviourRefused, validate_upload

    config = read_metadata(generalist)["config"]
    hints = []
    for extractor, weight in (("pixels-smooth", 0.0), ("pixels-smooth", 1.0), ("pixels", 0.0)):
        settings = load_settings(database_url="sqlite://", feature_extractor=extractor)
        changed = config | {"feature_extractor": extractor, "negative_weight": weight}
        with pytest.raises(BehaviourRefused) as caught:
            validate_upload(
                rebuild(generalist, config=changed),
                settings=settings,
                input_dim=784,
                probes=server_probes,
            )
        assert caught.value.detail == "model claims public probe images"
        hints.append("train it with the public negative set" in " ".join(caught.value.problems))
    # only a model trained without it, for an extractor a device trains with it by default
    assert hints == [True, False, False]


def test_cost_limits_come_from_the_config_alone():
    limits = dict(max_layers=8, max_layer_width=512, max_flops=1_000_000)
    assert model_flops(AutoencoderConfig()) == 417_792
    assert cost_problems(AutoencoderConfig(), **limits) == []
    deep = AutoencoderConfig(hidden_dim=1, layer_widths=(1,) * 3000)
    assert cost_problems(deep, **limits) == [
        "the model has 6002 linear layers, at most 8 allowed; use fewer layer_widths"
    ]
    wide = cost_problems(AutoencoderConfig(hidden_dim=8, layer_widths=(600,)), **limits)
    assert len(wide) == 1 and "widest hidden layer has 600 units, at most 512" in wide[0]
    heavy = cost_problems(AutoencoderConfig(layer_widths=(512, 512)), **limits)
    assert heavy == [
        "the model costs 1359872 multiply-adds per image, at most 1000000 allowed; use fewer "
        "or narrower layers"
    ]


def test_statistics_must_match_the_models_own_distances():
    distances = torch.linspace(10.0, 200.0, 600)  # what the model gives the probe images
    model = OneClassAutoencoder(AutoencoderConfig(input_dim=4, hidden_dim=2))
    model.error_mean_, model.error_std_ = 12.0, 4.0  # honest: near its best reconstructions
    assert statistics_problems(model, distances, alpha=2.0, gap=20.0) == []
    model.error_mean_, model.error_std_ = 1e-3, 1e-3  # the shadow
    problems = statistics_problems(model, distances, alpha=2.0, gap=20.0)
    assert len(problems) == 2
    assert "mu + 2 sigma is 0.003" in problems[0] and "start at 11.9" in problems[0]
    assert "sigma is 0.001" in problems[1]
    model.error_mean_, model.error_std_ = 12.0, 0.01  # an interval too narrow to hold anything
    (problem,) = statistics_problems(model, distances, alpha=2.0, gap=20.0)
    assert problem.startswith("sigma is 0.01, but the model's distances to its nearest probe")


def test_probe_set_covers_every_source_and_depends_on_the_seed(data_dir):
    one = build_probe_set(feature_extractor="pixels", count=20, seed=1, data_dir=data_dir)
    again = build_probe_set(feature_extractor="pixels", count=20, seed=1, data_dir=data_dir)
    other = build_probe_set(feature_extractor="pixels", count=20, seed=2, data_dir=data_dir)
    assert one.sources == PROBE_SOURCES
    assert [int(one.of(name).sum()) for name in PROBE_SOURCES] == [20, 40, 8]
    assert int(one.from_images.sum()) == 60
    assert torch.equal(one.features, again.features)
    assert not torch.equal(one.features[one.of("digits")], other.features[other.of("digits")])
    assert one.random_inputs.shape == (34, 784)
    empty = build_probe_set(feature_extractor="pixels", count=0, seed=1, data_dir=data_dir)
    assert len(empty) == 0 and len(empty.random_inputs) == 34


def migrated_engine(url: str):
    storage = Storage(url)
    storage.create_schema()
    return storage.engine


def test_probe_seed_is_a_secret_kept_per_database(tmp_path):
    first = migrated_engine(f"sqlite:///{tmp_path / 'a.db'}")
    seed = deployment_probe_seed(first, configured=None)
    assert deployment_probe_seed(first, configured=None) == seed  # stored, not redrawn
    second = migrated_engine(f"sqlite:///{tmp_path / 'b.db'}")
    assert deployment_probe_seed(second, configured=None) != seed
    assert deployment_probe_seed(second, configured=7) == 7  # the operator's choice wins


def test_probe_seed_of_a_worker_that_lost_the_race_is_the_winners(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    engine = migrated_engine(url)
    other_worker = make_engine(url)

    @event.listens_for(engine, "before_cursor_execute")
    def _store_first(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO service_secrets"):  # just before this worker's
            with other_worker.begin() as other:
                other.execute(insert(ServiceSecret).values(name="probe_seed", value="4242"))

    assert deployment_probe_seed(engine, configured=None) == 4242
    assert deployment_probe_seed(other_worker, configured=None) == 4242


def test_probe_seed_needs_the_migrated_schema(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    with pytest.raises(SchemaError, match="no service_secrets table.*upgrade_schema"):
        deployment_probe_seed(engine, configured=None)
    assert deployment_probe_seed(engine, configured=3) == 3  # nothing read when configured
