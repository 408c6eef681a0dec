"""The faces reproduction trains the face extractor's default model (one home for it)."""

from __future__ import annotations

import pytest

from imgprivacy.docl import AutoencoderConfig
from imgprivacy.docl.defaults import model_defaults
from imgprivacy.reproduce.docl_faces import FEATURES, configurations


@pytest.mark.parametrize(("quick", "epochs"), [(True, 100), (False, 300)])
def test_the_runs_are_the_papers_models_with_more_steps(quick, epochs):
    configs = configurations(quick)
    assert list(configs) == ["m32", "m132"]
    for m, config in zip((32, 132), configs.values()):
        # what the reproduction measured: the paper's training, batches of 32, M = 32 and 132
        paper = AutoencoderConfig.paper(
            hidden_dim=m, epochs=epochs, batch_size=32, feature_extractor=FEATURES, input_dim=256
        )
        assert config == paper
        assert config.input_dim == model_defaults(FEATURES)["input_dim"]
