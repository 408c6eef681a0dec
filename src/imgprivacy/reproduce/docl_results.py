"""What the DOCL reproductions return: one frozen dataclass per trained configuration and per
experiment.

``results.json`` is ``dataclasses.asdict`` of these (:func:`imgprivacy.reports.results.write_results`),
so field names are its keys and field order is its key order. An experiment's main configuration
sits at the top level of its results (as it always has in results.json): the experiment classes
inherit the run's fields, and their header fields live in a separate base so that ``asdict`` puts
them first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.evaluate import GuardPoint


@dataclass(frozen=True)
class ErrorStatistics:
    """One user's reconstruction-error statistics on their own training images."""

    user: str
    mu: float
    sigma: float


@dataclass(frozen=True, kw_only=True)
class OperatingPoint(GuardPoint):
    """The Guard sweep point maximising min(blocked, shared), flagged if it meets the goal."""

    meets_goal: bool  # >= 95% of others' private images blocked and of non-sensitive ones shared


@dataclass(frozen=True, kw_only=True)
class DoclRun:
    """One configuration under the protocol of the paper's sec. 3 (user i protects class i)."""

    config: AutoencoderConfig  # input_dim set to the data's feature size
    overall_accuracy: float  # nearest-model accuracy on the private test images (Fig. 2)
    per_class_accuracy: list[float]
    per_class_auc: list[float]  # one-class ROC-AUC of each user's model (Deep SVDD protocol)
    mean_auc: float
    guard: dict[str, list[GuardPoint]]  # policy -> the alpha sweep (Fig. 3)
    scalability: dict[str, list[float | None]]  # number of users -> per-class accuracy (Fig. 5)
    error_statistics: list[ErrorStatistics]
    train_seconds_total: float
    train_seconds_per_user: float
    # The adversaries (Fig. 4); None when ProtocolSettings.adversary is off.
    adversary_alpha: float | None = None
    adversary_epochs: int | None = None
    adversary: dict[str, list[list[float]]] | None = None  # policy -> [adversary][victim] blocked
    adversary_min_blocked_off_diagonal: dict[str, float] | None = None
    # policy -> [adversary][victim]: the victim's own uploads of the same images shared while the
    # adversary's model is in the bank (the diagonal: owners with honest models only)
    adversary_victim_shared: dict[str, list[list[float]]] | None = None
    adversary_victim_min_shared_off_diagonal: dict[str, float] | None = None

    def worst_victim_shared(self, policy: str) -> float | None:
        """The smallest share of a victim's own uploads under attack (None if not measured)."""
        shared = self.adversary_victim_min_shared_off_diagonal
        return shared[policy] if shared else None


@dataclass(frozen=True, kw_only=True)
class FeatureRun(DoclRun):
    """A run of the feature-based reproductions, with its best Guard point per policy."""

    operating_points: dict[str, OperatingPoint]


def run_fields(run: DoclRun) -> dict:
    """``run``'s fields by name (not copied), to build an experiment result around it."""
    return {f.name: getattr(run, f.name) for f in dataclasses.fields(run)}


@dataclass(frozen=True)
class MnistData:
    """How many images the MNIST experiment used."""

    train_images: int
    test_images: int
    non_sensitive_images: int
    non_sensitive_source: str


@dataclass(frozen=True)
class FeatureData:
    """What the feature-based experiments used."""

    name: str
    feature_extractor: str
    feature_dim: int
    train_images: int
    test_images: int
    non_sensitive_images: int
    non_sensitive_source: str


@dataclass(frozen=True, kw_only=True)
class _MnistHeader:
    experiment: str
    quick: bool
    seed: int
    data: MnistData


@dataclass(frozen=True, kw_only=True)
class DoclMnistResult(DoclRun, _MnistHeader):
    """``reproduce docl-mnist``: imgprivacy's default model (top level) and the paper's."""

    paper_faithful: DoclRun
    paper: dict[str, float]  # the paper's numbers
    one_class_baselines_mean_auc: dict[str, float]
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class _Cifar10Header:
    experiment: str
    quick: bool
    seed: int
    variant: str  # "lossless" or "jpeg"
    comparable_with_paper: bool
    note: str
    data: FeatureData
    main_run: str  # the key in ``runs`` of the run at the top level


@dataclass(frozen=True, kw_only=True)
class DoclCifar10Result(FeatureRun, _Cifar10Header):
    """``reproduce docl-cifar10``: the main run at the top level, every run under ``runs``."""

    runs: dict[str, FeatureRun]
    paper: dict[str, float]
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class _FacesHeader:
    experiment: str
    quick: bool
    seed: int
    identities: dict[str, list[int]]  # role -> Extended Yale B identities
    face_extractor: str  # the extractor file the features came from
    data: FeatureData
    main_run: str


@dataclass(frozen=True, kw_only=True)
class DoclFacesResult(FeatureRun, _FacesHeader):
    """``reproduce docl-faces``: the main run at the top level, every run under ``runs``."""

    runs: dict[str, FeatureRun]
    paper: dict[str, float]
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0


FeatureResult = DoclCifar10Result | DoclFacesResult
