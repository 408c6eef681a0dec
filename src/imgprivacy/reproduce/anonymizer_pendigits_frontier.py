"""The warp-game anonymizer on pen-digits: its frontier, the configuration chosen on validation,
its ablation (lambda = 0) and the label-free baselines beside it.

For every lambda the warp game trains once (writer labels only); for every number of clusters
the warped training images are clustered (no label) and each image is released as its cluster's
medoid original. Since a released image is a function of the cluster index, the strongest
attacker's accuracy is the per-cluster majority vote learnt on the released training images
(:func:`~imgprivacy.anonymizer.evaluate.cluster_majority`); the frontier reports it on the
validation and the test split for every configuration. The configuration is chosen on the
validation split alone (lowest writer within the goal's writer level, then highest digit); only
then are the five attacker families, realism and the transfer utility measured on the test split.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from imgprivacy.anonymizer.evaluate import STRONG_FAMILIES, AttackConfig, assess, cluster_majority
from imgprivacy.anonymizer.release_quality import realism, transfer_accuracy
from imgprivacy.anonymizer.substitution.spectral_clusters import SpectralClusterSubstitution
from imgprivacy.anonymizer.warp_game import WarpGameConfig
from imgprivacy.anonymizer.warp_model import WarpAnonymizer
from imgprivacy.reports import anonymizer_frontier

logger = logging.getLogger(__name__)

PROTOTYPE_COUNTS = (10, 12, 15, 20, 30)
WARP_LAMBDAS = (0.0, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class FrontierSettings:
    """What the warp-game part of the reproduction trains and measures."""

    lambdas: tuple[float, ...] = WARP_LAMBDAS  # the warp game's lambdas (0 = the ablation)
    prototype_counts: tuple[int, ...] = PROTOTYPE_COUNTS  # numbers of released clusters
    warp: WarpGameConfig = WarpGameConfig()  # everything but lam and n_prototypes
    attack: AttackConfig = AttackConfig(families=STRONG_FAMILIES)  # on the selected release
    umap_baseline: bool = False  # also cluster UMAP(PCA-50 pixels) with a Gaussian mixture


def moment_deskew(images: np.ndarray) -> np.ndarray:
    """Shear each (S, S) image so that its ink's second moments have no x-y correlation (the
    classic hand-made deskew; a label-free reference for what the learnt warp can reach)."""
    out = np.empty(images.shape, dtype=np.float32)
    side = images.shape[1]
    ys, xs = np.mgrid[:side, :side]
    centre = np.array([side / 2 - 0.5, side / 2 - 0.5])
    for i, image in enumerate(images.astype(np.float32)):
        mass = image.sum()
        if mass <= 0:
            out[i] = image
            continue
        cx, cy = (xs * image).sum() / mass, (ys * image).sum() / mass
        vyy = ((ys - cy) ** 2 * image).sum() / mass
        alpha = ((xs - cx) * (ys - cy) * image).sum() / mass / max(vyy, 1e-6)
        affine = np.array([[1.0, 0.0], [alpha, 1.0]])
        offset = np.array([cy, cx]) - affine @ centre
        out[i] = ndimage.affine_transform(image, affine, offset=offset, order=1)
    return out


def _pixels(images: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(images.reshape(len(images), -1).astype(np.float32) / 255.0)


def _cluster_row(ids: np.ndarray, data, *, label: str, **extra) -> dict:
    train, val, test = (data.split == c for c in (0, 1, 2))
    row = {"label": label, **extra}
    for name, part in (("val", val), ("test", test)):
        for task in ("writer", "digit"):
            labels = getattr(data, task)
            guess = cluster_majority(ids[train], labels[train], ids[part])
            row[f"{name}_{task}"] = float((guess == labels[part]).mean())
    return row


def _distortion(released: np.ndarray, originals: np.ndarray) -> float:
    gap = np.abs(released.astype(np.float32) - originals.astype(np.float32)) / 255.0
    return float(gap.mean())


def cluster_series(
    transform: Callable[[torch.Tensor], torch.Tensor],
    data,
    *,
    label: str,
    counts: tuple[int, ...],
    seed: int,
    extra: dict | None = None,
) -> tuple[list[dict], dict[int, SpectralClusterSubstitution]]:
    """Frontier rows of one representation (``transform`` of the pixels) for every count."""
    x = _pixels(data.images)
    train = torch.as_tensor(data.split == 0)
    features = transform(x)
    rows, fitted = [], {}
    for k in counts:
        method = SpectralClusterSubstitution(n_prototypes=k, seed=seed)
        method.fit(x[train], None, autoencode=lambda images, f=features[train]: f)
        ids = method.assign(features).numpy()
        released = np.rint(method.prototypes_[ids].numpy() * 255).astype(np.uint8)
        row = _cluster_row(ids, data, label=label, n_prototypes=k, **(extra or {}))
        row["distortion"] = _distortion(released.reshape(data.images.shape), data.images)
        rows.append(row)
        fitted[k] = method
        logger.info("%s k=%d: %s", label, k, row)
    return rows, fitted


def umap_series(data, *, counts: tuple[int, ...], seed: int) -> list[dict]:
    """The issue's label-free baseline: UMAP(PCA-50 pixels -> 10) + a Gaussian mixture."""
    import umap
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    x = data.images.reshape(len(data.images), -1).astype(np.float32) / 255.0
    train = data.split == 0
    pcs = PCA(50, random_state=seed).fit(x[train]).transform(x)
    reducer = umap.UMAP(n_components=10, min_dist=0.0, random_state=seed).fit(pcs[train])
    embedding = np.empty((len(x), 10), dtype=np.float32)
    embedding[train] = reducer.embedding_
    embedding[~train] = reducer.transform(pcs[~train])
    rows = []
    for k in counts:
        mixture = GaussianMixture(k, n_init=2, random_state=seed).fit(embedding[train])
        rows.append(
            _cluster_row(
                mixture.predict(embedding), data, label="umap-gmm (pixels)", n_prototypes=k
            )
        )
    return rows


