import numpy as np
import pytest
from PIL import Image

from imgprivacy.data import DATA_ENV_VAR, load_image_folder, load_mnist, resolve_data_dir
from imgprivacy.errors import CorruptFileError, DataNotFoundError, InvalidInputError


def test_missing_data_file_names_path_and_fix(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"mnist\.npz.*--data-dir.*IMGPRIVACY_DATA") as info:
        load_mnist("train", data_dir=tmp_path)
    assert str(tmp_path / "mnist.npz") in str(info.value)


def test_env_var_chooses_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir(tmp_path / "x") == tmp_path / "x"


def test_default_data_dir_is_shared_beside_repo(monkeypatch):
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    assert resolve_data_dir().parts[-2:] == ("shared", "data")


def test_reads_npz_split_and_rejects_bad_split(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_test=np.zeros((3, 28, 28), np.uint8), y_test=np.arange(3))
    test = load_mnist("test", data_dir=tmp_path)
    assert test.images.shape == (3, 28, 28) and test.labels.tolist() == [0, 1, 2]
    with pytest.raises(InvalidInputError, match="split"):
        load_mnist("validation", data_dir=tmp_path)
    with pytest.raises(CorruptFileError, match="x_train"):
        load_mnist("train", data_dir=tmp_path)


def test_corrupt_npz_is_reported(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(CorruptFileError, match="intact copy"):
        load_mnist("test", data_dir=tmp_path)


def test_image_folder_resizes_and_converts(tmp_path):
    Image.new("RGB", (50, 40), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("L", (10, 10), 128).save(tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("ignored")
    images = load_image_folder(tmp_path, size=(28, 28))
    assert images.shape == (2, 28, 28) and images.dtype == np.uint8
    assert abs(int(images[1].mean()) - 128) <= 2
    rgb = load_image_folder(tmp_path, size=(8, 6), mode="RGB")
    assert rgb.shape == (2, 8, 6, 3)


def test_unreadable_image_names_the_file(tmp_path):
    Image.new("L", (10, 10)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(CorruptFileError, match="broken.png"):
        load_image_folder(tmp_path, size=(28, 28))


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(InvalidInputError, match="no images"):
        load_image_folder(tmp_path, size=(28, 28))
    with pytest.raises(DataNotFoundError, match="not a folder"):
        load_image_folder(tmp_path / "nope", size=(28, 28))
