"""``imgprivacy guard ...``: train a guard on your images, register, upload, list, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imgprivacy.cli.common import DeviceOption, SeedOption, console, progress_bar

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


def run_remote(call):
    """Run a client call; print a service error clearly and exit 1."""
    from imgprivacy.client import ServiceRequestError

    try:
        return call()
    except ServiceRequestError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@guard_app.command("train")
def train(
    images: Annotated[Path, typer.Option("--images", help="Folder of your private images.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the guard (.safetensors).")],
    features: Annotated[str, typer.Option("--features", help="Feature extractor name.")] = "pixels",
    hidden_dim: Annotated[int, typer.Option("--hidden-dim", help="Representation size M.")] = 32,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over your images.")] = 50,
    resume: Annotated[
        bool, typer.Option("--resume/--restart", help="Continue an interrupted run.")
    ] = True,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """Train a one-class autoencoder on your images and compute mu/sigma (nothing leaves this machine)."""
    from imgprivacy.cli.reproduce import rich_progress
    from imgprivacy.client import train_guard
    from imgprivacy.docl import AutoencoderConfig

    config = AutoencoderConfig(
        hidden_dim=hidden_dim, epochs=epochs, seed=seed, feature_extractor=features
    )
    with progress_bar() as progress:
        model = train_guard(
            images,
            out=out,
            config=config,
            resume=resume,
            progress=rich_progress(progress),
            device=device,
        )
    console.print(f"wrote {out}: mu={model.error_mean_:.4g} sigma={model.error_std_:.4g}")


@guard_app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Your user name.")],
    server: ServerOption = "http://127.0.0.1:8000",
) -> None:
    """Create an account; prints the API token once (keep it)."""
    with client(server) as c:
        token = run_remote(lambda: c.register(name))
    typer.echo(token)


@guard_app.command("upload")
def upload(
    model: Annotated[Path, typer.Argument(help="The .safetensors file from `guard train`.")],
    token: TokenOption,
    name: Annotated[
        str | None, typer.Option("--name", help="Model name (default: file stem).")
    ] = None,
    server: ServerOption = "http://127.0.0.1:8000",
) -> None:
    """Upload (or replace) a guard; the service validates and probes it first."""
    with client(server, token) as c:
        info = run_remote(lambda: c.upload(name or model.stem, model))
    typer.echo(json.dumps(info, indent=2))


@guard_app.command("list")
def list_models(token: TokenOption, server: ServerOption = "http://127.0.0.1:8000") -> None:
    """Your guards' metadata."""
    with client(server, token) as c:
        typer.echo(json.dumps(run_remote(c.models), indent=2))


@guard_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Model name.")],
    token: TokenOption,
    server: ServerOption = "http://127.0.0.1:8000",
) -> None:
    """Delete one of your guards."""
    with client(server, token) as c:
        run_remote(lambda: c.delete(name))
    console.print(f"deleted {name}")


def check(
    image: Annotated[Path, typer.Argument(help="A PNG or JPEG you want to share.")],
    token: TokenOption,
    server: ServerOption = "http://127.0.0.1:8000",
) -> None:
    """Ask the service whether IMAGE may be shared (exit code 0 share, 2 block)."""
    with client(server, token) as c:
        result = run_remote(lambda: c.check_image(image))
    typer.echo(f"{result.decision}: {result.reason}")
    if not result.share:
        raise typer.Exit(2)
