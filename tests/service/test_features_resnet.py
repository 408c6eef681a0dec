"""The service and the edge client with a non-pixel extractor (resnet20-cifar), end to end.

Users train guards on their own folders of CIFAR-10 PNGs on the edge (ResNet-20 features), upload
them to a real server started with ``feature_extractor=resnet20-cifar``, and upload images to
check; the HTTP decisions equal an in-process bank's on the same files. A pixel model is refused
with the extractor named.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from imgprivacy.client import GuardClient, ServiceRequestError, folder_features, train_guard
from imgprivacy.data.cifar10 import load_cifar10
from imgprivacy.docl import AutoencoderConfig
from imgprivacy.service.launcher import start_server
from tests.service.conftest import fresh_database, local_decisions, server_env, unique

FEATURES = "resnet20-cifar"
CONFIG = AutoencoderConfig(epochs=15, feature_extractor=FEATURES)


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cifar_server(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("server-resnet")
    env = server_env(
        fresh_database("sqlite", tmp),
        feature_extractor=FEATURES,
        alpha=2.0,
        margin=1.5,
        breadth_ratio="none",  # the gate's default point was chosen for the digit models
        data_dir=str(data_dir),
    )
    env["IMGPRIVACY_DATA"] = str(data_dir)  # where the ResNet-20 weights are
    with start_server(log_path=tmp / "service.log", env=env) as process:
        yield process


@pytest.fixture(scope="module")
def cifar(data_dir):
    return load_cifar10("train", data_dir=data_dir), load_cifar10("test", data_dir=data_dir)


def test_upload_and_check_with_resnet_features(cifar_server, cifar, tmp_path):
    train, test = cifar
    clients, models = {}, {}
    for cls, who in ((0, "planes"), (1, "cars")):
        folder = tmp_path / who
        folder.mkdir()
        for i, image in enumerate(train.images[train.labels == cls][:150]):
            (folder / f"{i:03d}.png").write_bytes(png(image))
        out = tmp_path / f"{who}.safetensors"
        models[who] = train_guard(folder, out=out, config=CONFIG)  # on the edge
        assert models[who].config.input_dim == 64
        client = GuardClient(cifar_server.url, retries=1, backoff=0.05)
        client.register(unique(who))
        assert client.upload("guard", out)["hidden_dim"] == 32
        clients[who] = client

    planes = test.images[test.labels == 0][:20]
    files = tmp_path / "uploads"
    files.mkdir()
    for i, image in enumerate(planes):
        (files / f"{i:02d}.png").write_bytes(png(image))
    own = [clients["planes"].check_image(p) for p in sorted(files.iterdir())]
    foreign = [clients["cars"].check_image(p) for p in sorted(files.iterdir())]

    # The same decisions in process, on features of the same files.
    state = clients["planes"].ready()
    names = {who: c.me()["name"] for who, c in clients.items()}
    assert (state["margin"], state["breadth_ratio"]) == (1.5, None)
    x = folder_features(files, feature_extractor=FEATURES)
    local = local_decisions(
        state,
        {f"{names[who]}/guard": (names[who], model) for who, model in models.items()},
        torch.cat([x, x]),
        [names["planes"]] * 20 + [names["cars"]] * 20,
    )
    assert [r.share for r in own + foreign] == [d.share for d in local]
    assert np.mean([r.share for r in own]) >= 0.8  # the owner shares their own photos
    assert np.mean([not r.share for r in foreign]) >= 0.6  # someone else: mostly blocked
    for client in clients.values():
        client.close()


def test_a_model_of_another_extractor_is_refused(cifar_server):
    pixel_model = AutoencoderConfig(
        input_dim=16, hidden_dim=4, layer_widths=(), epochs=1, feature_extractor="pixels"
    )
    from imgprivacy.docl import OneClassAutoencoder, autoencoder_to_bytes

    blob = autoencoder_to_bytes(OneClassAutoencoder(pixel_model).fit(torch.rand(8, 16)))
    with GuardClient(cifar_server.url, retries=1, backoff=0.05) as client:
        client.register(unique("pixels"))
        with pytest.raises(ServiceRequestError) as caught:
            client.upload("guard", blob)
    assert caught.value.status == 422
    assert caught.value.detail == "model does not match this service"
    assert any(
        "trained on 'pixels' features, this service uses 'resnet20-cifar'" in p
        for p in caught.value.problems
    )
