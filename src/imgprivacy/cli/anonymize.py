"""``imgprivacy anonymize ...``: train an anonymizer (pen-digits, faces, a manifest), apply one.

The anonymizer (torch, scikit-learn) is imported inside the commands, never by ``--help``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgprivacy.cli.common import (
    AE_ARCH_NAMES,
    DATASET_NAMES,
    DataDirOption,
    DeviceOption,
    SeedOption,
    ShowsChoices,
    console,
    progress_bar,
)

PER_KIND = "(default: per data kind)"  # replaced by the values when the help is shown
PER_KIND_FIELDS = (
    "lam",
    "recon_weight",
    "pretrain_epochs",
    "disc_pretrain_epochs",
    "adversarial_epochs",
    "n_prototypes",
)


class _ShowsPerKindDefaults(ShowsChoices):
    """Help that shows the defaults of pen-digits and of faces (read from the configs, which
    import torch, so only when the help is shown)."""

    def format_help(self, ctx, formatter):
        from imgprivacy.anonymizer.config import AnonymizerConfig
        from imgprivacy.anonymizer.presets import faces_anonymizer_config

        digits, faces = AnonymizerConfig(), faces_anonymizer_config()
        for param in self.get_params(ctx):
            if param.name in PER_KIND_FIELDS and PER_KIND in (param.help or ""):
                values = (
                    f"(default: {getattr(digits, param.name)} pen-digits, "
                    f"{getattr(faces, param.name)} faces)"
                )
                param.help = param.help.replace(PER_KIND, values)
        return super().format_help(ctx, formatter)


anonymize_app = typer.Typer(
    help="The mutual-information anonymizer (Feutry et al., ICASSP 2020): train one with a "
    "private label (the writer of pen-digits, the identity of faces, a column of your CSV "
    "manifest), then anonymize folders of images with it.",
    no_args_is_help=True,
)


def _rich_progress(progress):
    from imgprivacy.cli.reproduce import rich_progress

    return rich_progress(progress)


def training_images(
    *,
    dataset: str,
    manifest: Path | None,
    private_label: str,
    image_size: int,
    data_dir: Path | None,
    seed: int,
):
    """(images, private labels, description) of the chosen training source."""
    if manifest is not None:
        from imgprivacy.data.manifest import read_manifest

        data = read_manifest(manifest, private_label=private_label, size=(image_size, image_size))
        mapping = ", ".join(f"{k}={v}" for k, v in enumerate(data.private_classes[:10]))
        more = " ..." if len(data.private_classes) > 10 else ""
        return data.images, data.private, f"{manifest} ({private_label} codes: {mapping}{more})"
    from imgprivacy.data.registry import get_dataset

    data = get_dataset(dataset).load(data_dir=data_dir, image_size=image_size, seed=seed)
    return data.images, data.private, data.description


@anonymize_app.command("train", cls=_ShowsPerKindDefaults)
def train(
    out: Annotated[
        Path,
        typer.Option("--out", help="Model file to write (.safetensors).", dir_okay=False),
    ] = Path("anonymizer.safetensors"),
    dataset: Annotated[
        str,
        typer.Option(
            parser=DATASET_NAMES,
            help="Bundled training data: 'pendigits' (20x20, writer private), 'ferg-like' "
            "(50x50 faces, identity private) or 'att-faces' (AT&T, identity only). Ignored "
            "with --manifest.",
        ),
    ] = "pendigits",
    manifest: Annotated[
        Path | None,
        typer.Option(
            help="Train on your images: a CSV with a 'path' column and label columns.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    private_label: Annotated[
        str, typer.Option(help="With --manifest: the column of the label to hide.")
    ] = "identity",
    image_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Images are resized to SIZE x SIZE grey (default: 20 for pendigits, 50 otherwise).",
            show_default=False,
        ),
    ] = None,
    ae_arch: Annotated[
        str | None,
        typer.Option(
            parser=AE_ARCH_NAMES,
            help="Autoencoder: 'mlp' or 'conv' (default: mlp for pendigits, conv otherwise).",
            show_default=False,
        ),
    ] = None,
    lam: Annotated[
        float | None,
        typer.Option(
            "--lambda",
            help="Weight of the private term of eq. (12), >= 0. " + PER_KIND,
            show_default=False,
        ),
    ] = None,
    recon_weight: Annotated[
        float | None,
        typer.Option(
            "--recon-weight",
            help="Weight of the BCE reconstruction anchor. " + PER_KIND,
            show_default=False,
        ),
    ] = None,
    target_identity: Annotated[
        int | None,
        typer.Option(
            help="The intertwined method: the discriminator's real samples are this private "
            "label's images only, so outputs take its look.",
            show_default=False,
        ),
    ] = None,
    substitute: Annotated[
        bool,
        typer.Option(
            "--substitute",
            help="The paper's substitution: release the nearest training image of "
            "--target-identity instead of the autoencoder's output.",
        ),
    ] = False,
    pretrain_epochs: Annotated[
        int | None,
        typer.Option(help="Phase 1 epochs. " + PER_KIND, show_default=False),
    ] = None,
    disc_pretrain_epochs: Annotated[
        int | None,
        typer.Option(help="Phase 2 epochs. " + PER_KIND, show_default=False),
    ] = None,
    adversarial_epochs: Annotated[
        int | None,
        typer.Option(help="Phase 3 epochs. " + PER_KIND, show_default=False),
    ] = None,
    n_prototypes: Annotated[
        int | None,
        typer.Option(
            help="Without --substitute: replace each output by the nearest of this many "
            "label-free prototypes (0 = release the autoencoder's output; fewer = more "
            "private, less of the content). " + PER_KIND,
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Write the training state here after every epoch (atomic).", dir_okay=False
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--restart",
            help="With --checkpoint: continue from it if it exists, or start over.",
        ),
    ] = True,
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """Train an anonymizer with the private label as the only label (the content is never used).

    Examples: `imgprivacy anonymize train` (pen-digits, writer hidden);
    `imgprivacy anonymize train --dataset ferg-like --target-identity 0 --substitute`
    (the intertwined method on FERG-like faces); `imgprivacy anonymize train --manifest
    faces.csv --private-label identity --target-identity 3 --substitute`.
    """
    if substitute and target_identity is None:
        raise typer.BadParameter(
            "--substitute replaces outputs by training images of the target identity: give "
            "--target-identity K as well.",
            param_hint="'--substitute'",
        )
    from imgprivacy.anonymizer import Anonymizer, AnonymizerConfig
    from imgprivacy.anonymizer.presets import faces_anonymizer_config
    from imgprivacy.data.registry import get_dataset

    spec = get_dataset(dataset)
    bundled_digits = manifest is None and dataset == "pendigits"
    size = image_size or (spec.image_size if manifest is None else 50)
    # the base config of the data kind: pen-digits' defaults or the faces reproduction's
    base = AnonymizerConfig() if bundled_digits else faces_anonymizer_config()
    if substitute:
        substitution = "target"
    elif n_prototypes is not None:
        substitution = "prototypes" if n_prototypes > 0 else "none"
    else:
        substitution = base.substitution
    given = {
        "ae_arch": ae_arch,
        "lam": lam,
        "recon_weight": recon_weight,
        "pretrain_epochs": pretrain_epochs,
        "disc_pretrain_epochs": disc_pretrain_epochs,
        "adversarial_epochs": adversarial_epochs,
        "n_prototypes": n_prototypes,
    }
    config = base.replace(
        image_size=size,
        target_identity=target_identity,
        substitution=substitution,
        seed=seed,
        **{k: v for k, v in given.items() if v is not None},
    )
    images, labels, source = training_images(
        dataset=dataset,
        manifest=manifest,
        private_label=private_label,
        image_size=size,
        data_dir=data_dir,
        seed=seed,
    )
    console.print(f"training on {len(images)} images: {source}")
    if resume and checkpoint is not None and checkpoint.is_file():
        console.print(f"resuming from {checkpoint} (--restart starts over)")
    with progress_bar() as progress:
        model = Anonymizer(config, device=device).fit(
            images,
            labels,
            checkpoint=checkpoint,
            resume=resume,
            progress=_rich_progress(progress),
        )
    model.save(out)
    target = "" if target_identity is None else f", target identity {target_identity}"
    console.print(
        f"model: {out} (lambda={config.lam:g}{target}, substitution={substitution}, "
        f"{config.total_epochs} epochs)"
    )


@anonymize_app.command("apply")
def apply(
    model: Annotated[
        Path,
        typer.Option(
            "--model", help="A model from `anonymize train`.", exists=True, dir_okay=False
        ),
    ],
    images: Annotated[
        Path,
        typer.Option(
            "--images", help="Folder of images to anonymize.", exists=True, file_okay=False
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the anonymized PNGs.", file_okay=False)
    ],
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 2048,
    device: DeviceOption = "cpu",
) -> None:
    """Anonymize every image of a folder (resized to the model's size, grey) into PNGs."""
    import numpy as np
    from PIL import Image

    from imgprivacy.anonymizer import Anonymizer
    from imgprivacy.data import list_images, load_images
    from imgprivacy.fileio import write_atomic

    anonymizer = Anonymizer.load(model, device=device)
    size = anonymizer.config.image_size
    paths = list_images(images)
    pixels = load_images(paths, size=(size, size), mode="L")
    anonymized = anonymizer.transform(pixels, batch_size=batch_size)
    for path, image in zip(paths, anonymized):
        import io

        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image), mode="L").save(buffer, format="PNG")
        write_atomic(out / f"{path.stem}.png", buffer.getvalue())
    console.print(f"anonymized {len(paths)} images into {out}")
