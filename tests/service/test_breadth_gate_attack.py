"""The paper's adversary (Fig. 4) through the public API of real servers, with the service's
defaults (policy margin, alpha 2.1, margin 1.0, breadth gate 1.5) and with the gate off.

A victim uploads a guard trained on their digit; an adversary uploads one trained on their own
digit plus the victim's images, then uploads the victim's images. With the gate the adversary's
two-digit model is too broad to vouch against the victim's, so the victim's model's claims block
those uploads; without it the adversary's model explains them as well as the victim's and they are
shared. The victim's own uploads are shared either way.
"""

from __future__ import annotations

import pytest
import torch

from imgprivacy.client import GuardClient
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
from imgprivacy.service.launcher import start_server
from tests.service.conftest import TEST_CONFIG, feature_png, fresh_database, server_env, unique

VICTIM, ADVERSARY = 1, 7  # the digit each protects
ADVERSARY_EPOCHS = 40  # a fully trained attacker: twice the data, twice the epochs


@pytest.fixture(scope="module")
def attack(digits):
    """(victim's model bytes, adversary's model bytes, the victim's unseen test images)."""
    config = AutoencoderConfig(**TEST_CONFIG)
    victim = OneClassAutoencoder(config).fit(digits["train"][VICTIM])
    both = torch.cat([digits["train"][ADVERSARY], digits["train"][VICTIM]])
    adversary = OneClassAutoencoder(config.replace(epochs=ADVERSARY_EPOCHS)).fit(both)
    images = digits["test_x"][torch.as_tensor(digits["test_y"] == VICTIM)]
    return autoencoder_to_bytes(victim), autoencoder_to_bytes(adversary), images


def run_attack(tmp_path, attack, **settings) -> dict[str, float]:
    """Start a server with ``settings``; the shares of the victim's images each user gets."""
    victim_bytes, adversary_bytes, images = attack
    url = fresh_database("sqlite", tmp_path)
    env = server_env(url, **settings)
    with start_server(log_path=tmp_path / "service.log", env=env) as server:
        victim = GuardClient(server.url, retries=1, backoff=0.05)
        victim.register(unique("victim"))
        victim.upload("digit", victim_bytes)
        adversary = GuardClient(server.url, retries=1, backoff=0.05)
        adversary.register(unique("adversary"))
        adversary.upload("digits", adversary_bytes)  # admitted: it claims only digits 1 and 7
        state = victim.ready()
        pngs = [feature_png(row) for row in images]
        shared = {
            who: sum(client.check_image(png).share for png in pngs) / len(pngs)
            for who, client in (("victim", victim), ("adversary", adversary))
        }
        for client in (victim, adversary):
            client.close()
    return {**shared, "state": state}


def test_the_breadth_gate_stops_the_papers_adversary(tmp_path, attack):
    gated = run_attack(tmp_path / "gate", attack)  # the service's defaults
    state = gated["state"]
    assert (state["policy"], state["alpha"], state["margin"]) == ("margin", 2.1, 1.0)
    assert state["breadth_ratio"] == 1.5
    assert gated["adversary"] <= 0.1  # the adversary's uploads of the victim's images: blocked
    assert gated["victim"] >= 0.9  # the victim's own uploads: shared

    open_ = run_attack(tmp_path / "no-gate", attack, breadth_ratio="none")
    assert open_["state"]["breadth_ratio"] is None
    assert open_["adversary"] >= 0.5  # without the gate the adversary shares them
    assert open_["victim"] >= 0.9
