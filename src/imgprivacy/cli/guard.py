"""``imgprivacy guard ...``: train a guard on your images, register, upload, list, delete; and
``imgprivacy check``. Only ``guard train`` imports torch (inside the command)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imgprivacy.cli.common import (
    EXIT_BLOCK,
    FEATURE_NAMES,
    DataDirOption,
    DeviceOption,
    SeedOption,
    ShowsChoices,
    console,
    progress_bar,
)

guard_app = typer.Typer(
    help="Your guard models: train one on a folder of your private images (on this machine), "
    "register with a service, upload, list and delete.",
    no_args_is_help=True,
)

ServerOption = Annotated[
    str, typer.Option("--server", envvar="IMGPRIVACY_SERVER", help="Service URL.")
]
TokenOption = Annotated[
    str,
    typer.Option("--token", envvar="IMGPRIVACY_TOKEN", help="Your API token.", show_default=False),
]


def client(server: str, token: str | None = None):
    from imgprivacy.client import GuardClient

    return GuardClient(server, token)


@guard_app.command("train", cls=ShowsChoices)
def train(
    images: Annotated[
        Path,
        typer.Option(
            "--images", help="Folder of your private images.", exists=True, file_okay=False
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the guard (.safetensors).", dir_okay=False)
    ],
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            parser=FEATURE_NAMES,
            help="Feature extractor (the service's; `imgprivacy features list`).",
            show_default=False,
        ),
    ] = None,
    hidden_dim: Annotated[
        int | None,
        typer.Option(
            "--hidden-dim",
            min=1,
            help="Representation size M (default: the extractor's default model, "
            "`imgprivacy features list`).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            min=1,
            help="Passes over your images (default: the extractor's default model).",
            show_default=False,
        ),
    ] = None,
    calibration: Annotated[
        float | None,
        typer.Option(
            "--calibration",
            min=0.0,
            max=0.5,
            help="Share of your images held out of training to compute mu/sigma from (0 = the "
            "paper: from the training images; default: the extractor's default model).",
            show_default=False,
        ),
    ] = None,
    negative_weight: Annotated[
        float | None,
        typer.Option(
            "--negative-weight",
            min=0.0,
            help="Weight of the provider's public negative set (outlier exposure: your model "
            "learns to reconstruct Fashion-MNIST clothes and noise badly, so its interval holds "
            "fewer images that are not yours; needs Fashion-MNIST in --data-dir). Default: 1 "
            "for pixels-smooth (measured better on MNIST, docs/results.md), 0 for the other "
            "extractors and with --dp-epsilon. Turn it off with --negative-weight 0 (your "
            "images only).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--restart",
            help="Continue an interrupted run from <out>.ckpt, or start over.",
        ),
    ] = True,
    dp_epsilon: Annotated[
        float | None,
        typer.Option(
            "--dp-epsilon",
            min=0.01,
            help="Train with differential privacy (DP-SGD) within this epsilon; it covers the "
            "weights and mu/sigma, and is written into the file. Not resumable.",
            show_default=False,
        ),
    ] = None,
    dp_delta: Annotated[
        float,
        typer.Option(
            "--dp-delta",
            min=1e-12,
            max=0.1,
            help="The delta of --dp-epsilon; keep it below 1/(number of your images).",
        ),
    ] = 1e-5,
    dp_public_model: Annotated[
        Path | None,
        typer.Option(
            "--dp-public-model",
            help="With --dp-epsilon: a guard of the same model trained (without privacy) on "
            "PUBLIC images only; its first layer is copied into yours and not trained, so DP "
            "trains fewer parameters.",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """Train a one-class autoencoder on your images and compute mu/sigma (nothing leaves this
    machine). The model is the feature extractor's default one, trained against the public
    negative set (see --negative-weight), unless an option changes it. A model whose sigma
    would be 0 (identical images) is refused, not written. With --dp-epsilon the training is
    differentially private (docs/threat-model.md)."""
    from imgprivacy.cli.reproduce import rich_progress
    from imgprivacy.client import train_guard
    from imgprivacy.docl.private_budget import PrivacyBudget

    if dp_epsilon is not None and negative_weight:
        raise typer.BadParameter(
            "differentially private training (--dp-epsilon) does not support the public "
            "negative set: leave --negative-weight out or set it to 0",
            param_hint="--negative-weight",
        )
    config = guard_config(
        features=features,
        hidden_dim=hidden_dim,
        epochs=epochs,
        calibration=calibration,
        negative_weight=0.0 if dp_epsilon is not None else negative_weight,
        seed=seed,
    )
    if dp_public_model is not None and dp_epsilon is None:
        raise typer.BadParameter(
            "needs --dp-epsilon (it only applies to private training)",
            param_hint="--dp-public-model",
        )
    privacy = None
    if dp_epsilon is not None:
        # --epochs, when given, sets the DP run too (else the DP default: PrivacyBudget.epochs).
        dp_epochs = {} if epochs is None else {"epochs": epochs}
        privacy = PrivacyBudget(
            epsilon=dp_epsilon, delta=dp_delta, public_model=dp_public_model, **dp_epochs
        )
    with progress_bar() as progress:
        model = train_guard(
            images,
            out=out,
            config=config,
            resume=resume,
            progress=rich_progress(progress),
            privacy=privacy,
            device=device,
            data_dir=data_dir,
        )
    dp = "" if privacy is None else f" epsilon={dp_epsilon:g} delta={dp_delta:g}"
    console.print(f"wrote {out}: mu={model.error_mean_:.4g} sigma={model.error_std_:.4g}{dp}")


def guard_config(
    *,
    features: str | None,
    hidden_dim: int | None,
    epochs: int | None,
    seed: int,
    calibration: float | None = None,
    negative_weight: float | None = None,
):
    """The model a device trains by default for the extractor (the library's default extractor
    when None: ``AutoencoderConfig.for_edge``), with the options that were given."""
    from imgprivacy.docl import AutoencoderConfig

    changes = {
        "hidden_dim": hidden_dim,
        "epochs": epochs,
        "calibration_fraction": calibration,
        "negative_weight": negative_weight,
    }
    return AutoencoderConfig.for_edge(
        features or FEATURE_NAMES.default(),
        seed=seed,
        **{name: value for name, value in changes.items() if value is not None},
    )


@guard_app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Your user name.")],
    server: ServerOption = "http://127.0.0.1:8000",
) -> None:
    """Create an account; prints the API token once (keep it)."""
    with client(server) as c:
        token = c.register(name)
    typer.echo(token)


@guard_app.command("upload")
def upload(
    model: Annotated[
        Path,
        typer.Argument(
            help="The .safetensors file from `guard train`.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    token: TokenOption,
    name: Annotated[
        str | None, typer.Option("--name", help="Model name (default: file stem).")
    ] = None,
    server: ServerOption = "http://127.0.0.1:8000",
) -> None:
    """Upload (or replace) a guard; it is checked here first (statistics, finite weights), then
    the service validates and probes it."""
    with client(server, token) as c:
        info = c.upload(name or model.stem, model)
    typer.echo(json.dumps(info, indent=2))


@guard_app.command("list")
def list_models(token: TokenOption, server: ServerOption = "http://127.0.0.1:8000") -> None:
    """Your guards' metadata."""
    with client(server, token) as c:
        typer.echo(json.dumps(c.models(), indent=2))


@guard_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Model name.")],
    token: TokenOption,
    server: ServerOption = "http://127.0.0.1:8000",
) -> None:
    """Delete one of your guards."""
    with client(server, token) as c:
        c.delete(name)
    console.print(f"deleted {name}")


def check(
    image: Annotated[
        Path,
        typer.Argument(
            help="A PNG or JPEG you want to share.", exists=True, dir_okay=False, readable=True
        ),
    ],
    token: TokenOption,
    server: ServerOption = "http://127.0.0.1:8000",
) -> None:
    """Ask the service whether IMAGE may be shared; prints "share: ..." or "block: ...".

    Exit code 0: share; 1: block; 2: usage error (wrong option, missing file); 3: input or
    server error (not a PNG/JPEG, a refused request, no service at --server).
    """
    with client(server, token) as c:
        result = c.check_image(image)
    typer.echo(f"{result.decision}: {result.reason}")
    if not result.share:
        raise typer.Exit(EXIT_BLOCK)