def select(rows: list[dict], *, writer_at_most: float, n_validation: int) -> dict:
    """The row with the highest validation digit among those whose validation writer, plus two
    standard errors of a proportion over ``n_validation`` images, is within the writer level
    (ties: the lower validation writer); if none is, the lowest validation writer.

    The margin covers the vote's sampling noise: without it the rule took the configuration at
    the edge (k = 30, validation 6.2%) where an attacker that early-stops on the validation
    images read 7.6% of test writers (``docs/anonymizer.md``).
    """

    def upper(row: dict) -> float:
        p = row["val_writer"]
        return p + 2 * (p * (1 - p) / max(n_validation, 1)) ** 0.5

    within = [r for r in rows if upper(r) <= writer_at_most]
    if within:
        return max(within, key=lambda r: (r["val_digit"], -r["val_writer"]))
    return min(rows, key=lambda r: (r["val_writer"], -r["val_digit"]))


@dataclass
class FrontierRun:
    """What :func:`run_frontier` measured, and the released images to save."""

    frontier: list[dict]
    selected: dict
    released: dict[str, np.ndarray]  # file stem -> uint8 (N, S, S)
    models: dict[str, WarpAnonymizer]  # file stem -> model (selected and its ablation)


def run_frontier(
    data, *, settings: FrontierSettings, goal_writer: float, seed: int, device: str = "cpu"
) -> FrontierRun:
    """Train the warp game per lambda, cluster per count, select on validation, then measure."""
    train = data.split == 0
    rows: list[dict] = []
    models: dict[float, WarpAnonymizer] = {}
    fitted: dict[tuple[float, int], SpectralClusterSubstitution] = {}
    for lam in settings.lambdas:
        started = time.perf_counter()
        config = settings.warp.replace(lam=lam, seed=seed)
        model = WarpAnonymizer(config, device=device).fit(data.images[train], data.writer[train])
        models[lam] = model
        label = "warp-game lambda=0" if lam == 0 else f"warp-game (lambda={lam:g})"
        series, methods = cluster_series(
            model._warp,
            data,
            label=label,
            counts=settings.prototype_counts,
            seed=seed,
            extra={"method": "warp-game", "lambda": lam},
        )
        for row in series:
            row["train_seconds"] = time.perf_counter() - started
        rows += series
        fitted.update({(lam, k): m for k, m in methods.items()})
    deskew_rows, _ = cluster_series(
        lambda x: torch.as_tensor(moment_deskew(x.view(-1, 20, 20).numpy()).reshape(len(x), -1)),
        data,
        label="moment deskew (hand-made)",
        counts=settings.prototype_counts,
        seed=seed,
        extra={"method": "deskew"},
    )
    rows += deskew_rows
    if settings.umap_baseline:
        rows += umap_series(data, counts=settings.prototype_counts, seed=seed)

    chosen = select(
        [r for r in rows if r.get("method") == "warp-game"],
        writer_at_most=goal_writer,
        n_validation=int((data.split == 1).sum()),
    )
    lam, k = chosen["lambda"], chosen["n_prototypes"]
    ablation = next(
        (
            r
            for r in rows
            if r.get("method") == "warp-game" and r["lambda"] == 0 and r["n_prototypes"] == k
        ),
        None,
    )
    released, saved_models = {}, {}
    selected = {"lambda": lam, "n_prototypes": k, "validation": {}, "test": {}}
    for name, row_lam in (("selected", lam), ("ablation", 0.0)):
        if (row_lam, k) not in fitted:
            continue
        model = models[row_lam]
        model.substitution_ = fitted[(row_lam, k)]
        model.config = model.config.replace(n_prototypes=k)
        stem = f"warp_lambda_{row_lam:g}_k{k}"
        images = model.transform(data.images)
        released[stem] = images
        saved_models[stem] = model
        if name == "selected":
            assessment = assess(
                images,
                writer=data.writer,
                digit=data.digit,
                split=data.split,
                config=settings.attack,
                device=device,
            )
            selected["release"] = stem
            selected["validation"] = {"writer": chosen["val_writer"], "digit": chosen["val_digit"]}
            selected["test"] = {
                **assessment.to_dict(),
                "cluster_majority_writer": chosen["test_writer"],
                "cluster_majority_digit": chosen["test_digit"],
            }
            # the headline: the strongest of the five families and the cluster-majority vote
            selected["test"]["writer"] = max(assessment.writer.best, chosen["test_writer"])
            selected["test"]["digit"] = assessment.digit.best
            selected["distortion"] = chosen["distortion"]
            selected["realism"] = realism(
                data.images, images, split=data.split, config=_light(settings.attack), seed=seed
            ).per_family
            selected["transfer_digit_accuracy"] = transfer_accuracy(
                data.images,
                images,
                labels=data.digit,
                split=data.split,
                config=_light(settings.attack),
            ).per_family
    selected["ablation_lambda_0"] = ablation
    return FrontierRun(frontier=rows, selected=selected, released=released, models=saved_models)


