"""The paper's assessment protocol: fresh attackers trained on processed images.

Given images (original or anonymized) with the experiment split, each attacker family is trained
from scratch on the training images, for one label (the writer, to measure what leaked; the digit,
to measure what was kept), and its accuracy on the test images is reported. Families come from the
:data:`ATTACKERS` registry: a CNN (selected on the validation images by early stopping) and a random
forest on the raw pixels by default. The headline numbers are the maxima over families: the
strongest attacker for the private label and the best classifier a user gets for the utility label.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from torch import nn
from torch.nn import functional as F

from imgprivacy.errors import InvalidInputError, UnknownNameError
from imgprivacy.progress import ProgressFactory, resolve

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttackConfig:
    """Strength and cost of the assessment attackers."""

    families: tuple[str, ...] = ("cnn", "random_forest")  # names in ATTACKERS
    cnn_channels: int = 16  # channels of the CNN's first block (the second has twice as many)
    cnn_epochs: int = 8  # CNN training epochs; the epoch with the best validation accuracy is kept
    cnn_lr: float = 2e-3  # Adam learning rate of the CNN
    cnn_batch_size: int = 128  # CNN minibatch size
    trees: int = 200  # trees of the random forest / extra-trees
    n_jobs: int = 2  # scikit-learn worker processes (the machines have 2 cores)
    seed: int = 0  # seeds every attacker

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in ATTACKERS]
        if unknown or not self.families:
            raise UnknownNameError(
                f"Unknown attacker families {unknown or '(none given)'}; "
                f"valid names: {sorted(ATTACKERS)}."
            )
        for name in ("cnn_channels", "cnn_epochs", "cnn_batch_size", "trees", "n_jobs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(
                    f"AttackConfig.{name} must be a positive integer, got {value!r}."
                )


@dataclass(frozen=True)
class Split:
    """Pixels in [0, 1] of shape (N, D) and one label per image, for the three parts."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def _cnn(channels: int, classes: int) -> nn.Sequential:
    # One convolution per resolution: a second c -> c convolution at 20x20 would more than
    # double the multiply-adds per image, and CNN epochs already dominate the sweep's time on
    # the shared 2-core machines.
    c = channels
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c, 2 * c, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.LazyLinear(256),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(256, classes),
    )


