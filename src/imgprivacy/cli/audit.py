"""``imgprivacy audit guard MODEL --images DIR``: what a guard file reveals about your images;
and ``imgprivacy reproduce docl-audit``, the audit over the MNIST users with and without DP.

Runs the attacks an operator holding the file could run (:mod:`imgprivacy.docl.audit`) and
measures them against your own images. Nothing leaves this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgprivacy.cli.common import (
    DataDirOption,
    DeviceOption,
    OutOption,
    QuickOption,
    SeedOption,
)

audit_app = typer.Typer(
    help="Audit what a guard file reveals about the images it was trained on.",
    no_args_is_help=True,
)

FolderOption = dict(exists=True, file_okay=False, dir_okay=True, readable=True)


@audit_app.command("guard")
def audit_guard_command(
    model: Annotated[
        Path,
        typer.Argument(
            help="The guard (.safetensors) to audit.", exists=True, dir_okay=False, readable=True
        ),
    ],
    images: Annotated[
        Path,
        typer.Option(
            "--images", help="Folder of the images the guard was trained on.", **FolderOption
        ),
    ],
    held_out: Annotated[
        Path | None,
        typer.Option(
            "--held-out",
            help="Folder of your images NOT used in training (for the membership AUC).",
            show_default=False,
            **FolderOption,
        ),
    ] = None,
    restarts: Annotated[
        int, typer.Option("--restarts", min=1, help="Batches of random codes the attack tries.")
    ] = 8,
    steps: Annotated[
        int, typer.Option("--steps", min=1, help="Optimisation steps per code.")
    ] = 300,
    seed: SeedOption = 0,
) -> None:
    """Invert the guard's decoder and test membership from its weights alone, then compare with
    your images: the best SSIM / pixel correlation of a recovered image with a training image,
    the share of training images with a near-copy recovered, and the membership AUC (0.5 = the
    weights do not tell your training images from others).

    Exit code 0: audited; 2: usage error (missing file or folder); 3: input error (not a guard
    file, a folder without images, a guard on features that are not images).
    """
    from rich.table import Table

    from imgprivacy.client.training import folder_features
    from imgprivacy.docl import OneClassAutoencoder
    from imgprivacy.docl.audit import AuditSettings, audit_guard
    from imgprivacy.reports.results import print_tables

    guard = OneClassAutoencoder.load(model)
    extractor = guard.config.feature_extractor
    training = folder_features(images, feature_extractor=extractor)
    others = folder_features(held_out, feature_extractor=extractor) if held_out else None
    result = audit_guard(
        guard,
        training,
        held_out=others,
        settings=AuditSettings(restarts=restarts, steps=steps, seed=seed),
    )
    privacy = guard.privacy_
    table = Table(title=f"Audit of {model.name}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row(
        "trained with",
        "no differential privacy"
        if privacy is None
        else f"DP-SGD, epsilon {privacy.epsilon_spent:.3g}, delta {privacy.delta:.3g}",
    )
    table.add_row("recovered images (below mu)", f"{result.recovered} ({result.below_mu})")
    table.add_row("best SSIM with a training image", f"{result.best_ssim:.3f}")
    table.add_row("best pixel correlation", f"{result.best_correlation:.3f}")
    table.add_row("mean SSIM with the nearest training image", f"{result.mean_ssim:.3f}")
    table.add_row(
        f"training images with a near-copy (SSIM >= {result.near_copy_threshold:.3f})",
        f"{result.near_copy_fraction:.1%} of {result.training_images}",
    )
    table.add_row(
        "membership AUC (0.5 = nothing revealed)",
        "- (pass --held-out)"
        if result.membership_auc is None
        else f"{result.membership_auc:.3f} ({result.held_out_images} held-out images)",
    )
    print_tables([table])


def _epsilon(value: str) -> float | None:
    if value.strip().lower() in ("inf", "none"):
        return None
    number = float(value)
    if not number > 0:
        raise ValueError(f"epsilon must be > 0 or 'inf', got {value!r}")
    return number


def docl_audit(
    out: OutOption = Path("reports/docl-audit"),
    quick: QuickOption = False,
    epsilons: Annotated[
        str,
        typer.Option("--epsilons", help="Comma-separated epsilons; 'inf' trains without privacy."),
    ] = "inf,8,4,1",
    models: Annotated[
        str,
        typer.Option("--models", help="Comma-separated models: paper-exact, default."),
    ] = "paper-exact,default",
    train_per_class: Annotated[
        int | None,
        typer.Option(
            "--train-per-class",
            min=2,
            help="Training images per user (default: 1500 with --quick, else all ~6000).",
            show_default=False,
        ),
    ] = None,
    public_layers: Annotated[
        bool,
        typer.Option(
            "--public-layers/--no-public-layers",
            help="DP guards keep a frozen first layer trained on Fashion-MNIST (public) images.",
        ),
    ] = True,
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """The privacy audit on MNIST: each of the 10 users trains a guard (paper-exact and default
    model, with and without DP-SGD at each epsilon); argmin accuracy, the Guard's operating
    point, and the audit of the users' guards (decoder inversion, membership AUC). --quick: 1500
    images per user, 3 users audited with a lighter attack."""
    from imgprivacy.cli.reproduce import run_and_report
    from imgprivacy.reproduce.docl_audit import reproduce_docl_audit, summary_tables

    try:
        parsed = tuple(_epsilon(e) for e in epsilons.split(","))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--epsilons") from None
    run_and_report(
        reproduce_docl_audit,
        summary_tables,
        out=out,
        quick=quick,
        epsilons=parsed,
        models=tuple(m.strip() for m in models.split(",")),
        train_per_class=train_per_class,
        public_layers=public_layers,
        data_dir=data_dir,
        seed=seed,
        device=device,
    )
