"""``imgprivacy reproduce ...``: the papers' experiments, ours printed beside theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgprivacy.cli.common import (
    VARIATION_NAMES,
    DataDirOption,
    DeviceOption,
    OutOption,
    QuickOption,
    SeedOption,
    ShowsChoices,
    console,
    progress_bar,
)

reproduce_app = typer.Typer(
    help="Reproduce the papers' experiments: every command takes --out DIR (PNG figures and "
    "results.json) and --quick (a reduced run).",
    no_args_is_help=True,
)


def rich_progress(progress):
    """Adapt a rich Progress to imgprivacy's ProgressFactory protocol."""

    def factory(description: str, total: int):
        task = progress.add_task(description, total=total, status="")
        return lambda status="": progress.update(task, advance=1, status=status)

    return factory


def run_and_report(reproduce, summary_tables, *, out: Path, **kwargs):
    """Run a reproduction behind a progress bar, print its tables and where its files went;
    return its result (a dataclass with ``seconds`` and ``figures``)."""
    from imgprivacy.reports.results import print_tables

    with progress_bar() as progress:
        results = reproduce(out=out, progress=rich_progress(progress), **kwargs)
    print_tables(summary_tables(results))
    console.print(
        f"{results.seconds / 60:.1f} min; results: {Path(out) / 'results.json'}; "
        f"figures: {len(results.figures)} PNG in {out}"
    )
    return results


@reproduce_app.command("docl-mnist")
def docl_mnist(
    out: OutOption = Path("reports/docl-mnist"),
    quick: QuickOption = False,
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    negatives: Annotated[
        bool,
        typer.Option(
            "--negatives/--no-negatives",
            help="Train the default model's users and adversaries against the public negative "
            "set, as `guard train` does (--no-negatives: their own images only, to compare).",
        ),
    ] = True,
) -> None:
    """DOCL on MNIST (paper sec. 3): 10 users each protecting one digit with a one-class
    autoencoder; accuracy, one-class AUC, Guard sweep with Fashion-MNIST uploads, adversaries
    and scalability, for imgprivacy's default model as a device trains it (`imgprivacy features
    list`, with the public negative set) and the paper-exact one (784-32-784 on raw pixels,
    Adadelta)."""
    from imgprivacy.reproduce.docl_mnist import reproduce_docl_mnist, summary_tables

    run_and_report(
        reproduce_docl_mnist,
        summary_tables,
        out=out,
        quick=quick,
        data_dir=data_dir,
        seed=seed,
        device=device,
        negatives=negatives,
    )


@reproduce_app.command("docl-strong-adversaries")
def docl_strong_adversaries(
    out: OutOption = Path("reports/docl-strong-adversaries"),
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
    epochs: Annotated[
        list[int] | None,
        typer.Option(help="Adversaries' training epochs (repeat for several; default: 30)."),
    ] = None,
    all_pairs: Annotated[
        bool,
        typer.Option(
            "--all-pairs/--five-pairs",
            help="All 90 (adversary, victim) pairs (about 15 s each), or 7+1, 4+9, 0+6, 3+8, 1+3.",
        ),
    ] = False,
) -> None:
    """DOCL's adversary (paper Fig. 4) fully trained, against the service's Guard point: the
    adversary's uploads of the victim's digits blocked, and the victim's own uploads shared,
    with seniority and the breadth gate, without seniority, and without either."""
    from imgprivacy.reproduce.docl_strong_adversaries import (
        ALL_PAIRS,
        PAIRS,
        reproduce_docl_strong_adversaries,
        summary_tables,
    )

    run_and_report(
        reproduce_docl_strong_adversaries,
        summary_tables,
        out=out,
        data_dir=data_dir,
        seed=seed,
        epochs=tuple(epochs or (30,)),
        pairs=ALL_PAIRS if all_pairs else PAIRS,
    )