def cnn_attacker(data: Split, *, config: AttackConfig, device: str = "cpu") -> np.ndarray:
    """Train a small CNN; keep the weights of the epoch with the best validation accuracy."""
    side = int(round(data.train_x.shape[1] ** 0.5))
    classes = int(max(data.train_y.max(), data.val_y.max(), data.test_y.max())) + 1

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32).view(-1, 1, side, side).to(device)

    train_x, val_x, test_x = tensor(data.train_x), tensor(data.val_x), tensor(data.test_x)
    train_y = torch.as_tensor(data.train_y, dtype=torch.long, device=device)
    val_y = torch.as_tensor(data.val_y, dtype=torch.long, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = _cnn(config.cnn_channels, classes).to(device)
        net(train_x[:2])  # materialise the lazy layer
        optimizer = torch.optim.Adam(net.parameters(), lr=config.cnn_lr, weight_decay=1e-4)
        generator = torch.Generator().manual_seed(config.seed)
        best_accuracy, best_state = -1.0, None
        for _ in range(config.cnn_epochs):
            net.train()
            order = torch.randperm(len(train_x), generator=generator).to(device)
            for start in range(0, len(order), config.cnn_batch_size):
                index = order[start : start + config.cnn_batch_size]
                loss = F.cross_entropy(net(train_x[index]), train_y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            net.eval()
            with torch.inference_mode():
                accuracy = (net(val_x).argmax(1) == val_y).float().mean().item()
            if accuracy > best_accuracy:
                best_accuracy = accuracy
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
        net.load_state_dict(best_state)
        net.eval()
        with torch.inference_mode():
            return net(test_x).argmax(1).cpu().numpy()


def standardized_cnn_attacker(
    data: Split, *, config: AttackConfig, device: str = "cpu"
) -> np.ndarray:
    """The CNN on per-pixel standardised inputs (training mean and standard deviation per pixel):
    low-contrast or dimmed outputs then train it as fast as the originals do."""
    mean = data.train_x.mean(axis=0)
    std = data.train_x.std(axis=0) + 1e-3

    def scaled(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    standardized = Split(
        scaled(data.train_x),
        data.train_y,
        scaled(data.val_x),
        data.val_y,
        scaled(data.test_x),
        data.test_y,
    )
    return cnn_attacker(standardized, config=config, device=device)


def knn_attacker(data: Split, *, config: AttackConfig, device: str = "cpu") -> np.ndarray:
    """k-nearest neighbours on the raw pixels, k in (1, 3, 5, 10) chosen on the validation
    images, then fitted on train + validation."""
    from sklearn.neighbors import KNeighborsClassifier

    def fitted(k: int, x: np.ndarray, y: np.ndarray) -> KNeighborsClassifier:
        return KNeighborsClassifier(n_neighbors=min(k, len(x)), n_jobs=config.n_jobs).fit(x, y)

    scores = {
        k: (fitted(k, data.train_x, data.train_y).predict(data.val_x) == data.val_y).mean()
        for k in (1, 3, 5, 10)
    }
    best = max(scores, key=lambda k: (scores[k], -k))
    both_x = np.concatenate([data.train_x, data.val_x])
    return fitted(best, both_x, np.concatenate([data.train_y, data.val_y])).predict(data.test_x)


def forest_attacker(data: Split, *, config: AttackConfig, device: str = "cpu") -> np.ndarray:
    """A random forest on the raw pixels (trains on train + validation: it needs no selection)."""
    forest = RandomForestClassifier(
        n_estimators=config.trees, n_jobs=config.n_jobs, random_state=config.seed
    )
    forest.fit(
        np.concatenate([data.train_x, data.val_x]), np.concatenate([data.train_y, data.val_y])
    )
    return forest.predict(data.test_x)


def extra_trees_attacker(data: Split, *, config: AttackConfig, device: str = "cpu") -> np.ndarray:
    """Extremely randomised trees on the raw pixels (train + validation)."""
    forest = ExtraTreesClassifier(
        n_estimators=config.trees, n_jobs=config.n_jobs, random_state=config.seed
    )
    forest.fit(
        np.concatenate([data.train_x, data.val_x]), np.concatenate([data.train_y, data.val_y])
    )
    return forest.predict(data.test_x)


Attacker = Callable[..., np.ndarray]
ATTACKERS: dict[str, Attacker] = {
    "cnn": cnn_attacker,
    "random_forest": forest_attacker,
    "extra_trees": extra_trees_attacker,
    "cnn_standardized": standardized_cnn_attacker,
    "knn": knn_attacker,
}
STRONG_FAMILIES = ("cnn", "cnn_standardized", "random_forest", "extra_trees", "knn")


def cluster_majority(
    train_ids: np.ndarray, train_labels: np.ndarray, eval_ids: np.ndarray
) -> np.ndarray:
    """The Bayes attacker on released cluster ids: each cluster's majority training label.

    When the released image is a function of a cluster index, no attacker that learns from the
    released training images can do better (up to sampling noise) than this vote.

    Examples
    --------
    >>> cluster_majority(np.array([0, 0, 0, 1]), np.array([5, 5, 6, 7]), np.array([1, 0])).tolist()
    [7, 5]
    """
    train_ids, train_labels = np.asarray(train_ids), np.asarray(train_labels)
    n_ids = int(max(train_ids.max(), np.max(eval_ids))) + 1
    table = np.zeros((n_ids, int(train_labels.max()) + 1))
    np.add.at(table, (train_ids, train_labels), 1)
    return table.argmax(axis=1)[np.asarray(eval_ids)]


@dataclass(frozen=True)
class TaskResult:
    """Test accuracy of each attacker family on one label; ``best`` is their maximum."""

    per_family: dict[str, float] = field(default_factory=dict)

    @property
    def best(self) -> float:
        return max(self.per_family.values())


def task_summary(results: dict[str, TaskResult]) -> dict:
    """``{<task>_accuracy: best, <task>_accuracy_by_family: {...}}`` for every task, in order."""
    summary: dict = {}
    for task, result in results.items():
        summary[f"{task}_accuracy"] = result.best
    for task, result in results.items():
        summary[f"{task}_accuracy_by_family"] = dict(result.per_family)
    return summary


@dataclass(frozen=True)
class Assessment:
    """What fresh attackers recover from a set of pen-digit images."""

    writer: TaskResult
    digit: TaskResult

    def to_dict(self) -> dict:
        return task_summary({"writer": self.writer, "digit": self.digit})


def _as_pixels(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3:
        raise InvalidInputError(
            f"Expected images of shape (N, H, W), got {images.shape}. Stack grey images first."
        )
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return (images.reshape(len(images), -1) / scale).astype(np.float32)


def make_split(images: np.ndarray, labels: np.ndarray, split: np.ndarray) -> Split:
    """Cut images and labels into the train (0) / validation (1) / test (2) parts."""
    x = _as_pixels(images)
    labels, split = np.asarray(labels), np.asarray(split)
    if not (len(x) == len(labels) == len(split)):
        raise InvalidInputError(
            f"Expected as many labels and split codes as images ({len(x)}), got "
            f"{len(labels)} labels and {len(split)} split codes."
        )
    parts = [split == code for code in (0, 1, 2)]
    empty = [name for name, m in zip(("train", "validation", "test"), parts) if not m.any()]
    if empty:
        raise InvalidInputError(f"Expected images in every split part, got none in {empty}.")
    return Split(*(a for m in parts for a in (x[m], labels[m])))


def assess_tasks(
    images: np.ndarray,
    *,
    labels: dict[str, np.ndarray],
    split: np.ndarray,
    config: AttackConfig | None = None,
    device: str = "cpu",
    progress: ProgressFactory | None = None,
    description: str = "attackers",
) -> dict[str, TaskResult]:
    """Train every attacker family on every label and report the test accuracies.

    Parameters
    ----------
    images
        (N, H, W) uint8 in [0, 255] or float in [0, 1].
    labels
        Task name -> (N,) integer labels, e.g. ``{"identity": ..., "expression": ...}``.
    split
        (N,) codes 0 / 1 / 2 = train / validation / test.
    """
    config = config or AttackConfig()
    advance = resolve(progress)(description, len(labels) * len(config.families))
    results: dict[str, TaskResult] = {}
    for task, values in labels.items():
        data = make_split(images, values, split)
        per_family: dict[str, float] = {}
        for family in config.families:
            predicted = ATTACKERS[family](data, config=config, device=device)
            per_family[family] = float((predicted == data.test_y).mean())
            logger.info("%s attacker on %s: %.3f", family, task, per_family[family])
            advance(f"{task}/{family} {per_family[family]:.3f}")
        results[task] = TaskResult(per_family)
    return results


def assess(
    images: np.ndarray,
    *,
    writer: np.ndarray,
    digit: np.ndarray,
    split: np.ndarray,
    config: AttackConfig | None = None,
    device: str = "cpu",
    progress: ProgressFactory | None = None,
    description: str = "attackers",
) -> Assessment:
    """:func:`assess_tasks` for pen-digits: the writer (private) and the digit (kept)."""
    results = assess_tasks(
        images,
        labels={"writer": writer, "digit": digit},
        split=split,
        config=config,
        device=device,
        progress=progress,
        description=description,
    )
    return Assessment(writer=results["writer"], digit=results["digit"])
