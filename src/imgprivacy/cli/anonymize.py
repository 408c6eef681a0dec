"""``imgprivacy anonymize ...``: train an anonymizer on pen-digits, apply one to a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.cli.common import DataDirOption, DeviceOption, SeedOption, console, progress_bar

_DEFAULTS = AnonymizerConfig()  # the CLI's defaults are the config's (one source of truth)

anonymize_app = typer.Typer(
    help="The mutual-information anonymizer (Feutry et al., ICASSP 2020): train one on pen-digits "
    "with the writer as the private label, then anonymize folders of images with it.",
    no_args_is_help=True,
)


def _rich_progress(progress):
    from imgprivacy.cli.reproduce import rich_progress

    return rich_progress(progress)


@anonymize_app.command("train")
def train(
    out: Annotated[Path, typer.Option("--out", help="Model file to write (.safetensors).")] = Path(
        "anonymizer.safetensors"
    ),
    lam: Annotated[
        float, typer.Option("--lambda", help="Weight of the private term of eq. (12), >= 0.")
    ] = _DEFAULTS.lam,
    recon_weight: Annotated[
        float, typer.Option("--recon-weight", help="Weight of the BCE reconstruction anchor.")
    ] = _DEFAULTS.recon_weight,
    pretrain_epochs: Annotated[int, typer.Option(help="Phase 1 epochs.")] = (
        _DEFAULTS.pretrain_epochs
    ),
    disc_pretrain_epochs: Annotated[int, typer.Option(help="Phase 2 epochs.")] = (
        _DEFAULTS.disc_pretrain_epochs
    ),
    adversarial_epochs: Annotated[int, typer.Option(help="Phase 3 epochs.")] = (
        _DEFAULTS.adversarial_epochs
    ),
    n_prototypes: Annotated[
        int,
        typer.Option(
            help="Substitute each output by the nearest of this many label-free prototypes "
            "(0 = autoencoder only; fewer = more private, less of the digit)."
        ),
    ] = _DEFAULTS.n_prototypes,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Write the training state here after every epoch (atomic)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from --checkpoint if it exists.")
    ] = False,
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """Train on the pen-digits training split (writer = private label; digits never used)."""
    from imgprivacy.anonymizer import Anonymizer
    from imgprivacy.data.pendigits import load_pendigits

    config = AnonymizerConfig(
        lam=lam,
        recon_weight=recon_weight,
        pretrain_epochs=pretrain_epochs,
        disc_pretrain_epochs=disc_pretrain_epochs,
        adversarial_epochs=adversarial_epochs,
        n_prototypes=n_prototypes,
        seed=seed,
    )
    data = load_pendigits(data_dir=data_dir, seed=seed).part("train")
    with progress_bar() as progress:
        model = Anonymizer(config, device=device).fit(
            data.images,
            data.writer,
            checkpoint=checkpoint,
            resume=resume,
            progress=_rich_progress(progress),
        )
    model.save(out)
    console.print(f"model: {out} (lambda={lam}, {config.total_epochs} epochs)")


@anonymize_app.command("apply")
def apply(
    model: Annotated[Path, typer.Option("--model", help="A model from `anonymize train`.")],
    images: Annotated[Path, typer.Option("--images", help="Folder of images to anonymize.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the anonymized PNGs.")],
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 2048,
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
