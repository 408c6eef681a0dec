"""The default one-class model for each feature extractor: the one place it is written down.

``AutoencoderConfig()`` is the model for :data:`DEFAULT_FEATURE_EXTRACTOR`;
``AutoencoderConfig.for_features(name)`` the one for any registered extractor. ``imgprivacy guard
train``, ``imgprivacy serve``, the service's settings, the demo and the MNIST reproduction read
these, so a user who changes nothing gets the model whose numbers ``docs/results.md`` reports.

How each was chosen (``docs/results.md``):

* ``pixels-smooth`` (D = 784): the cheapest shape within 0.3 accuracy points of the best on a
  validation split of MNIST's training set (``benchmarks/bench_model_frontier.py``): of
  784-32-784, 784-64-32-64-784, 784-128-32-128-784 and 784-256-32-256-784, each wider shape was
  better by more than that. Smoothing the pixels (sigma 1) raised accuracy and one-class AUC over
  raw pixels. ``pixels`` (same D) gets the same model.
* ``resnet20-cifar`` (D = 64): D-256-32-256-D, 15 epochs (more epochs overfit the ~400 images of
  a CIFAR-10 class; ``imgprivacy reproduce docl-cifar10``).
* ``faces-cnn`` (D = 256): the paper's D-32-D with Adadelta, 300 epochs of batches of 32 (a user
  has ~45 faces, so a batch of 128 would be one step per epoch; the deep model was worse on so
  few images; ``imgprivacy reproduce docl-faces``).

No extractor's default holds images out for mu and sigma (``calibration_fraction`` stays 0, the
paper's statistics of the training images): held-out statistics were measured worse on MNIST and
CIFAR-10 (docs/results.md, "Held-out calibration of mu and sigma").

The library's models do not train against the public negative set (``negative_weight`` stays
0 in :data:`MODEL_DEFAULTS`), so ``fit(X)`` of a default model needs nothing but ``X``. What a
*device* trains by default (``imgprivacy guard train``, :func:`imgprivacy.client.train_guard`,
``imgprivacy reproduce docl-mnist``'s default run, the service demo) is
``AutoencoderConfig.for_edge(name)``: the same model plus :data:`EDGE_NEGATIVE_WEIGHT`, the
public negative set (:func:`imgprivacy.data.public_negative_images`) where it was measured
better on a validation split (docs/results.md, "Outlier exposure"): ``pixels-smooth`` on MNIST
(worst adversary pair 96.0% blocked against 93.0%, each at its Guard point chosen on
validation: alpha 2.7, margin 1, gate 2 against 2.1, 1, 1.5).
On CIFAR-10 (``resnet20-cifar``) it gave no gain on validation; ``pixels`` and ``faces-cnn``
were not measured; those stay without.

Nothing here imports torch.
"""

from __future__ import annotations

from types import MappingProxyType

from imgprivacy.errors import UnknownNameError

# The extractor a user gets without choosing one: the service's and `guard train`'s default.
DEFAULT_FEATURE_EXTRACTOR = "pixels-smooth"

_PIXELS = {
    "input_dim": 784,
    "hidden_dim": 32,
    "layer_widths": (256,),
    "epochs": 30,
    "batch_size": 128,
    "optimizer": "adam",
    "learning_rate": 1e-3,
}

# AutoencoderConfig fields of each extractor's default model (the fields left out keep the
# dataclass defaults: no weight decay, no input noise, seed 0, no held-out calibration).
MODEL_DEFAULTS: MappingProxyType[str, MappingProxyType] = MappingProxyType(
    {
        "pixels": MappingProxyType(_PIXELS),
        "pixels-smooth": MappingProxyType(_PIXELS),
        "resnet20-cifar": MappingProxyType(
            {**_PIXELS, "input_dim": 64, "layer_widths": (256,), "epochs": 15}
        ),
        # the same model on the 128-d ResNet pair (docs/results.md, the paper's adversary on
        # CIFAR-10); not re-tuned for its width
        "resnet-pair-cifar": MappingProxyType(
            {**_PIXELS, "input_dim": 128, "layer_widths": (256,), "epochs": 15}
        ),
        "faces-cnn": MappingProxyType(
            {
                "input_dim": 256,
                "hidden_dim": 32,
                "layer_widths": (),
                "epochs": 300,
                "batch_size": 32,
                "optimizer": "adadelta",
                "learning_rate": 1.0,
            }
        ),
    }
)


# AutoencoderConfig.negative_weight a device trains with by default (AutoencoderConfig.for_edge);
# extractors left out train on the owner's images only (0).
EDGE_NEGATIVE_WEIGHT: MappingProxyType[str, float] = MappingProxyType({"pixels-smooth": 1.0})


def model_defaults(feature_extractor: str) -> MappingProxyType:
    """The :class:`AutoencoderConfig` fields of ``feature_extractor``'s default model.

    Raises
    ------
    UnknownNameError
        Listing the extractors that have a default model when ``feature_extractor`` has none.
    """
    try:
        return MODEL_DEFAULTS[feature_extractor]
    except KeyError:
        raise UnknownNameError(
            f"No default model for feature extractor {feature_extractor!r}. Extractors with one: "
            f"{', '.join(MODEL_DEFAULTS)}."
        ) from None


def edge_negative_weight(feature_extractor: str) -> float:
    """The ``negative_weight`` a device trains ``feature_extractor``'s default model with (0 =
    the owner's images only).

    Raises
    ------
    UnknownNameError
        When ``feature_extractor`` has no default model (as :func:`model_defaults`).
    """
    model_defaults(feature_extractor)
    return EDGE_NEGATIVE_WEIGHT.get(feature_extractor, 0.0)


def model_shape(feature_extractor: str) -> str:
    """The default model's layer sizes for ``feature_extractor``, e.g. ``"784-256-32-256-784"``."""
    values = model_defaults(feature_extractor)
    widths = list(values["layer_widths"])
    dims = [values["input_dim"], *widths, values["hidden_dim"], *reversed(widths)]
    return "-".join(str(d) for d in [*dims, values["input_dim"]])
