"""The ``imgprivacy`` command line: ``imgprivacy --help`` lists the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from imgprivacy import __version__
from imgprivacy.cli.anonymize import anonymize_app
from imgprivacy.cli.audit import audit_app, docl_audit
from imgprivacy.cli.common import EXIT_CODES_HELP, ImgPrivacyApp, ShowsChoices, setup_logging
from imgprivacy.cli.demo import demo_app
from imgprivacy.cli.features import features_app
from imgprivacy.cli.guard import check, guard_app
from imgprivacy.cli.reproduce import reproduce_app
from imgprivacy.cli.serve import serve

app = ImgPrivacyApp(
    name="imgprivacy",
    help=(
        "Protect the people in shared images: the DOCL privacy filter (one-class autoencoders "
        "trained on users' devices, a Guard that blocks other people's private images) and the "
        "mutual-information anonymizer.\n\n" + EXIT_CODES_HELP
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
reproduce_app.command("docl-audit")(docl_audit)
app.add_typer(reproduce_app, name="reproduce")
app.add_typer(anonymize_app, name="anonymize")
app.add_typer(guard_app, name="guard")
app.add_typer(audit_app, name="audit")
app.add_typer(demo_app, name="demo")
app.add_typer(features_app, name="features")
app.command("serve", cls=ShowsChoices)(serve)
app.command("check")(check)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgprivacy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    setup_logging(verbose)


__all__ = ["app"]
