"""kernel="auto" picks native or torch per group of models and batch size; results do not move."""

import pytest
import torch

from imgprivacy.docl import bank_kernels
from tests.docl.test_bank_kernels import bank_of, needs_native, random_models

WIDE = (24, 160, 8, 160, 24)  # a hidden layer of >= TORCH_MIN_WIDTH units
NARROW = (24, 8, 24)


def test_the_rule_hands_large_batches_on_wide_fp32_models_to_torch_on_several_threads():
    large, fp32 = bank_kernels.TORCH_MIN_BATCH, torch.float32
    default, paper = (784, 256, 32, 256, 784), (784, 32, 784)
    assert bank_kernels.dispatch(default, batch=large, dtype=fp32, threads=2) == "torch"
    assert bank_kernels.dispatch(default, batch=large - 1, dtype=fp32, threads=2) == "native"
    assert bank_kernels.dispatch(default, batch=large, dtype=fp32, threads=1) == "native"
    assert bank_kernels.dispatch(default, batch=1, dtype=fp32, threads=2) == "native"
    assert bank_kernels.dispatch(paper, batch=4 * large, dtype=fp32, threads=2) == "native"
    # compact weights stay native: torch would first widen every chunk to fp32
    assert bank_kernels.dispatch(default, batch=large, dtype=torch.float16, threads=2) == "native"


@pytest.fixture()
def spies(monkeypatch):
    """Count the groups each path scores."""
    calls = {"native": 0, "torch": 0}
    native, torch_path = bank_kernels.group_distances_native, bank_kernels.group_distances

    def counting_native(*args, **kwargs):
        calls["native"] += 1
        return native(*args, **kwargs)

    def counting_torch(*args, **kwargs):
        calls["torch"] += 1
        return torch_path(*args, **kwargs)

    monkeypatch.setattr(bank_kernels, "group_distances_native", counting_native)
    monkeypatch.setattr(bank_kernels, "group_distances", counting_torch)
    return calls


@needs_native
@pytest.mark.parametrize("batch", [1, 5, bank_kernels.TORCH_MIN_BATCH])
def test_auto_dispatches_each_group_and_equals_the_reference(spies, monkeypatch, batch):
    monkeypatch.setattr(bank_kernels, "TORCH_MIN_THREADS", 1)  # whatever this machine has
    models = [*random_models(WIDE, 3), *random_models(NARROW, 4, seed=1)]
    models.insert(1, models.pop())  # interleave the groups in the bank's order
    x = torch.rand(batch, WIDE[0])
    expected = torch.stack([m.distances(x) for m in models], dim=1)
    bank = bank_of(models)
    wide_first = bank.snapshot().groups[0].first_weight.shape[1] == WIDE[1]
    large = batch >= bank_kernels.TORCH_MIN_BATCH
    wide_kernel = "torch" if large else "native"
    want = (wide_kernel, "native") if wide_first else ("native", wide_kernel)
    assert bank.kernels_for(batch) == want
    torch.testing.assert_close(bank.distances(x), expected, rtol=1e-5, atol=0)
    assert spies == {"native": 2 - large, "torch": int(large)}


@needs_native
def test_an_explicit_kernel_is_never_overridden(spies, monkeypatch):
    monkeypatch.setattr(bank_kernels, "TORCH_MIN_THREADS", 1)
    models = random_models(WIDE, 2)
    x = torch.rand(bank_kernels.TORCH_MIN_BATCH, WIDE[0])
    expected = torch.stack([m.distances(x) for m in models], dim=1)
    native = bank_of(models, kernel="native")
    assert native.kernels_for(len(x)) == ("native",)
    torch.testing.assert_close(native.distances(x), expected, rtol=1e-5, atol=0)
    assert spies == {"native": 1, "torch": 0}
    assert bank_of(models, kernel="torch").kernels_for(1) == ("torch",)
    assert bank_of(models).kernels_for(len(x)) == ("torch",)  # what auto would have run


@needs_native
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_one_input_over_many_models_equals_the_reference(monkeypatch, threads):
    """B = 1 reads the first layer of consecutive models as one GEMV: ranges that cross those
    runs, and threads that split them, must keep every column in place."""
    monkeypatch.setattr(bank_kernels, "MIN_WORK_PER_THREAD", 1)
    for dims in (NARROW, WIDE):
        models = random_models(dims, 37, seed=threads)
        x = torch.rand(1, dims[0])
        expected = torch.stack([m.distances(x) for m in models], dim=1)
        snap = bank_of(models, kernel="native").snapshot()
        got = bank_kernels.native_stacked_distances(snap, x, threads=threads)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)


@needs_native
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_one_input_on_compact_weights_equals_the_torch_path(precision):
    models = random_models(WIDE, 37, seed=5)
    x = torch.rand(1, WIDE[0])
    native = bank_of(models, precision=precision, kernel="native").distances(x)
    torch_path = bank_of(models, precision=precision, kernel="torch").distances(x)
    torch.testing.assert_close(native, torch_path, rtol=1e-5, atol=0)
