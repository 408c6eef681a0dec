"""The live end-to-end demo: the paper's 10 MNIST users through HTTP, beside the in-process run.

1. Start the service (``imgprivacy serve``) on 127.0.0.1 with a fresh SQLite file.
2. Each user u0..u9 writes their digit's training images to their own folder, trains a guard
   there with the edge client (:func:`imgprivacy.client.train_guard`), registers and uploads it.
3. MNIST test images and Fashion-MNIST images are uploaded to ``/v1/check`` as PNG files, each
   by a random user, from several concurrent clients.
4. The same (image, uploader) pairs go through the in-process bank + Guard built from the same
   files, and the reproduction's protocol (:func:`evaluate_configuration`, models trained
   in-process) runs on the same data: the decisions must be identical and the models the same.
5. A few malformed, unauthorised and hostile requests show what such callers get back.
"""

from __future__ import annotations

import dataclasses
import io
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imgprivacy.client import GuardClient, negative_features, train_guard
from imgprivacy.docl import (
    FilterBank,
    Guard,
    autoencoder_from_bytes,
    autoencoder_to_bytes,
    load_autoencoder,
)
from imgprivacy.progress import ProgressFactory, resolve
from imgprivacy.reproduce.docl_data import mnist_experiment
from imgprivacy.reproduce.docl_experiments import user_name
from imgprivacy.reproduce.docl_mnist import configurations
from imgprivacy.reproduce.docl_protocol import ProtocolSettings, evaluate_configuration
from imgprivacy.service.breadth import stored_breadths
from imgprivacy.service.launcher import start_server
from imgprivacy.service.storage import Storage

DEMO_TRAIN_PER_USER = 800  # images per user (reproduce --quick uses 1500)
# Enough for every honest guard to pass the service's probe check: shorter or coarser training
# leaves guards that claim over a third of all digits, which the service refuses.
DEMO_EPOCHS = 30
DEMO_BATCH_SIZE = 32
CATEGORIES = ("MNIST, uploaded by its owner", "MNIST, uploaded by another user", "Fashion-MNIST")


@dataclass
class DemoResult:
    rows: list[dict]  # one per category: counts and rates, HTTP and in-process
    disagreements: int  # HTTP decision != in-process decision
    checks: int
    checks_per_second: float
    max_stat_difference: float  # |mu, sigma| edge-trained vs in-process reproduction
    examples: list[tuple[str, int | None, str]] = field(default_factory=list)
    policy: str = ""
    alpha: float = 0.0
    reproduction: dict = field(default_factory=dict)


