"""kernel="auto" runs the native kernel at every batch size (torch only where it cannot build);
results do not move."""

import threading

import pytest
import torch

from imgprivacy.docl import bank_kernels
from tests.docl.test_bank_kernels import bank_of, needs_native, random_models

WIDE = (24, 160, 8, 160, 24)  # a wide hidden layer, as the default model's
NARROW = (24, 8, 24)


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


@pytest.fixture()
def two_threads():
    """Two torch threads, where the earlier rule handed large batches on wide models to torch."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@needs_native
@pytest.mark.parametrize("batch", [1, 5, 256, 1024])
def test_auto_runs_every_group_natively_and_equals_the_reference(spies, two_threads, batch):
    """The native kernel measured faster than torch at every batch from 64 to 1024, for wide and
    narrow models alike (docs/performance.md), so auto never hands a group to torch."""
    models = [*random_models(WIDE, 3), *random_models(NARROW, 4, seed=1)]
    models.insert(1, models.pop())  # interleave the groups in the bank's order
    x = torch.rand(batch, WIDE[0])
    expected = torch.stack([m.distances(x) for m in models], dim=1)
    bank = bank_of(models)
    assert bank.kernels_for(batch) == ("native", "native")
    torch.testing.assert_close(bank.distances(x), expected, rtol=1e-5, atol=0)
    assert spies == {"native": 2, "torch": 0}


@needs_native
def test_an_explicit_kernel_is_never_overridden(spies):
    models = random_models(WIDE, 2)
    x = torch.rand(256, WIDE[0])
    expected = torch.stack([m.distances(x) for m in models], dim=1)
    native = bank_of(models, kernel="native")
    assert native.kernels_for(len(x)) == ("native",)
    torch.testing.assert_close(native.distances(x), expected, rtol=1e-5, atol=0)
    assert spies == {"native": 1, "torch": 0}
    assert bank_of(models, kernel="torch").kernels_for(1) == ("torch",)
    torch_bank = bank_of(models, kernel="torch")
    torch.testing.assert_close(torch_bank.distances(x), expected, rtol=1e-5, atol=0)
    assert spies["native"] == 1  # the torch bank never reached the native kernel


@needs_native
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_one_input_over_many_models_equals_the_reference(monkeypatch, threads):
    """B = 1 reads the first layer of consecutive models as one GEMV: ranges that cross those
    runs, and threads that split them, must keep every column in place."""
    monkeypatch.setattr(bank_kernels, "MIN_WORK_PER_THREAD", 1)
    monkeypatch.setattr(bank_kernels, "MIN_MODELS_PER_RANGE", 1)  # many ranges per thread
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


class StalledFirstRange:
    """Stands in for the compiled library's claiming entry point (the shared counter and the
    bounds are the ctypes arrays it is given): records each range a thread claims; the first
    range claimed stalls (a thread whose core is busy elsewhere) until every other one is done."""

    def __init__(self):
        self.claimed: list[tuple[int, int, str]] = []
        self.others_done = threading.Event()
        self.lock = threading.Lock()

    def imgp_bank_distances_claimed(self, code, layers, dims, weights, biases, bounds, n, claims,
                                    *rest):  # fmt: skip
        while True:
            with self.lock:
                c = claims[0]
                claims[0] += 1
                if c >= n:
                    return 0
                first = not self.claimed
                self.claimed.append((bounds[c], bounds[c + 1], threading.current_thread().name))
                last = len(self.claimed) == n
            if first:
                self.others_done.wait(timeout=10)
            elif last:
                self.others_done.set()


def test_a_stalled_thread_leaves_its_share_of_the_models_to_the_others(monkeypatch):
    """Threads claim model ranges one at a time: while one thread is held up on its first range,
    the other scores every remaining range, and each range runs exactly once."""
    monkeypatch.setattr(bank_kernels, "MIN_WORK_PER_THREAD", 1)
    monkeypatch.setattr(bank_kernels, "MIN_MODELS_PER_RANGE", 1)  # many ranges per thread
    group = bank_of(random_models(NARROW, 37), kernel="torch").snapshot().groups[0]
    ranges = 2 * bank_kernels.CHUNKS_PER_THREAD
    fake = StalledFirstRange()
    monkeypatch.setattr(bank_kernels, "native_library", lambda: fake)
    bank_kernels.group_distances_native(group, torch.rand(3, NARROW[0]), threads=2)
    covered = sorted((start, stop) for start, stop, _ in fake.claimed)
    assert covered[0][0] == 0 and covered[-1][1] == 37 and len(covered) == ranges
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))  # disjoint, no gap
    stalled = fake.claimed[0][2]
    assert [name for _, _, name in fake.claimed].count(stalled) == 1


def test_small_banks_keep_one_range_per_thread(monkeypatch):
    """No range under MIN_MODELS_PER_RANGE models: 37 models on two threads make two ranges."""
    monkeypatch.setattr(bank_kernels, "MIN_WORK_PER_THREAD", 1)
    group = bank_of(random_models(NARROW, 37), kernel="torch").snapshot().groups[0]
    fake = StalledFirstRange()
    monkeypatch.setattr(bank_kernels, "native_library", lambda: fake)
    bank_kernels.group_distances_native(group, torch.rand(3, NARROW[0]), threads=2)
    assert sorted((start, stop) for start, stop, _ in fake.claimed) == [(0, 18), (18, 37)]
