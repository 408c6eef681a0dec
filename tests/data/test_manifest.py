"""Bring-your-own doubly-labelled data: the CSV manifest reader, its errors, and AT&T faces."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgprivacy.data.manifest import encode_values, load_att_labelled, read_manifest
from imgprivacy.data.paths import resolve_data_dir
from imgprivacy.errors import (
    CorruptFileError,
    DataNotFoundError,
    InvalidInputError,
    UnknownNameError,
)


def _write_images(folder, n: int):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        size = (30 + 7 * i, 20 + 3 * i)  # images of any size
        mode = "RGB" if i % 2 else "L"
        shape = size[::-1] + ((3,) if mode == "RGB" else ())
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"{i}.png")
        names.append(f"imgs/{i}.png")
    return names


@pytest.fixture()
def manifest(tmp_path):
    names = _write_images(tmp_path / "imgs", 6)
    people = ["bob", "alice", "bob", "carol", "alice", "bob"]
    moods = ["10", "9", "10", "2", "9", "2"]
    lines = ["path,person,mood"] + [f"{n},{p},{m}" for n, p, m in zip(names, people, moods)]
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_happy_path_two_labels(manifest):
    data = read_manifest(manifest, private_label="person", utility_label="mood", size=(50, 50))
    assert data.images.shape == (6, 50, 50) and data.images.dtype == np.uint8
    assert data.private_classes == ("alice", "bob", "carol")
    assert data.private.tolist() == [1, 0, 1, 2, 0, 1]
    assert data.utility_classes == ("2", "9", "10")  # integers sort numerically
    assert data.utility.tolist() == [2, 1, 2, 0, 1, 0]
    assert (data.private_name, data.utility_name, len(data)) == ("person", "mood", 6)


def test_colour_and_single_label(manifest):
    data = read_manifest(manifest, private_label="mood", size=(20, 24), mode="RGB")
    assert data.images.shape == (6, 20, 24, 3)
    assert data.utility is None and data.utility_classes is None


def test_missing_manifest(tmp_path):
    with pytest.raises(DataNotFoundError, match="Expected a CSV manifest at .*no such file"):
        read_manifest(tmp_path / "nope.csv", private_label="person")


def test_missing_path_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("file,person\na.png,bob\n")
    with pytest.raises(InvalidInputError, match=r"'path' column .*\['file', 'person'\]"):
        read_manifest(path, private_label="person")


def test_unknown_label_column_lists_the_available_ones(manifest):
    with pytest.raises(
        UnknownNameError, match=r"\['identity'\].*available label columns: \['person', 'mood'\]"
    ):
        read_manifest(manifest, private_label="identity", utility_label="mood")


def test_single_label_manifest_when_two_are_asked(tmp_path):
    names = _write_images(tmp_path / "imgs", 2)
    path = tmp_path / "m.csv"
    path.write_text("path,identity\n" + "".join(f"{n},{i}\n" for i, n in enumerate(names)))
    with pytest.raises(
        InvalidInputError, match="has one label column, 'identity'.*omit --utility-label"
    ):
        read_manifest(path, private_label="identity", utility_label="expression")
    assert read_manifest(path, private_label="identity").utility is None


def test_same_column_for_both_labels(manifest):
    with pytest.raises(InvalidInputError, match="different private and utility"):
        read_manifest(manifest, private_label="person", utility_label="person")


def test_missing_files_are_listed_with_their_count(tmp_path):
    names = _write_images(tmp_path / "imgs", 1) + [f"imgs/gone{i}.png" for i in range(7)]
    path = tmp_path / "m.csv"
    path.write_text("path,person\n" + "".join(f"{n},p\n" for n in names))
    with pytest.raises(DataNotFoundError, match=r"7 of 8 do not: .*gone0\.png.*and 2 more"):
        read_manifest(path, private_label="person")


def test_unreadable_image_is_named(tmp_path):
    names = _write_images(tmp_path / "imgs", 1)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not an image")
    path = tmp_path / "m.csv"
    path.write_text(f"path,person\n{names[0]},a\nimgs/broken.png,b\n")
    with pytest.raises(CorruptFileError, match="broken.png"):
        read_manifest(path, private_label="person")


def test_empty_cells_and_empty_manifest(tmp_path):
    names = _write_images(tmp_path / "imgs", 2)
    path = tmp_path / "m.csv"
    path.write_text(f"path,person\n{names[0]},a\n{names[1]},\n")
    with pytest.raises(InvalidInputError, match=r"1 empty: line 3 \(person\)"):
        read_manifest(path, private_label="person")
    path.write_text("path,person\n")
    with pytest.raises(InvalidInputError, match="only its header line"):
        read_manifest(path, private_label="person")


def test_encode_values_keeps_the_mapping():
    codes, classes = encode_values(["b", "a", "b"])
    assert codes.tolist() == [1, 0, 1] and classes == ("a", "b")


@pytest.mark.skipif(
    not (resolve_data_dir() / "att_faces.npz").is_file(), reason="needs the shared att_faces.npz"
)
def test_att_faces_single_label_path():
    data = load_att_labelled(size=(50, 50))
    assert data.images.shape == (400, 50, 50) and data.utility is None
    assert np.bincount(data.private).tolist() == [10] * 40
    assert data.private_classes[0] == "s1"


def test_att_faces_missing_data_dir(tmp_path):
    with pytest.raises(DataNotFoundError, match="att_faces.npz"):
        load_att_labelled(data_dir=tmp_path)
