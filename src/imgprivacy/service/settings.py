"""Service configuration: environment variables ``IMGPRIVACY_*`` (or a ``.env`` file).

Read by :func:`imgprivacy.service.create_app` when an app is built, never at import time, so tests
and several workers can each build their own app. ``imgprivacy serve`` maps its flags onto these.
A bad value in the environment is refused by :func:`load_settings` with one line naming the
variable, what it expects and what it got. An optional setting is unset with the value ``none``
(``IMGPRIVACY_BREADTH_RATIO=none`` turns the breadth gate off).
"""

from __future__ import annotations

import math
import os
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from imgprivacy.docl.claims import POLICIES
from imgprivacy.docl.defaults import DEFAULT_FEATURE_EXTRACTOR
from imgprivacy.docl.guard import ALPHA_RANGE
from imgprivacy.errors import InvalidInputError


class ServiceSettings(BaseSettings):
    """Everything an operator can set (environment variable = ``IMGPRIVACY_`` + field name)."""

    model_config = SettingsConfigDict(
        env_prefix="IMGPRIVACY_", env_file=None, extra="ignore", env_parse_none_str="none"
    )

    # Storage: SQLite file by default (zero set-up); PostgreSQL with postgresql+psycopg://...
    database_url: str = "sqlite:///imgprivacy-service.db"
    # Admin token (lists users and models' metadata, removes abusive models); unset = no admin.
    admin_token: SecretStr | None = None
    # Anyone may register when true; when false only the admin token can create users.
    open_registration: bool = True
    # Features every model must be trained on (a name in imgprivacy.features.FEATURES); by
    # default the library's, which `imgprivacy guard train` uses too.
    feature_extractor: str = DEFAULT_FEATURE_EXTRACTOR
    # Guard policy (a name in imgprivacy.docl.POLICIES, checked below with alpha and margin), alpha,
    # margin and breadth gate. The defaults are the operating point chosen on a validation split
    # of MNIST for the default model as `imgprivacy guard train` trains it, against the public
    # negative set (docs/results.md, "Outlier exposure"): policy "margin", alpha 2.7, margin 1.0,
    # breadth_ratio 2.0. There the paper's adversary (a user who trains on their own digit plus
    # a victim's) had its worst pair blocked 96.0% (97.5% fully trained) while owners shared
    # 95.35% of their own images and 99.82% of Fashion-MNIST was shared. Models trained without
    # the negative set were best at 2.1 / 1.0 / 1.5 (worst pair 93.0%).
    policy: str = "margin"
    alpha: float = 2.7
    # How many times closer the uploader's own model must be to vouch for an image (policies
    # that use a margin); none = the Guard's default (1.5).
    margin: float | None = 1.0
    # The breadth gate: an uploader's model may vouch only when it claims at most this many
    # times the share of the probe digits that the narrowest claimant claims (each model's
    # breadth, measured at admission: imgprivacy.service.breadth); none = gate off. Needs the
    # probe set (probe_count > 0): a model of unknown breadth never vouches.
    breadth_ratio: float | None = Field(default=2.0, ge=1.0)
    # Seniority: an uploader's model admitted (stored) before a claiming model vouches against it
    # whenever its own interval holds the image (imgprivacy.docl.guard). A user who replaces
    # their model by one trained on a victim's images too then cannot deny the victim their own
    # uploads (docs/service.md). Only policies whose own models vouch ("margin", "paper") use it.
    seniority: bool = True
    # Upload limits: a model file, and an image sent to /v1/check.
    max_upload_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_image_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=4096 * 4096, gt=0)  # decompression-bomb guard
    max_hidden_dim: int = Field(default=256, gt=0)  # M; must also stay below D (paper: M < D)
    max_models_per_user: int = Field(default=16, gt=0)
    # Probe check against hostile models (see imgprivacy.service.probe).
    probe_count: int = Field(default=500, ge=0)  # digits and clothes each; 0 = no probe check
    # Interval width used to probe; admission uses max(probe_alpha, alpha), so it is the
    # Guard's default alpha: the probe checks what the Guard will let a model claim.
    probe_alpha: float = 2.7
    # Refuse a model that claims more than this fraction of ANY one probe source. Honest MNIST
    # guards as `guard train` makes them (with the public negative set) claim up to 49.6% of the
    # digit probes at 2.7 (a digit-8 guard; 30 secret draws, docs/service.md): every one was
    # admitted, with little to spare; without the negative set up to 53.0% (6% refused). Hostile
    # ones measured claim 98-100%.
    probe_max_claim: float = Field(default=0.5, ge=0.0, le=1.0)
    # Which probe images are drawn; unset = a random secret created once per database and kept
    # in it, so uploaders cannot tune a model against the exact probes.
    probe_seed: int | None = None
    # Admission of uploaded models (see imgprivacy.service.validation): cost, read from the
    # model's config before it runs, bounds what every check pays for it.
    max_model_layers: int = Field(default=8, ge=2)  # linear layers (the default guard has 4)
    # Widest hidden layer: the bank zero-pads models of the same depth to the widest one, so a
    # single wide model would slow down every check.
    max_layer_width: int = Field(default=512, ge=1)
    # Multiply-adds per image and model (the default 784-256-32-256-784 guard: 417,792).
    max_model_flops: int = Field(default=1_000_000, gt=0)
    # Refuse mu + alpha*sigma, or sigma, more than this many times below what the model's own
    # distances to the probe images show (statistics that claim nothing: a "shadow" model).
    statistics_gap: float = Field(default=20.0, gt=1.0)
    data_dir: str | None = None  # where the public probe images live (default: shared data)
    # Micro-batching of /v1/check: up to this many requests share one bank pass.
    batch_max_size: int = Field(default=64, ge=1)  # 1 disables batching
    batch_max_wait_ms: float = Field(default=0.0, ge=0.0)  # extra wait to fill a batch
    # The scorer thread collects the next batch as a pass ends (false: the event loop does).
    batch_overlap: bool = True
    # How the bank stores users' weights: "fp32", or "fp16"/"bf16" for half the memory and bytes
    # read per check (scores accumulate in fp32; see imgprivacy.docl.bank_precision.PRECISIONS).
    bank_precision: str = "fp32"
    # Torch threads of the bank pass; by default one per core. Measured on an idle 2-core machine
    # at N = 100 and 32 clients (benchmarks/bench_service.py --torch-threads 1 2): 2 threads answer
    # 408 checks/s against 271 with 1 (the event loop runs while the pass releases the GIL). On a
    # host shared with other work, fewer threads avoid oversubscription.
    torch_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    # How often a replica polls storage for models changed by other workers/replicas.
    sync_interval_seconds: float = Field(default=1.0, gt=0)
    # Log one JSON line per request (structured access log).
    access_log: bool = True
    # Request bodies, counted while they stream (see imgprivacy.service.limits): uploads are
    # capped at max_upload_bytes, checks at max_image_bytes + max_form_overhead_bytes, every
    # other endpoint (small JSON bodies) at max_body_bytes; past the cap: 413 at once.
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    max_form_overhead_bytes: int = Field(default=16 * 1024, ge=0)  # multipart framing of a check
    max_json_depth: int = Field(default=32, ge=1)  # arrays/objects nested deeper: 422
    # A request body that sends nothing for this long before its end is refused (408), so a
    # client cannot hold a request open with a partial body; 0 = wait forever.
    body_idle_timeout_seconds: float = Field(default=30.0, ge=0)
    # Rate limits per client, a token bucket in each worker's memory (see .ratelimit); 0 disables.
    # Registrations count per IP address (bursts of a minute's worth), checks per user (bursts of
    # a second's worth); over the rate: 429 with Retry-After.
    rate_limit_register_per_minute: float = Field(default=10.0, ge=0)
    rate_limit_check_per_second: float = Field(default=100.0, ge=0)
    # Caps on the whole service, 0 = none: users (pending registrations included) and stored
    # models (every model sits in each worker's memory: ~0.2 MB for 784-32-784, 1.6 MB at M=256).
    max_users: int = Field(default=10_000, ge=0)
    max_models: int = Field(default=2_000, ge=0)
    # When true, a new user's token works only after the admin approves the registration
    # (POST /v1/admin/registrations/{name}/approve); until then requests get 403.
    approve_registrations: bool = False
    # When true, an upload refused for its behaviour (non-finite distances, statistics, probe
    # claims) is kept in quarantine (202) for the admin to approve or reject, never used by checks.
    quarantine_refused: bool = False
    # Where the bank lives: "memory" (every model in this process) or "ray" (shard actors on a
    # Ray cluster, each loading its share of the models from the database; see docs/service.md).
    bank: Literal["memory", "ray"] = "memory"
    ray_address: str | None = None  # a Ray cluster to join; unset = start a local one (2 CPUs)
    ray_shards: int = Field(default=2, ge=1)  # shard actors of the bank
    ray_shard_cpus: float = Field(default=1.0, ge=0)  # CPUs Ray reserves for each shard
    # A check waits this long for every shard; past it the service answers 503 (Retry-After).
    ray_check_timeout_seconds: float = Field(default=5.0, gt=0)

    # -- the Guard's and the probe check's rules, applied here so that a bad value is refused
    # with the others, naming its variable, before any worker starts (the Guard checks them too)
    @field_validator("policy")
    @classmethod
    def _known_policy(cls, policy: str) -> str:
        if policy not in POLICIES:
            raise PydanticCustomError(
                "guard_policy", "Input should be one of {valid}", {"valid": ", ".join(POLICIES)}
            )
        return policy

    @field_validator("alpha")
    @classmethod
    def _alpha_in_range(cls, alpha: float) -> float:
        low, high = ALPHA_RANGE
        if not low <= alpha <= high:
            raise PydanticCustomError(
                "alpha_range",
                "Input should be in [{low}, {high}] standard deviations (the paper uses [1, 2])",
                {"low": low, "high": high},
            )
        return alpha

    @field_validator("margin")
    @classmethod
    def _margin_at_least_one(cls, margin: float | None) -> float | None:
        if margin is not None and not margin >= 1:
            raise PydanticCustomError(
                "margin_range", "Input should be at least 1, or none for the Guard's default"
            )
        return margin

    @field_validator("probe_alpha")
    @classmethod
    def _probe_alpha_positive(cls, probe_alpha: float) -> float:
        if not (math.isfinite(probe_alpha) and probe_alpha > 0):
            raise PydanticCustomError(
                "probe_alpha_range", "Input should be a finite number of standard deviations > 0"
            )
        return probe_alpha

    @field_validator("probe_seed")
    @classmethod
    def _probe_seed_not_negative(cls, seed: int | None) -> int | None:
        if seed is not None and seed < 0:
            raise PydanticCustomError(
                "probe_seed_range", "Input should be an integer >= 0, or none for a secret one"
            )
        return seed


