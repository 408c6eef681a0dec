import dataclasses
import inspect

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, OneClassAutoencoderDetector
from imgprivacy.errors import InvalidInputError, NotFittedError
from tests.conftest import blobs

# Tiny and fast; the checks feed arbitrary real numbers, hence rescale=True (the estimator with
# rescale=False rejects features outside [0, 1], which every check but a few would feed it).
CHECKED = OneClassAutoencoderDetector(
    hidden_dim=2, layer_widths=(4,), epochs=2, batch_size=64, rescale=True
)
PARAMS = dict(hidden_dim=4, layer_widths=(8,), epochs=30, batch_size=16, learning_rate=1e-2, seed=3)


@parametrize_with_checks([CHECKED])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def data():
    x, y = blobs(dim=16)
    return x.numpy(), y.numpy()


@pytest.fixture(scope="module")
def fitted(data):
    x, y = data
    return OneClassAutoencoderDetector(**PARAMS).fit(x[y == 0])


def test_hyper_parameters_mirror_the_config_fields_and_defaults():
    params = OneClassAutoencoderDetector().get_params()
    defaults = AutoencoderConfig()
    fields = {f.name for f in dataclasses.fields(AutoencoderConfig)} - {"input_dim"}
    assert set(params) == fields | {"alpha", "rescale", "device"}
    assert {name: params[name] for name in fields} == {
        name: getattr(defaults, name) for name in fields
    }
    assert (params["alpha"], params["rescale"], params["device"]) == (1.0, False, "cpu")
    keyword_only = inspect.Parameter.KEYWORD_ONLY
    signature = inspect.signature(OneClassAutoencoderDetector)
    assert all(p.kind is keyword_only for p in signature.parameters.values())


def test_same_numbers_as_the_autoencoder_with_the_same_config(data, fitted):
    x, y = data
    model = OneClassAutoencoder(AutoencoderConfig(input_dim=16, **PARAMS)).fit(x[y == 0])
    assert fitted.model_.config == model.config
    assert (fitted.error_mean_, fitted.error_std_) == (model.error_mean_, model.error_std_)
    np.testing.assert_array_equal(fitted.distances(x), model.distances(x).numpy())


def test_score_conventions_and_threshold(data, fitted):
    x, y = data
    distances = fitted.distances(x)
    assert fitted.threshold_ == pytest.approx(fitted.error_mean_ + 1.0 * fitted.error_std_)
    assert fitted.offset_ == -fitted.threshold_
    scores, decision, labels = (
        fitted.score_samples(x),
        fitted.decision_function(x),
        fitted.predict(x),
    )
    assert scores.dtype == decision.dtype == np.float64 and labels.dtype.kind == "i"
    np.testing.assert_array_equal(scores, -distances)
    np.testing.assert_allclose(decision, fitted.threshold_ - distances)
    np.testing.assert_array_equal(labels, np.where(distances <= fitted.threshold_, 1, -1))
    assert (labels[y != 0] == -1).all()  # the other users' images are outliers
    assert (labels[y == 0] == 1).mean() > 0.6  # most of the owner's are inside mu + sigma


def test_alpha_moves_the_threshold(data, fitted):
    x, y = data
    wide = clone(fitted).set_params(alpha=2.5).fit(x[y == 0])
    assert wide.threshold_ == pytest.approx(fitted.error_mean_ + 2.5 * fitted.error_std_)
    assert (wide.predict(x[y == 0]) == 1).sum() > (fitted.predict(x[y == 0]) == 1).sum()


def test_torch_lists_and_numpy_give_the_same_numpy_output(data, fitted):
    x, y = data
    from_torch = OneClassAutoencoderDetector(**PARAMS).fit(torch.from_numpy(x[y == 0]))
    expected = fitted.score_samples(x)
    result = from_torch.score_samples(torch.from_numpy(x))
    assert isinstance(result, np.ndarray)
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(fitted.score_samples(x.tolist()), expected)


def test_fit_predict_is_fit_then_predict(data, fitted):
    x, y = data
    labels = OneClassAutoencoderDetector(**PARAMS).fit_predict(x[y == 0])
    np.testing.assert_array_equal(labels, fitted.predict(x[y == 0]))


def test_clone_and_set_params(data, fitted):
    x, y = data
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "model_")
    copy.set_params(hidden_dim=3, layer_widths=[5]).fit(x[y == 0])
    assert copy.model_.config.hidden_dim == 3 and copy.model_.config.layer_dims == [16, 5, 3, 5, 16]


