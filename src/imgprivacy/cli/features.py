"""``imgprivacy features ...``: the registered feature extractors and the provider's face CNN."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgprivacy.cli.common import DataDirOption, DeviceOption, SeedOption, console, progress_bar

features_app = typer.Typer(
    help="Feature extractors: list them, train the provider's face extractor.",
    no_args_is_help=True,
)


@features_app.command("list")
def list_extractors() -> None:
    """The registered extractor names (use them with --features) and the default model that
    `imgprivacy guard train` trains on each."""
    from imgprivacy.docl import AutoencoderConfig
    from imgprivacy.docl.defaults import DEFAULT_FEATURE_EXTRACTOR, MODEL_DEFAULTS
    from imgprivacy.features import FEATURES

    width = max(len(name) for name in FEATURES) + len(" (default)")
    for name in FEATURES:
        label = f"{name} (default)" if name == DEFAULT_FEATURE_EXTRACTOR else name
        if name not in MODEL_DEFAULTS:
            typer.echo(label)
            continue
        config = AutoencoderConfig.for_features(name)
        typer.echo(
            f"{label:<{width}}  {'-'.join(map(str, config.layer_dims))}, "
            f"{config.optimizer.capitalize()}, {config.epochs} epochs, "
            f"batches of {config.batch_size}"
        )


@features_app.command("train-face-extractor")
def train_face_extractor(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write it (default: $IMGPRIVACY_FACE_EXTRACTOR or "
            "~/.cache/imgprivacy/faces-cnn.safetensors, where `faces-cnn` looks).",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the faces.")] = 30,
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """Train the `faces-cnn` extractor as the provider would: identity classification on the
    Extended Yale B identities that are NOT DOCL users or new identities (16-37)."""
    from imgprivacy.data.faces import IdentitySplit, identities, load_yaleb
    from imgprivacy.features.face_training import train_face_net
    from imgprivacy.features.faces import FaceNetConfig, default_path, save_face_extractor

    path = out or default_path()
    faces = identities(load_yaleb(data_dir=data_dir), IdentitySplit().extractor)
    config = FaceNetConfig(epochs=epochs, seed=seed)
    from imgprivacy.cli.reproduce import rich_progress

    with progress_bar() as progress:
        model = train_face_net(
            faces.images,
            faces.labels,
            config=config,
            device=device,
            progress=rich_progress(progress),
        )
    save_face_extractor(model, path)
    console.print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {len(faces)} faces of "
        f"{len(model.info['identities'])} identities, training accuracy "
        f"{model.info['train_accuracy']:.1%}"
    )