@reproduce_app.command("anonymizer-pendigits")
def anonymizer_pendigits(
    out: OutOption = Path("reports/anonymizer-pendigits"),
    quick: QuickOption = False,
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """The anonymizer on pen-digits (Feutry et al. sec. 3, Fig. 2): sweep lambda, train fresh
    CNN and random-forest attackers on the anonymized images for the writer (private) and the
    digit (kept), beside the original images' baseline and chance (1/30)."""
    from imgprivacy.reports.results import comparison_table
    from imgprivacy.reproduce.anonymizer_pendigits import (
        reproduce_anonymizer_pendigits,
        summary_rows,
    )

    def tables(results):
        families = " / ".join(results.attack.families)
        return [
            comparison_table(
                "Anonymizer on pen-digits (test accuracy of fresh attackers)"
                + (" (--quick)" if quick else ""),
                summary_rows(results),
                columns=(
                    "images",
                    "writer (best)",
                    f"writer ({families})",
                    "digit (best)",
                    f"digit ({families})",
                    "distortion",
                ),
            )
        ]

    results = run_and_report(
        reproduce_anonymizer_pendigits,
        tables,
        out=out,
        quick=quick,
        data_dir=data_dir,
        seed=seed,
        device=device,
    )
    best = results.best  # a typed dict: its key "lambda" cannot be a field name
    console.print(
        f"best lambda={best['lambda']:g}: writer {100 * best['writer_accuracy']:.1f}% "
        f"(goal <= 6.7%), digit {100 * best['digit_accuracy']:.1f}% (goal >= 95%)"
    )


@reproduce_app.command("anonymizer-faces", cls=ShowsChoices)
def anonymizer_faces(
    out: OutOption = Path("reports/anonymizer-faces"),
    quick: QuickOption = False,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="Run on your own images: a CSV with a 'path' column and label columns "
            "(instead of the FERG-like faces).",
        ),
    ] = None,
    private_label: Annotated[
        str, typer.Option(help="Manifest column of the private label (what to hide).")
    ] = "identity",
    utility_label: Annotated[
        str, typer.Option(help="Manifest column of the label to keep (assessment only).")
    ] = "expression",
    variation: Annotated[
        str,
        typer.Option(
            help="FERG-like variation preset: 'studio' renders like FERG (one frontal camera, "
            "fixed light, plain background), 'wild' adds pose, lighting and noise variation.",
            parser=VARIATION_NAMES,
        ),
    ] = "studio",
    targets: Annotated[
        str,
        typer.Option(
            help="Comma-separated target identities (codes 0..K-1) (default: the paper's "
            "0,2,3,4,5; 0 with --quick).",
            show_default=False,
        ),
    ] = "",
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """The anonymizer on faces (Feutry et al. sec. 3, Table 1, Figs 3-4): the standard method and
    the intertwined method (target-identity discriminator + substitution by the nearest training
    image of the target) on FERG-like faces or your manifest; fresh CNN and random-forest
    attackers for identity (hidden) and expression (kept), beside the paper's Table 1."""
    import dataclasses

    from imgprivacy.errors import InvalidInputError
    from imgprivacy.reports.results import comparison_table
    from imgprivacy.reproduce.anonymizer_faces import FacesSettings, reproduce_anonymizer_faces
    from imgprivacy.reproduce.anonymizer_faces_output import summary_rows

    settings = FacesSettings.quick(seed) if quick else FacesSettings.full(seed)
    if targets:
        try:
            chosen = tuple(int(t) for t in targets.split(","))
        except ValueError as exc:
            raise InvalidInputError(
                f"Expected --targets as comma-separated integers such as 0,2,3, got {targets!r}."
            ) from exc
        settings = dataclasses.replace(settings, targets=chosen)
    settings = dataclasses.replace(settings, variation=variation)

    def tables(results):
        families = f"({' / '.join(results.attack.families)})"
        return [
            comparison_table(
                "Anonymizer on faces (test accuracy of fresh attackers)"
                + (" (--quick)" if quick else ""),
                summary_rows(results),
                columns=(
                    "images",
                    f"{results.data.private_label} (best)",
                    families,
                    f"{results.data.utility_label} (best)",
                    families,
                    "paper identity",
                    "paper expression",
                ),
            )
        ]

    run_and_report(
        reproduce_anonymizer_faces,
        tables,
        out=out,
        quick=quick,
        seed=seed,
        device=device,
        settings=settings,
        manifest=manifest,
        private_label=private_label,
        utility_label=utility_label,
    )


@reproduce_app.command("docl-cifar10")
def docl_cifar10(
    out: OutOption = Path("reports/docl-cifar10"),
    quick: QuickOption = False,
    jpeg: Annotated[
        bool,
        typer.Option(
            "--jpeg",
            help="Use the larger JPEG-degraded CIFAR-10 copy (flagged as not comparable).",
        ),
    ] = False,
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """DOCL on CIFAR-10 (paper sec. 3): 10 users = 10 classes on pretrained ResNet-20 features;
    accuracy, Guard sweep with Fashion-MNIST uploads, adversaries and scalability, for the chosen
    model and the paper-exact one."""
    from imgprivacy.reproduce.docl_cifar10 import reproduce_docl_cifar10, summary_tables

    run_and_report(
        reproduce_docl_cifar10,
        summary_tables,
        out=out,
        quick=quick,
        jpeg=jpeg,
        data_dir=data_dir,
        seed=seed,
        device=device,
    )


@reproduce_app.command("docl-faces")
def docl_faces(
    out: OutOption = Path("reports/docl-faces"),
    quick: QuickOption = False,
    extractor: Annotated[
        Path | None,
        typer.Option(
            "--extractor",
            help="Face extractor file to use as it is (trained there first when missing). "
            "Default: one trained with --seed into OUT/models, reused there only when it was "
            "trained with the same settings.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """DOCL on faces (paper sec. 3): 10 users = 10 Extended Yale B identities on the provider's
    face-CNN features, representation sizes 32 and 132; acceptance rate with faces of new
    identities, adversaries and scalability."""
    from imgprivacy.reproduce.docl_faces import reproduce_docl_faces, summary_tables

    run_and_report(
        reproduce_docl_faces,
        summary_tables,
        out=out,
        quick=quick,
        extractor=extractor,
        data_dir=data_dir,
        seed=seed,
        device=device,
    )