def load_settings(**values) -> ServiceSettings:
    """The settings from ``values`` over the ``IMGPRIVACY_*`` environment.

    Raises
    ------
    InvalidInputError
        One line per bad value (joined by "; "): the variable, what it expects, what it got,
        and how to fix it.
    """
    settings, problems = settings_and_problems(**values)
    if problems:
        raise InvalidInputError(problems)
    return settings


def settings_and_problems(**values) -> tuple[ServiceSettings, list[str]]:
    """As :func:`load_settings`, but returning the problems (one line per bad value) beside the
    settings with each bad value replaced by its default, so that a caller can check the rest
    of the configuration too and report every problem at once (``imgprivacy serve``)."""
    try:
        return ServiceSettings(**values), []
    except ValidationError as exc:
        errors = exc.errors()
    problems = [
        f"IMGPRIVACY_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}, got "
        f"{e.get('input')!r}; set it to a valid value or unset it for the default"
        for e in errors
    ]
    fields = ServiceSettings.model_fields
    defaults = {
        name: fields[name].get_default(call_default_factory=True)
        for name in {e["loc"][0] for e in errors if e["loc"] and e["loc"][0] in fields}
    }
    try:
        return ServiceSettings(**{**values, **defaults}), problems
    except ValidationError:  # a problem no field's default removes
        raise InvalidInputError(problems) from None
