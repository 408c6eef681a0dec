import numpy as np
import pytest

from imgprivacy.data.paths import resolve_data_dir
from imgprivacy.data.registry import DATASETS, get_dataset
from imgprivacy.errors import UnknownNameError


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(UnknownNameError, match="Unknown dataset 'mnist'") as info:
        get_dataset("mnist")
    for name in DATASETS:
        assert repr(name) in str(info.value)


@pytest.mark.skipif(
    not (resolve_data_dir() / "pendigits_orig.npz").is_file(),
    reason="needs the shared pendigits_orig.npz",
)
def test_pendigits_entry_gives_the_training_split_with_writers():
    data = get_dataset("pendigits").load(data_dir=None, image_size=20, seed=0)
    assert data.images.shape == (5494, 20, 20) and data.images.dtype == np.uint8
    assert sorted(np.unique(data.private).tolist()) == list(range(30))
    assert "writer" in data.description
