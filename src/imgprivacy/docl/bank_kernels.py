"""The bank's scoring kernels: a fused native kernel where it can be built, torch otherwise.

The native kernel (``bank_kernel.c``) runs every layer of each stacked model and the distance
tail (bias, sigmoid, subtract, square, sum) in one pass over a block of inputs, so the (B, D)
reconstruction never reaches memory, and it reads fp16/bf16 weights converting them in
registers. It is compiled at the first score that can use it (not when a bank is built, so
start-up does not pay it), once per source version, with the system C compiler (``cc``/``gcc``,
AVX2 + FMA + F16C) into a cache directory and loaded with :mod:`ctypes`; where that fails (no
compiler, another CPU, a read-only cache) the bank falls back to the torch path
(:func:`imgprivacy.docl.bank_stack.stacked_distances`), logging why once.

``IMGPRIVACY_KERNEL_CACHE`` overrides the cache directory (default
``~/.cache/imgprivacy/kernels``).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from imgprivacy.docl.bank_stack import group_dims, group_distances
from imgprivacy.errors import InvalidInputError, UnknownNameError

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("bank_kernel.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-mf16c", "-shared", "-fPIC")
KERNELS = ("auto", "native", "torch")  # FilterBank(kernel=...)
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
# Inputs per block: the block's activations stay in L2 while each model's weights are reused
# across its rows (12 to 256 measured within a few percent of each other at B = 256).
ROWS_PER_BLOCK = 48
# Below this many multiply-adds per call, one thread beats handing work to another.
MIN_WORK_PER_THREAD = 2_000_000
# On several threads the models are cut into this many contiguous ranges per thread, which the
# threads claim one at a time: a thread slowed by other work on its core (the service's event
# loop, another process) takes fewer ranges instead of holding up the pass with a fixed half.
CHUNKS_PER_THREAD = 4
# ...but no range under this many models (B = 1 reads 16 models' first layers as one GEMV), so
# small banks keep one range per thread.
MIN_MODELS_PER_RANGE = 16
# ``kernel="auto"`` (resolve_kernel) runs every group of models with the native kernel wherever it
# builds: timed against the torch path in alternated pairs on two threads (N = 100 default
# 784-256-32-256-784 and N = 400 paper 784-32-784 models, B = 64 to 1024; docs/performance.md,
# "Which kernel runs"), torch was slower in every cell, by CPU time as by wall time; earlier
# measurements found the same at one thread from B = 16 to 256.

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failure: str | None = None
_pool: ThreadPoolExecutor | None = None


def cache_dir() -> Path:
    root = os.environ.get("IMGPRIVACY_KERNEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "imgprivacy" / "kernels"


def _cpu_supports() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    line = next((ln for ln in flags.splitlines() if ln.startswith("flags")), "")
    return {"avx2", "fma", "f16c"} <= set(line.split())


def build_library(defines: tuple[str, ...] = ()) -> ctypes.CDLL:
    """Compile (or load from the cache) the kernel, with ``-D`` ``defines`` such as
    ``("PANEL_PREFETCH=0",)`` for a variant the benchmarks compare against; raises OSError."""
    flags = (*FLAGS, *(f"-D{d}" for d in defines))
    source = SOURCE.read_bytes()
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    if not _cpu_supports():
        raise OSError("the CPU lacks AVX2, FMA or F16C")
    key = hashlib.sha256(source + " ".join(flags).encode()).hexdigest()[:16]
    target = cache_dir() / f"bank_kernel-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = Path(tmp) / target.name
            result = subprocess.run(
                [compiler, *flags, "-o", str(built), str(SOURCE), "-lm"],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise OSError(f"{compiler} failed: {result.stderr.strip()[:2000]}")
            os.replace(built, target)  # atomic: concurrent builders never load half a file
    library = ctypes.CDLL(str(target))
    # the model stack, first in both entry points' arguments
    stack_args = [
        ctypes.c_int,  # dtype code
        ctypes.c_int,  # number of layers
        ctypes.POINTER(ctypes.c_long),  # layer sizes
        ctypes.POINTER(ctypes.c_void_p),  # weights per layer
        ctypes.POINTER(ctypes.c_void_p),  # biases per layer
    ]
    fn = library.imgp_bank_distances
    fn.restype = ctypes.c_int
    fn.argtypes = [
        *stack_args,
        ctypes.c_long,  # first model
        ctypes.c_long,  # end model
        ctypes.c_void_p,  # x
        ctypes.c_long,  # batch
        ctypes.c_long,  # rows per block
        ctypes.c_void_p,  # out
    ]
    claimed = library.imgp_bank_distances_claimed
    claimed.restype = ctypes.c_int
    claimed.argtypes = [
        *stack_args,
        ctypes.POINTER(ctypes.c_long),  # range bounds (n_ranges + 1 model indices)
        ctypes.c_long,  # number of ranges
        ctypes.POINTER(ctypes.c_long),  # shared counter: the next range to claim
        ctypes.c_void_p,  # x
        ctypes.c_long,  # batch
        ctypes.c_long,  # rows per block
        ctypes.c_void_p,  # out
    ]
    return library


def native_library() -> ctypes.CDLL | None:
    """The compiled kernel, building it on first use; ``None`` if it cannot be built here."""
    global _library, _failure
    if _library is not None or _failure is not None:
        return _library
    with _lock:
        if _library is None and _failure is None:
            try:
                _library = build_library()
            except OSError as exc:
                _failure = str(exc)
                logger.warning("native bank kernel unavailable (%s); scoring with torch", exc)
    return _library


def native_unavailable_reason() -> str | None:
    """Why the native kernel cannot be used (``None`` when it can)."""
    native_library()
    return _failure


def resolve_kernel(kernel: str, *, device: str = "cpu") -> str:
    """``"native"`` or ``"torch"`` for a requested ``kernel`` name in :data:`KERNELS`."""
    if kernel not in KERNELS:
        raise UnknownNameError(
            f"Unknown bank kernel {kernel!r}. Valid kernels: {', '.join(KERNELS)}."
        )
    if kernel == "torch" or (kernel == "auto" and device != "cpu"):
        return "torch"
    if device != "cpu":
        raise InvalidInputError(
            f"The native bank kernel runs on the CPU only, got device={device!r}; "
            "use kernel='auto' or 'torch'."
        )
    if native_library() is None:
        if kernel == "native":
            raise InvalidInputError(
                f"The native bank kernel cannot be built here ({_failure}); install a C "
                "compiler (gcc) on an AVX2 machine or use kernel='auto' or 'torch'."
            )
        return "torch"
    return "native"


def check_kernel(kernel: str, *, device: str = "cpu") -> str:
    """Validate a requested ``kernel`` without building anything unless it must be native.

    Returns ``"torch"``, ``"native"`` (an explicit request, built now so that a machine that
    cannot build it fails at once with the fix) or ``"auto"``, which :func:`resolve_kernel`
    settles at the first score.
    """
    if kernel == "auto" and device == "cpu":
        return "auto"
    return resolve_kernel(kernel, device=device)


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bank-kernel")
        return _pool


def group_distances_native(group, x: torch.Tensor, *, threads: int) -> torch.Tensor:
    """(B, n) distances for one :class:`~imgprivacy.docl.bank_stack.LayerStack`.

    ``threads`` threads claim contiguous ranges of models (:data:`CHUNKS_PER_THREAD` per
    thread) from a counter shared in C until none is left (ctypes releases the GIL for the whole
    call, so no thread waits for the GIL between ranges).
    """
    library = native_library()
    weights = [group.first_weight, *group.weights_t]
    biases = [group.first_bias, *group.biases]
    n_models = group.first_weight.shape[0]
    dims = list(group_dims(group))
    batch = x.shape[0]
    x = x.contiguous()
    out = torch.empty(n_models, batch, dtype=torch.float32)
    dims_c = (ctypes.c_long * len(dims))(*dims)
    weights_c = (ctypes.c_void_p * len(weights))(*(w.data_ptr() for w in weights))
    biases_c = (ctypes.c_void_p * len(biases))(*(b.data_ptr() for b in biases))
    code = DTYPE_CODES[weights[0].dtype]
    block = min(ROWS_PER_BLOCK, batch)

    def run(start: int, stop: int) -> None:
        status = library.imgp_bank_distances(
            code, len(weights), dims_c, weights_c, biases_c, start, stop,
            x.data_ptr(), batch, block, out.data_ptr(),
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(f"native bank kernel failed with status {status}")

    work = n_models * batch * sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    threads = max(1, min(threads, n_models, work // MIN_WORK_PER_THREAD))
    if threads == 1:
        run(0, n_models)
        return out.t()
    chunks = max(threads, min(threads * CHUNKS_PER_THREAD, n_models // MIN_MODELS_PER_RANGE))
    bounds_c = (ctypes.c_long * (chunks + 1))(*(n_models * c // chunks for c in range(chunks + 1)))
    claims = (ctypes.c_long * 1)(0)  # the next range to claim, shared by the threads (in C)

    def worker() -> None:
        status = library.imgp_bank_distances_claimed(
            code, len(weights), dims_c, weights_c, biases_c, bounds_c, chunks, claims,
            x.data_ptr(), batch, block, out.data_ptr(),
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(f"native bank kernel failed with status {status}")

    pool = _thread_pool(threads - 1)
    futures = [pool.submit(worker) for _ in range(threads - 1)]
    worker()
    for future in futures:
        future.result()
    return out.t()


def native_stacked_distances(
    snap,
    x: torch.Tensor,
    *,
    threads: int,
    kernels: tuple[str, ...] | None = None,
    chunk_bytes: int = 8 * 1024 * 1024,
) -> torch.Tensor:
    """(B, N) distances of ``x`` to every model of ``snap`` (as ``stacked_distances``), each group
    with its kernel in ``kernels`` (default: all native; ``chunk_bytes`` bounds the torch path)."""
    out = torch.empty(x.shape[0], len(snap.entries), dtype=torch.float32)
    kernels = kernels or tuple("native" for _ in snap.groups)
    for group, kernel in zip(snap.groups, kernels, strict=True):
        if kernel == "native":
            out[:, group.columns] = group_distances_native(group, x, threads=threads)
        else:
            with torch.inference_mode():
                out[:, group.columns] = group_distances(group, x, chunk_bytes=chunk_bytes)
    return out