def paper_rows(sweep: list[dict]) -> list[dict]:
    """Frontier rows of the paper's pipeline (test split only: its attackers see no validation
    score): the released prototypes and the autoencoder's own outputs, per lambda."""
    rows = []
    for row in sweep:
        rows.append(
            {
                "label": "paper autoencoder + k-means prototypes",
                "method": "paper",
                "lambda": row["lambda"],
                "test_writer": row["writer_accuracy"],
                "test_digit": row["digit_accuracy"],
                "distortion": row["distortion"],
            }
        )
        if row["autoencoder_only"] is not None:
            rows.append(
                {
                    "label": "paper autoencoder outputs",
                    "method": "paper-outputs",
                    "lambda": row["lambda"],
                    "test_writer": row["autoencoder_only"]["writer_accuracy"],
                    "test_digit": row["autoencoder_only"]["digit_accuracy"],
                }
            )
    return rows


def _light(attack: AttackConfig) -> AttackConfig:
    """The CNN and the forest among ``attack``'s families (realism and transfer need no more)."""
    import dataclasses

    families = tuple(f for f in attack.families if f in ("cnn", "random_forest"))
    return dataclasses.replace(attack, families=families or attack.families[:1])


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def selected_rows(chosen: dict) -> list[tuple[str, ...]]:
    """Printed-table rows of the selected warp-game release and of its lambda = 0 ablation."""
    test = chosen["test"]
    rows = [
        (
            f"warp game lambda={chosen['lambda']:g}, k={chosen['n_prototypes']} (selected)",
            _pct(test["writer"]),
            " / ".join(_pct(v) for v in test["writer_accuracy_by_family"].values())
            + f" / clusters {_pct(test['cluster_majority_writer'])}",
            _pct(test["digit"]),
            " / ".join(_pct(v) for v in test["digit_accuracy_by_family"].values()),
            f"{chosen['distortion']:.3f}",
        )
    ]
    ablation = chosen["ablation_lambda_0"]
    if ablation is not None:
        rows.append(
            (
                f"same, lambda=0 (ablation), k={ablation['n_prototypes']}",
                _pct(ablation["test_writer"]),
                "clusters",
                _pct(ablation["test_digit"]),
                "clusters",
                f"{ablation['distortion']:.3f}",
            )
        )
    return rows


def frontier_figure(path, results, *, goal_writer: float, goal_digit: float):
    """The frontier PNG of a pen-digits result (every row with test figures)."""
    return anonymizer_frontier.frontier(
        path,
        rows=[r for r in results.frontier if r.get("test_writer") is not None],
        chance_writer=results.chance_writer_accuracy,
        chance_digit=results.chance_digit_accuracy,
        goal_writer=goal_writer,
        goal_digit=goal_digit,
        selected={
            "test_writer": results.selected["test"]["writer"],
            "test_digit": results.selected["test"]["digit"],
        },
    )
