import numpy as np
import pytest
import torch

from imgprivacy.anonymizer import Anonymizer, AnonymizerConfig
from imgprivacy.anonymizer.persistence import load_checkpoint
from imgprivacy.errors import (
    CorruptFileError,
    DataNotFoundError,
    InvalidInputError,
    NotFittedError,
)
from tests.conftest import tiny_config


def test_transform_returns_uint8_images_and_logs_every_epoch(fitted, tiny_data):
    images, _ = tiny_data
    out = fitted.transform(images[:5])
    assert out.shape == (5, 8, 8) and out.dtype == np.uint8
    phases = [row["phase"] for row in fitted.history_.epochs]
    assert phases == ["pretrain", "pretrain", "disc_pretrain", "adversarial", "adversarial"]
    assert "ae_gap" in fitted.history_.epochs[-1]
    assert fitted.config.n_private == 4


def test_transform_is_batched_consistently(fitted, tiny_data):
    images, _ = tiny_data
    assert np.array_equal(fitted.transform(images, batch_size=7), fitted.transform(images))


def test_training_is_seeded(tiny_data):
    images, writers = tiny_data
    a = Anonymizer(tiny_config(seed=3)).fit(images, writers).transform(images)
    b = Anonymizer(tiny_config(seed=3)).fit(images, writers).transform(images)
    assert np.array_equal(a, b)


def test_save_load_round_trip(fitted, tiny_data, tmp_path):
    images, _ = tiny_data
    path = fitted.save(tmp_path / "model.safetensors")
    loaded = Anonymizer.load(path)
    assert loaded.config == fitted.config
    assert loaded.classes_.tolist() == [0, 1, 2, 3]
    assert np.array_equal(loaded.transform(images), fitted.transform(images))
    assert len(loaded.history_.epochs) == len(fitted.history_.epochs)


def test_model_of_another_architecture_is_rejected(fitted, tmp_path):
    from safetensors.torch import save_file

    data = fitted.to_bytes()
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    # same metadata, but tensors of a wider autoencoder
    from imgprivacy.anonymizer.persistence import MODEL_FILE, read_model_bytes
    from imgprivacy.safetensors_io import METADATA_KEY

    tensors, metadata = read_model_bytes(data, format=MODEL_FILE, source="x")
    tensors["encoder.0.weight"] = torch.zeros(32, 64)
    import json

    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(metadata)})
    with pytest.raises(InvalidInputError, match=r"encoder\.0\.weight has shape \(32, 64\)"):
        Anonymizer.load(path)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="no"):
        Anonymizer.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CorruptFileError, match="not an imgprivacy anonymizer file"):
        Anonymizer.load(tmp_path / "junk.safetensors")


def test_checkpoint_is_not_a_model(tiny_data, tmp_path):
    images, writers = tiny_data
    ckpt = tmp_path / "run.ckpt"
    Anonymizer(tiny_config(adversarial_epochs=0)).fit(images, writers, checkpoint=ckpt)
    with pytest.raises(CorruptFileError, match="expected a file of format"):
        Anonymizer.load(ckpt)


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_data, tmp_path):
    images, writers = tiny_data
    full = Anonymizer(tiny_config()).fit(images, writers)
    ckpt = tmp_path / "run.ckpt"

    class Interrupt(Exception):
        pass

    def stop_after_adversarial_epoch(trainer, record):
        if trainer.epoch == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        Anonymizer(tiny_config()).fit(
            images, writers, checkpoint=ckpt, on_epoch=stop_after_adversarial_epoch
        )
    assert load_checkpoint(ckpt).epoch == 4
    resumed = Anonymizer(tiny_config()).fit(images, writers, checkpoint=ckpt, resume=True)
    assert [r["phase"] for r in resumed.history_.epochs] == [
        r["phase"] for r in full.history_.epochs
    ]
    assert np.array_equal(resumed.transform(images), full.transform(images))


def test_resume_rejects_another_architecture(tiny_data, tmp_path):
    images, writers = tiny_data
    ckpt = tmp_path / "run.ckpt"
    Anonymizer(tiny_config(adversarial_epochs=0)).fit(images, writers, checkpoint=ckpt)
    with pytest.raises(InvalidInputError, match="architecture"):
        Anonymizer(tiny_config(code_dim=5)).fit(images, writers, checkpoint=ckpt, resume=True)


def test_bad_input_is_reported(tiny_data):
    images, writers = tiny_data
    model = Anonymizer(tiny_config())
    with pytest.raises(InvalidInputError, match=r"shape \(N, 8, 8\), got \(64, 9, 9\)"):
        model.fit(np.zeros((64, 9, 9), np.uint8), writers)
    with pytest.raises(InvalidInputError, match="colour"):
        model.fit(np.zeros((64, 8, 8, 3), np.uint8), writers)
    with pytest.raises(InvalidInputError, match="Add the batch axis"):
        model.fit(images[0], writers[:1])
    with pytest.raises(InvalidInputError, match="at least 2 classes"):
        model.fit(images, np.zeros(len(images), int))
    with pytest.raises(InvalidInputError, match="one private label per image"):
        model.fit(images, writers[:10])
    with pytest.raises(InvalidInputError, match=r"in \[0, 1\]"):
        model.fit(images.astype(np.float32), writers)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.transform(images)
    with pytest.raises(InvalidInputError, match="lam"):
        AnonymizerConfig(lam=-1)
