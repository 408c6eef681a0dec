"""The face extractor of `reproduce docl-faces` is trained seeded, deterministically, into the
run's own folder, and reused there only when it was trained with the same settings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from imgprivacy.data.paths import resolve_data_dir
from imgprivacy.features.face_training import train_face_net
from imgprivacy.features.faces import FaceNetConfig, load_face_extractor
from imgprivacy.reproduce.docl_faces import EXTRACTOR_FILE, face_extractor_for_run

TINY = FaceNetConfig(
    input_size=(24, 20),
    downsample=1,
    channels=(4, 8),
    embedding_dim=16,
    epochs=3,
    batch_size=8,
    dropout=0.5,  # dropout draws random numbers every step: the test must see them seeded
)
# the reproduction's faces (96x84) with a network small enough to train in seconds
TINY_YALEB = FaceNetConfig(channels=(4, 8), embedding_dim=16, epochs=1)
needs_yaleb = pytest.mark.skipif(
    not (resolve_data_dir() / "extended_yaleb_cropped_96x84.npz").is_file(),
    reason="needs the shared extended_yaleb_cropped_96x84.npz",
)


def tiny_faces(seed: int = 0):
    """3 identities x 8 faces of 24x20: a brighter square at a per-identity place, plus noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 80, size=(24, 24, 20)).astype(np.uint8)
    labels = np.repeat([3, 7, 9], 8)
    for i, label in enumerate(labels):
        top = 2 + 6 * (label % 3)
        images[i, top : top + 6, 4:12] += 150
    return images, labels


def weights(model) -> dict[str, torch.Tensor]:
    return {**model.net.state_dict(), "scale": model.scale}


def test_same_seed_gives_identical_weights_and_leaves_the_global_generator_alone():
    images, labels = tiny_faces()
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = weights(train_face_net(images, labels, config=TINY))
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random stream is untouched
    torch.rand(100)  # whatever the global generator went through in between
    second = weights(train_face_net(images, labels, config=TINY))
    assert first.keys() == second.keys()
    unequal = [name for name in first if not torch.equal(first[name], second[name])]
    assert unequal == []
    other = weights(train_face_net(images, labels, config=dataclasses.replace(TINY, seed=1)))
    assert not torch.equal(first["head.weight"], other["head.weight"])


def test_the_extractor_file_records_its_training_faces():
    images, labels = tiny_faces()
    info = train_face_net(images, labels, config=TINY).info
    other = train_face_net(*tiny_faces(seed=1), config=TINY).info
    assert info["identities"] == [3, 7, 9] and info["train_images"] == 24
    assert len(info["train_data_sha256"]) == 64
    assert info["train_data_sha256"] != other["train_data_sha256"]


@needs_yaleb
def test_the_run_trains_its_extractor_in_its_folder_and_reuses_it_only_with_same_settings(
    tmp_path, monkeypatch
):
    # a file in the user cache must not be read: point the cache at a file that is not there
    monkeypatch.setenv("IMGPRIVACY_FACE_EXTRACTOR", str(tmp_path / "cache" / "faces.safetensors"))
    out = tmp_path / "run"
    path = face_extractor_for_run(out=out, config=TINY_YALEB, seed=3)
    assert path == out / "models" / EXTRACTOR_FILE
    assert not (tmp_path / "cache").exists()
    model = load_face_extractor(path)
    assert model.config.seed == 3 and model.info["identities"] == list(range(16, 38))
    trained = path.read_bytes()

    assert face_extractor_for_run(out=out, config=TINY_YALEB, seed=3) == path
    assert path.read_bytes() == trained  # same settings: reused

    face_extractor_for_run(out=out, config=TINY_YALEB, seed=4)
    assert load_face_extractor(path).config.seed == 4  # another seed: retrained, not reused
    face_extractor_for_run(out=out, config=dataclasses.replace(TINY_YALEB, seed=4, epochs=2))
    assert load_face_extractor(path).config.epochs == 2  # another config: retrained

    again = face_extractor_for_run(out=tmp_path / "again", config=TINY_YALEB, seed=3)
    assert again.read_bytes() == trained  # trained from scratch: the same bytes


@needs_yaleb
def test_a_named_extractor_file_is_used_as_it_is(tmp_path):
    named = tmp_path / "mine.safetensors"
    assert face_extractor_for_run(out=tmp_path, extractor=named, config=TINY_YALEB) == named
    assert not (tmp_path / "models").exists()
    trained = named.read_bytes()
    # another seed asked, but the caller named this file: it is read, not retrained
    face_extractor_for_run(out=tmp_path, extractor=named, config=TINY_YALEB, seed=9)
    assert named.read_bytes() == trained


@needs_yaleb
def test_a_retrained_extractor_is_logged_with_what_differed(tmp_path, caplog):
    face_extractor_for_run(out=tmp_path, config=TINY_YALEB, seed=3)
    with caplog.at_level("WARNING", logger="imgprivacy.reproduce.docl_faces"):
        face_extractor_for_run(out=tmp_path, config=TINY_YALEB, seed=5)
    assert "it was trained with seed 3 (this run: 5)" in caplog.text