def png_bytes(features: torch.Tensor) -> bytes:
    """A 28x28 grey PNG whose pixels give back exactly ``features`` (x = u8 / 255)."""
    pixels = (features.reshape(28, 28).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _write_user_folders(data, root: Path) -> dict[str, Path]:
    folders = {}
    for cls in data.classes:
        folder = root / user_name(cls) / "private"
        folder.mkdir(parents=True)
        rows = np.flatnonzero(data.train_y == cls)
        for k, row in enumerate(rows):  # zero-padded names keep the training order
            (folder / f"{k:05d}.png").write_bytes(png_bytes(data.train_x[row]))
        folders[user_name(cls)] = folder
    return folders


def _examples(
    url: str, token: str, other_token: str, honest: bytes
) -> list[tuple[str, int | None, str]]:
    """What unauthorised, malformed and hostile requests get back."""
    import httpx

    auth = {"Authorization": f"Bearer {token}"}
    other = {"Authorization": f"Bearer {other_token}"}
    httpx.put(f"{url}/v1/models/diary", content=honest, headers=auth).raise_for_status()
    cases = [
        ("check without a token", "POST", "/v1/check", {"json": {"features": [0.0] * 784}}),
        (
            "check with a wrong token",
            "POST",
            "/v1/check",
            {"json": {"features": [0.0] * 784}, "headers": {"Authorization": "Bearer ipk_wrong"}},
        ),
        (
            "check with a GIF body",
            "POST",
            "/v1/check",
            {"content": b"GIF89a....", "headers": {**auth, "Content-Type": "image/png"}},
        ),
        (
            "check with 10 features",
            "POST",
            "/v1/check",
            {"json": {"features": [0.5] * 10}, "headers": auth},
        ),
        (
            "upload garbage as a model",
            "PUT",
            "/v1/models/x",
            {"content": b"not a safetensors file", "headers": auth},
        ),
        (
            "upload a model whose interval covers everything",
            "PUT",
            "/v1/models/x",
            {"content": _widened(honest, 30.0), "headers": auth},
        ),
        (
            "implausible statistics (sigma x 1000)",
            "PUT",
            "/v1/models/x",
            {"content": _widened(honest, 1000.0), "headers": auth},
        ),
        ("read another user's model 'diary'", "GET", "/v1/models/diary", {"headers": other}),
        ("delete another user's model 'diary'", "DELETE", "/v1/models/diary", {"headers": other}),
        ("admin listing with a user token", "GET", "/v1/admin/users", {"headers": auth}),
    ]
    out = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for label, method, path, kwargs in cases:
            response = http.request(method, path, **kwargs)
            out.append((label, response.status_code, response.text[:300]))
    return out


def _widened(honest: bytes, factor: float) -> bytes:
    """An honest guard with sigma multiplied by ``factor``: a privacy interval covering more."""
    model = autoencoder_from_bytes(honest)
    model.error_std_ *= factor
    return autoencoder_to_bytes(model)


def run_service_demo(
    *,
    work_dir: str | Path | None = None,
    data_dir=None,
    seed: int = 0,
    policy: str | None = None,
    alpha: float | None = None,
    replay: int = 1000,
    clients: int = 8,
    train_per_user: int = DEMO_TRAIN_PER_USER,
    epochs: int = DEMO_EPOCHS,
    progress: ProgressFactory | None = None,
) -> DemoResult:
    """Run the demo with the reproduction's default model (as a device trains it: against the
    public negative set), on fewer images and epochs.

    Every user trains twice (at the edge, and in-process by the reproduction's own
    :func:`evaluate_configuration`), so the sizes decide the run time: the defaults take a few
    minutes.
    """
    progress = resolve(progress)
    rng = np.random.default_rng(seed)
    config = configurations(quick=True)["default"].replace(
        epochs=epochs, batch_size=DEMO_BATCH_SIZE
    )
    sizes = dict(train_per_class=train_per_user, test_per_class=200, public_count=2000)
    # The same seeded subsets twice: raw pixels to write the users' PNG files, and the features
    # of the reproduction's default extractor for the in-process side.
    raw = mnist_experiment(data_dir=data_dir, seed=seed, feature_extractor="pixels", **sizes)
    data = mnist_experiment(
        data_dir=data_dir, seed=seed, feature_extractor=config.feature_extractor, **sizes
    )
    config = config.replace(input_dim=data.input_dim)
    if config.negative_weight > 0:  # the set every device trains against (train_guard's too)
        negatives = negative_features(feature_extractor=config.feature_extractor, data_dir=data_dir)
        data = dataclasses.replace(data, negatives_x=negatives)
    with tempfile.TemporaryDirectory(prefix="imgprivacy-demo-", dir=work_dir) as tmp:
        root = Path(tmp)
        folders = _write_user_folders(raw, root)
        env = {
            "IMGPRIVACY_DATABASE_URL": f"sqlite:///{root / 'service.db'}",
            "IMGPRIVACY_ADMIN_TOKEN": secrets.token_urlsafe(16),
            "IMGPRIVACY_FEATURE_EXTRACTOR": config.feature_extractor,
            "IMGPRIVACY_ACCESS_LOG": "false",
        }
        if policy:
            env["IMGPRIVACY_POLICY"] = policy
        if alpha is not None:
            env["IMGPRIVACY_ALPHA"] = str(alpha)
        if data_dir:
            env["IMGPRIVACY_DATA_DIR"] = str(data_dir)
        with start_server(log_path=root / "service.log", env=env) as server:
            ready = GuardClient(server.url).ready()
            tokens, guards = {}, {}
            step = progress("users: train on own images, register, upload", len(folders))
            for user, folder in folders.items():
                guards[user] = root / user / "guard.safetensors"
                train_guard(folder, out=guards[user], config=config, data_dir=data_dir)
                with GuardClient(server.url) as client:
                    tokens[user] = client.register(user)
                    client.upload("digit", guards[user])
                step(user)

            users = list(folders)
            test_rows = rng.permutation(len(data.test_y))[:replay]
            public_rows = rng.permutation(len(data.public_x))[:replay]
            uploads = [("mnist", int(r), users[rng.integers(len(users))]) for r in test_rows]
            uploads += [("fashion", int(r), users[rng.integers(len(users))]) for r in public_rows]
            step = progress("replay uploads through HTTP", len(uploads))
            pool_clients = {u: GuardClient(server.url, t) for u, t in tokens.items()}

            def one(upload):
                source, row, uploader = upload
                x = raw.test_x[row] if source == "mnist" else raw.public_x[row]
                result = pool_clients[uploader].check_image(png_bytes(x))
                step(source)
                return result.share

            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                http_share = list(pool.map(one, uploads))
            elapsed = time.perf_counter() - started
            for c in pool_clients.values():
                c.close()
            examples = _examples(server.url, tokens["u3"], tokens["u7"], guards["u3"].read_bytes())
        # The breadths the service measured at admission on its secret probe digits, read from
        # the demo's own database, so the in-process Guard applies the same breadth gate.
        storage = Storage(env["IMGPRIVACY_DATABASE_URL"])
        breadths = stored_breadths(storage, alpha=ready["alpha"])
        _, admitted = storage.model_revisions()  # when each model was stored (seniority)

        # In-process: the very files that were uploaded, the same (image, uploader) pairs.
        service_policy, service_alpha = ready["policy"], ready["alpha"]
        bank = FilterBank(input_dim=data.input_dim, feature_extractor=data.feature_extractor)
        models = {u: load_autoencoder(p) for u, p in guards.items()}
        for user, model in models.items():
            key = f"{user}/digit"
            bank.add_many([(user, model)], model_ids=[key], admitted=[admitted[key]])
        guard = Guard(
            policy=service_policy,
            alpha=service_alpha,
            margin=ready["margin"],
            breadth_ratio=ready["breadth_ratio"],
            breadth=breadths,
            seniority=ready["seniority"],
        )
        x = torch.stack(
            [(data.test_x if s == "mnist" else data.public_x)[r] for s, r, _ in uploads]
        )
        local = guard.decide(bank.score(x), [u for _, _, u in uploads])
        local_share = [d.share for d in local]

    step = progress("in-process reproduction (same data and config)", 1)
    reproduction = evaluate_configuration(
        data,
        config,
        settings=ProtocolSettings(
            alphas=(service_alpha,),
            policies=(service_policy,),
            margin=ready["margin"],
            breadth_ratio=ready["breadth_ratio"],
            adversary=False,
            seed=seed,
        ),
        label="in-process",
    )
    step("done")
    stat_diff = max(
        max(
            abs(s.mu - models[s.user].error_mean_),
            abs(s.sigma - models[s.user].error_std_),
        )
        for s in reproduction.error_statistics
    )
    point = reproduction.guard[service_policy][0]
    expected = {
        CATEGORIES[0]: ("share", point.owner_share_rate),
        CATEGORIES[1]: ("block", point.accuracy),
        CATEGORIES[2]: ("share", point.acceptance_rate),
    }

    def category_of(source: str, row: int, uploader: str) -> str:
        if source == "fashion":
            return CATEGORIES[2]
        return CATEGORIES[0] if user_name(int(data.test_y[row])) == uploader else CATEGORIES[1]

    labels = [category_of(*upload) for upload in uploads]
    rows = []
    for category in CATEGORIES:
        idx = [i for i, label in enumerate(labels) if label == category]
        action, protocol_rate = expected[category]
        want = action == "share"
        http_rate = float(np.mean([http_share[i] == want for i in idx])) if idx else float("nan")
        local_rate = float(np.mean([local_share[i] == want for i in idx])) if idx else float("nan")
        rows.append(
            {
                "uploads": category,
                "count": len(idx),
                "measure": f"{action} rate",
                "http": http_rate,
                "in_process_same_uploads": local_rate,
                "reproduction_protocol": protocol_rate,
            }
        )
    return DemoResult(
        rows=rows,
        disagreements=sum(a != b for a, b in zip(http_share, local_share)),
        checks=len(uploads),
        checks_per_second=len(uploads) / elapsed,
        max_stat_difference=stat_diff,
        examples=examples,
        policy=service_policy,
        alpha=service_alpha,
        reproduction={
            "overall_accuracy": reproduction.overall_accuracy,
            "guard_point": point.to_dict(),
        },
    )
