"""What the anonymizer reproductions return: frozen dataclasses whose ``dataclasses.asdict`` is
``results.json`` (field names are its keys, field order its key order).

Two parts stay mappings, with their keys documented here:

* a pen-digits sweep row and the best lambda carry the key ``"lambda"``, a Python keyword that
  no dataclass field can be named, so they are :class:`SweepRow` and :class:`BestLambda` typed
  dicts;
* a faces row is keyed by the data's own label names (``identity_accuracy``, or
  ``person_accuracy`` for a manifest whose private column is ``person``), so it is a
  :data:`FacesRow` ``dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from imgprivacy.anonymizer.code_match_trainer import CodeMatchConfig
from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.swap_config import SwapConfig


@dataclass(frozen=True, kw_only=True)
class PendigitsAccuracy:
    """What fresh attackers recover from a set of pen-digit images (test accuracy)."""

    writer_accuracy: float  # the strongest family's (the headline)
    digit_accuracy: float  # the best family's
    writer_accuracy_by_family: dict[str, float]
    digit_accuracy_by_family: dict[str, float]


@dataclass(frozen=True, kw_only=True)
class PendigitsBaseline(PendigitsAccuracy):
    """The attackers on the original images."""

    seconds: float  # assessment time


class AssessmentDict(TypedDict):
    """``Assessment.to_dict()``: :class:`PendigitsAccuracy`'s fields as a dict."""

    writer_accuracy: float
    digit_accuracy: float
    writer_accuracy_by_family: dict[str, float]
    digit_accuracy_by_family: dict[str, float]


SweepRow = TypedDict(
    "SweepRow",
    {
        "lambda": float,
        "writer_accuracy": float,
        "digit_accuracy": float,
        "writer_accuracy_by_family": dict[str, float],
        "digit_accuracy_by_family": dict[str, float],
        "distortion": float,  # mean |released - original| per pixel, in [0, 1]
        "rmse": float,
        "output_spread": float,  # 0 = one image for every input (collapse)
        "autoencoder_only": AssessmentDict | None,  # a forest before the substitution
        "train_seconds": float,
        "assess_seconds": float,
    },
)

BestLambda = TypedDict(
    "BestLambda",
    {
        "lambda": float,
        "writer_accuracy": float,
        "digit_accuracy": float,
        "keeps_digit": bool,
        "meets_goal": bool,
    },
)


@dataclass(frozen=True)
class PendigitsData:
    writers: int
    train_images: int
    validation_images: int
    test_images: int
    image_size: int


@dataclass(frozen=True)
class PendigitsAttack:
    """The assessment attackers' strength."""

    families: list[str]
    cnn_epochs: int
    cnn_channels: int
    trees: int


@dataclass(frozen=True, kw_only=True)
class PendigitsResult:
    """``reproduce anonymizer-pendigits``: the lambda sweep beside the originals (paper Fig. 2)."""

    experiment: str
    quick: bool
    seed: int
    data: PendigitsData
    baseline: PendigitsBaseline
    chance_writer_accuracy: float
    original_spread: float  # the originals' output_spread
    chance_digit_accuracy: float
    sweep: list[SweepRow]  # one row per lambda, in sweep order
    best: BestLambda
    goals: dict[str, float]
    config: AnonymizerConfig  # every run's, but lam
    attack: PendigitsAttack
    shared_pretraining: bool
    history: dict[str, list[dict[str, Any]]]  # lambda tag -> the training's per-epoch records
    # the warp game's configuration chosen on validation: lambda, n_prototypes, validation and
    # test figures (five attacker families and the cluster-majority vote), distortion, realism,
    # transfer utility, its lambda = 0 ablation, meets_goal
    selected: dict[str, Any] = field(default_factory=dict)
    # every configuration's writer / digit (cluster majority on val and test; the paper's rows
    # on test only) and distortion, with its label in the frontier figure
    frontier: list[dict[str, Any]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0


FacesRow = dict[str, Any]
"""One released set (or the originals): ``<label>_accuracy`` and ``<label>_accuracy_by_family``
for the private and the utility label, ``assess_seconds``, ``output_spread``; the runs add
``target_identity``, ``distortion``, ``train_seconds`` (trained runs) and ``paper`` (intertwined:
the paper's Table 1 entry, or None)."""


@dataclass(frozen=True)
class FacesData:
    source: str
    images: int
    train_images: int
    validation_images: int
    test_images: int
    private_label: str
    utility_label: str
    private_classes: list[str]
    utility_classes: list[str]
    image_size: int


@dataclass(frozen=True)
class FacesGoal:
    """The goal beyond the paper, in absolute terms for this data."""

    identity_accuracy_at_most: float
    expression_accuracy_at_least: float


@dataclass(frozen=True)
class FacesAttack:
    families: list[str]
    cnn_epochs: int
    trees: int


@dataclass(frozen=True, kw_only=True)
class FacesResult:
    """``reproduce anonymizer-faces``: the standard and the intertwined method (paper Table 1)."""

    experiment: str
    quick: bool
    seed: int
    data: FacesData
    baseline: FacesRow  # the originals, plus ``spread``
    chance: dict[str, float]  # <label>_accuracy -> the test share of the most frequent label
    standard_no_substitution: FacesRow
    standard: list[FacesRow]  # the standard method's outputs substituted, one per target
    intertwined: list[FacesRow]  # one per target (the paper's Table 1)
    code_match: list[FacesRow]  # the target's image nearest in an identity-free code, per target
    swap: list[FacesRow]  # the identity-swap anonymizer's decoder(z, target), one per target
    swap_code_nearest: list[FacesRow]  # the target's training image nearest in z, per target
    expression_transfer: dict[str, Any]  # expression on identities held out of training
    paper_table1: dict[str, dict[str, float]]  # target -> the paper's accuracies
    paper_chance: dict[str, float] | None  # FERG's chance (None on a manifest)
    goal: FacesGoal
    targets_meeting_goal: list[int]  # the intertwined method's
    goal_met_by: dict[str, list[int]]  # method -> targets meeting the goal
    paper_bar_met_by: dict[str, list[int]]  # method -> targets at least as good as Table 1
    config: AnonymizerConfig
    code_match_config: CodeMatchConfig
    swap_config: SwapConfig
    attack: FacesAttack
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def private_key(self) -> str:
        """The rows' key of the private label's accuracy, e.g. ``identity_accuracy``."""
        return f"{self.data.private_label}_accuracy"

    @property
    def utility_key(self) -> str:
        return f"{self.data.utility_label}_accuracy"
