"""The fused native kernel and compact weights against the torch reference path."""

import pytest
import torch

from imgprivacy.docl import (
    AutoencoderConfig,
    FilterBank,
    OneClassAutoencoder,
    bank_kernels,
    bank_precision,
)
from imgprivacy.docl.bank_precision import PRECISIONS, Precision
from imgprivacy.errors import InvalidInputError, UnknownNameError

needs_native = pytest.mark.skipif(
    bank_kernels.native_library() is None,
    reason=f"native kernel unavailable: {bank_kernels.native_unavailable_reason()}",
)


def random_models(dims, n, seed=0, scale=1.0):
    widths = dims[1 : (len(dims) - 1) // 2]
    cfg = AutoencoderConfig(input_dim=dims[0], hidden_dim=dims[len(dims) // 2], layer_widths=widths)
    gen = torch.Generator().manual_seed(seed)
    models = []
    for _ in range(n):
        weights = {}
        for k, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            weights[f"layers.{k}.weight"] = scale * torch.randn(fan_out, fan_in, generator=gen)
            weights[f"layers.{k}.weight"] /= fan_in**0.5
            weights[f"layers.{k}.bias"] = torch.randn(fan_out, generator=gen) * 0.1
        models.append(OneClassAutoencoder.from_weights(cfg, weights, error_mean=3.0, error_std=1.0))
    return models


def bank_of(models, **kwargs):
    bank = FilterBank(input_dim=models[0].config.input_dim, **kwargs)
    bank.add_many((f"u{i}", m) for i, m in enumerate(models))
    return bank


# Odd widths and batch sizes reach every tile remainder: rows 6/4/2/1 and the few-row streaming
# path, column panels of 16 and 8 and single columns, inner sizes not a multiple of 8.
SHAPES = [(37, 19, 5, 19, 37), (64, 16, 64), (16, 3, 16), (40, 12, 4, 12, 40)]


@needs_native
@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("batch", [1, 3, 5, 13, 50])
def test_native_kernel_equals_the_reference(dims, batch):
    models = random_models(dims, 5, seed=batch)
    x = torch.rand(batch, dims[0])
    expected = torch.stack([m.distances(x) for m in models], dim=1)
    native = bank_of(models, kernel="native").distances(x)
    torch.testing.assert_close(native, expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(
        bank_of(models, kernel="torch").distances(x), expected, rtol=1e-5, atol=0
    )


@needs_native
def test_mixed_shapes_and_threads(monkeypatch):
    """Groups of several shapes, models split over threads: each column where it belongs."""
    models = [*random_models(SHAPES[0], 3), *random_models((37, 8, 37), 5, seed=1)]
    models.insert(1, models.pop())  # interleave the groups in the bank's order
    x = torch.rand(9, 37)
    expected = torch.stack([m.distances(x) for m in models], dim=1)
    monkeypatch.setattr(bank_kernels, "MIN_WORK_PER_THREAD", 1)
    monkeypatch.setattr(bank_kernels, "MIN_MODELS_PER_RANGE", 1)  # many ranges per thread
    snap = bank_of(models, kernel="native").snapshot()
    for threads in (1, 2, 3):
        got = bank_kernels.native_stacked_distances(snap, x, threads=threads)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)


@needs_native
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_compact_weights_native_equals_torch_and_stays_near_fp32(precision):
    models = random_models((64, 16, 64), 6)
    x = torch.rand(11, 64)
    reference = bank_of(models).distances(x)
    native = bank_of(models, precision=precision, kernel="native")
    torch_path = bank_of(models, precision=precision, kernel="torch")
    torch.testing.assert_close(native.distances(x), torch_path.distances(x), rtol=1e-5, atol=0)
    tolerance = {"fp16": 1e-3, "bf16": 1e-2}[precision]
    torch.testing.assert_close(native.distances(x), reference, rtol=tolerance, atol=0)
    staged = bank_of(models, precision=precision)._models["u0/0"][1]  # before any snapshot
    assert staged["layers.0.weight"].dtype == PRECISIONS[precision].dtype  # no fp32 copy kept
    group = native.snapshot().groups[0]
    assert group.first_weight.dtype == PRECISIONS[precision].dtype
    assert group.first_bias.dtype == torch.float32  # biases stay fp32
    assert group.first_weight.element_size() == 2


@needs_native
def test_a_hidden_overflow_gives_nan_as_torch_does():
    """relu and the sigmoid's clamp must keep NaN (max/min return one operand on NaN)."""
    cfg = AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(8,))
    weights = {
        name: torch.zeros(w.shape)
        for name, w in random_models((16, 8, 4, 8, 16), 1)[0].weights().items()
    }
    weights["layers.0.bias"].fill_(3e38)
    weights["layers.1.weight"].fill_(3e38)
    model = OneClassAutoencoder.from_weights(cfg, weights, error_mean=2.0, error_std=1.0)
    x = torch.rand(7, 16)
    assert torch.isnan(model.distances(x)).all()
    assert torch.isnan(bank_of([model], kernel="native").distances(x)).all()


def test_unknown_names_are_listed():
    with pytest.raises(UnknownNameError, match="Valid precisions: fp32, fp16, bf16"):
        FilterBank(precision="int4")
    with pytest.raises(UnknownNameError, match="Valid kernels: auto, native, torch"):
        FilterBank(kernel="fast")
    with pytest.raises(InvalidInputError, match="runs on the CPU only"):
        FilterBank(kernel="native", device="meta")


def test_fp16_refuses_weights_beyond_its_range():
    model = random_models((16, 4, 16), 1, scale=1e6)[0]
    with pytest.raises(InvalidInputError, match="beyond fp16's largest value 65504.*'bf16'"):
        bank_of([model], precision="fp16")
    assert len(bank_of([model], precision="bf16")) == 1


def test_a_refused_shape_is_refused_with_the_reason(monkeypatch):
    refusing = Precision(
        "bf16", torch.bfloat16, 1e38, refused_shapes={(16, 4, 16): "decisions changed"}
    )
    monkeypatch.setitem(bank_precision.PRECISIONS, "bf16", refusing)
    with pytest.raises(
        InvalidInputError, match="bf16 weights are refused for 16-4-16 models: decisions changed"
    ):
        bank_of(random_models((16, 4, 16), 1), precision="bf16")
    assert len(bank_of(random_models((16, 5, 16), 1), precision="bf16")) == 1


def test_without_the_native_kernel_auto_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(bank_kernels, "native_library", lambda: None)
    monkeypatch.setattr(bank_kernels, "_failure", "no C compiler (cc or gcc) on PATH")
    models = random_models((16, 4, 16), 2)
    x = torch.rand(3, 16)
    expected = torch.stack([m.distances(x) for m in models], dim=1)
    torch.testing.assert_close(bank_of(models).distances(x), expected, rtol=1e-5, atol=0)
    with pytest.raises(InvalidInputError, match="cannot be built here.*no C compiler"):
        FilterBank(kernel="native")


def test_a_failed_build_raises_with_the_compiler_output(monkeypatch, tmp_path):
    broken = tmp_path / "broken.c"
    broken.write_text("int f( {\n")
    monkeypatch.setattr(bank_kernels, "SOURCE", broken)
    monkeypatch.setenv("IMGPRIVACY_KERNEL_CACHE", str(tmp_path / "cache"))
    if bank_kernels.shutil.which("cc") is None and bank_kernels.shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    if not bank_kernels._cpu_supports():
        pytest.skip("no AVX2")
    with pytest.raises(OSError, match="failed"):
        bank_kernels.build_library()
    assert list((tmp_path / "cache").glob("*.so")) == []  # nothing half-built is left


def test_the_service_setting_selects_the_bank_precision(tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    from imgprivacy.service import create_app
    from imgprivacy.service.settings import ServiceSettings

    monkeypatch.setenv("IMGPRIVACY_BANK_PRECISION", "bf16")
    settings = ServiceSettings(database_url=f"sqlite:///{tmp_path / 's.db'}", probe_count=0)
    assert settings.bank_precision == "bf16"
    assert create_app(settings).state.service.bank.precision == "bf16"
    with pytest.raises(UnknownNameError, match="Valid precisions"):
        create_app(settings.model_copy(update={"bank_precision": "fp8"}))


def test_the_native_kernel_is_built_at_the_first_score_not_at_construction(monkeypatch):
    import threading

    real_build = bank_kernels.build_library
    builds = []

    def counting_build():
        builds.append(threading.get_ident())
        return real_build()  # may raise OSError here: then the bank scores with torch

    monkeypatch.setattr(bank_kernels, "build_library", counting_build)
    monkeypatch.setattr(bank_kernels, "_library", None)  # as in a fresh process
    monkeypatch.setattr(bank_kernels, "_failure", None)
    models = random_models((16, 4, 16), 3)
    bank = bank_of(models)
    assert builds == []  # constructing (and filling) a bank compiles nothing
    x = torch.rand(4, 16)
    expected = torch.stack([m.distances(x) for m in models], dim=1)
    banks = [bank_of(models) for _ in range(6)]
    results = [None] * len(banks)

    def score(i):
        results[i] = banks[i].distances(x)

    threads = [threading.Thread(target=score, args=(i,)) for i in range(len(banks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1  # banks scoring at once in several threads: one build
    torch.testing.assert_close(bank.distances(x), expected, rtol=1e-4, atol=1e-5)
    for result in results:
        torch.testing.assert_close(result, expected, rtol=1e-4, atol=1e-5)
    assert len(builds) == 1 and bank._kernel in ("native", "torch")
