import numpy as np

from imgprivacy.anonymizer import Anonymizer
from tests.conftest import tiny_config


def test_fit_transform_equals_fit_then_transform(tiny_data):
    images, writers = tiny_data
    epochs = []
    released = Anonymizer(tiny_config(seed=5)).fit_transform(
        images, writers, batch_size=7, on_epoch=lambda run, record: epochs.append(record)
    )
    expected = Anonymizer(tiny_config(seed=5)).fit(images, writers).transform(images)
    assert released.dtype == np.uint8 and released.shape == images.shape
    assert np.array_equal(released, expected)
    assert len(epochs) == tiny_config().total_epochs  # fit's keyword arguments reach fit


def test_fit_transform_fits_the_estimator(tiny_data):
    images, writers = tiny_data
    model = Anonymizer(tiny_config(seed=5))
    released = model.fit_transform(images, writers)
    assert model.classes_.tolist() == sorted(set(np.asarray(writers).tolist()))
    assert np.array_equal(model.transform(images), released)