@pytest.mark.parametrize("method", ["distances", "score_samples", "decision_function", "predict"])
def test_unfitted_use_raises_not_fitted_error(data, method):
    with pytest.raises(NotFittedError, match="not fitted yet. Call fit\\(X\\) first") as info:
        getattr(OneClassAutoencoderDetector(), method)(data[0])
    assert isinstance(info.value, SklearnNotFittedError)  # sklearn's tools recognise it too


def test_bad_input_and_hyper_parameters_have_clear_messages(data, fitted):
    x, y = data
    with pytest.raises(
        InvalidInputError, match=r"Expected features in \[0, 1\], got values in .*rescale=True"
    ):
        OneClassAutoencoderDetector(**PARAMS).fit(np.round(x * 255))
    with pytest.raises(InvalidInputError, match="X has 5 features, but .* expecting 16 features"):
        fitted.predict(x[:, :5])
    with pytest.raises(InvalidInputError, match="minimum of 2 is required"):
        OneClassAutoencoderDetector(**PARAMS).fit(x[:1])
    broken = OneClassAutoencoderDetector(hidden_dim=0, alpha=-1.0)  # stored as is; fit validates
    with pytest.raises(InvalidInputError) as info:
        broken.fit(x)
    assert info.value.problems == [
        "Invalid AutoencoderConfig: hidden_dim must be a positive integer, got 0",
        "alpha must be a finite number >= 0 (the paper uses 1 to 2), got -1.0",
    ]
    assert not hasattr(broken, "model_")


def test_rescale_maps_the_training_range_onto_unit_interval(data):
    x, y = data
    raw = x[y == 0] * 200.0 + 7.0
    rescaled = OneClassAutoencoderDetector(**PARAMS, rescale=True).fit(raw)
    low, high = raw.min(axis=0), raw.max(axis=0)
    np.testing.assert_array_equal(rescaled.feature_min_, low)
    manual = OneClassAutoencoderDetector(**PARAMS).fit((raw - low) / (high - low))
    np.testing.assert_allclose(
        rescaled.distances(raw), manual.distances((raw - low) / (high - low))
    )
    beyond = raw[:3] + 1000.0  # far outside the training range: scored, not clipped
    assert (rescaled.distances(beyond) > rescaled.distances(raw[:3])).all()
    assert (rescaled.predict(beyond) == -1).all()


def test_works_in_a_pipeline_after_a_scaler(data):
    x, y = data
    raw = x * 255.0
    pipeline = make_pipeline(MinMaxScaler(clip=True), OneClassAutoencoderDetector(**PARAMS))
    pipeline.fit(raw[y == 0])
    scaler, detector = pipeline[0], pipeline[-1]
    np.testing.assert_array_equal(
        pipeline.score_samples(raw), detector.score_samples(scaler.transform(raw))
    )
    assert (pipeline.predict(raw[y != 0]) == -1).all()
    assert (pipeline.decision_function(raw[y == 0]) >= 0).mean() > 0.6


def test_grid_search_picks_alpha_by_balanced_accuracy(data):
    x, y = data
    labels = np.where(y == 0, 1, -1)
    owner = np.flatnonzero(y == 0)
    train, test = owner[::2], np.concatenate([owner[1::2], np.flatnonzero(y != 0)])
    search = GridSearchCV(
        OneClassAutoencoderDetector(**PARAMS),
        {"alpha": [0.0, 2.0, 1000.0]},
        scoring="balanced_accuracy",
        cv=[(train, test)],  # novelty detection: fit on the owner's images only
        refit=False,
    ).fit(x, labels)
    scores = dict(zip(search.cv_results_["param_alpha"], search.cv_results_["mean_test_score"]))
    assert search.best_params_ == {"alpha": 2.0}
    assert scores[1000.0] == pytest.approx(0.5)  # everything is an inlier
    assert scores[2.0] > 0.9


def test_from_model_wraps_a_fitted_or_loaded_autoencoder(tmp_path, data, fitted):
    x, _ = data
    loaded = OneClassAutoencoder.load(fitted.model_.save(tmp_path / "m.safetensors"))
    wrapped = OneClassAutoencoderDetector.from_model(loaded, alpha=1.0)
    assert wrapped.get_params() == fitted.get_params()
    np.testing.assert_array_equal(wrapped.predict(x), fitted.predict(x))
    np.testing.assert_array_equal(wrapped.decision_function(x), fitted.decision_function(x))
    with pytest.raises(NotFittedError, match="needs a fitted OneClassAutoencoder"):
        OneClassAutoencoderDetector.from_model(OneClassAutoencoder())
