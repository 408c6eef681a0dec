"""The bring-your-own faces path: a manifest with ~6 images per cell, any image size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgprivacy.data.labelled_faces import manifest_data, stratified_split_codes
from imgprivacy.data.synthetic.ferg_like import generate_ferg_like
from imgprivacy.errors import InvalidInputError
from imgprivacy.reproduce.anonymizer_faces import chance_accuracy


def write_manifest(folder, *, per_cell: int, size: int, drop: int = 0):
    faces = generate_ferg_like(per_cell=per_cell, seed=2)
    lines = ["path,person,mood"]
    for i, image in enumerate(faces.images[drop:], start=drop):
        Image.fromarray(image).resize((size, size)).save(folder / f"{i}.png")
        mood = faces.expression_names[faces.expression[i]]
        lines.append(f"{i}.png,p{faces.identity[i]},{mood}")
    (folder / "faces.csv").write_text("\n".join(lines) + "\n")
    return folder / "faces.csv", faces


def test_six_per_cell_split_puts_every_cell_in_every_part(tmp_path):
    manifest, faces = write_manifest(tmp_path, per_cell=6, size=37)
    data = manifest_data(
        manifest, private_label="person", utility_label="mood", image_size=50, seed=0
    )
    assert data.images.shape == (252, 50, 50)
    cells = data.private * 7 + data.utility
    for part in (0, 1, 2):
        assert set(cells[data.split == part].tolist()) == set(range(42))
    assert np.bincount(data.split).tolist() == [168, 42, 42]
    assert chance_accuracy(data.private, data.split) == pytest.approx(1 / 6)


def test_thin_cells_are_refused_with_the_cells_named(tmp_path):
    manifest, faces = write_manifest(tmp_path, per_cell=3, size=20)
    lines = manifest.read_text().splitlines()
    first_cell = (faces.identity == faces.identity[1]) & (faces.expression == faces.expression[1])
    keep = [lines[0]] + [line for i, line in enumerate(lines[1:]) if not (first_cell[i] and i != 1)]
    manifest.write_text("\n".join(keep) + "\n")
    with pytest.raises(InvalidInputError, match=r"at least 3 images in every \(person, mood\)"):
        manifest_data(manifest, private_label="person", utility_label="mood", image_size=50, seed=0)
    with pytest.raises(InvalidInputError, match=r"got fewer in 1: \(p\d, \w+\): 1"):
        manifest_data(manifest, private_label="person", utility_label="mood", image_size=50, seed=0)


def test_stratified_split_is_seeded_and_keeps_small_cells_in_training():
    cells = np.repeat([0, 1, 2], [6, 2, 20])
    codes = stratified_split_codes(cells, seed=3)
    assert np.array_equal(codes, stratified_split_codes(cells, seed=3))
    assert codes[6:8].tolist() == [0, 0]  # a cell under three images stays in training
    assert np.bincount(codes[8:]).tolist() == [14, 3, 3]
