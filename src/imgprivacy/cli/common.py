"""Exit codes, error reporting, options, logging and progress bars shared by every CLI command.

Exit codes (the same for every command):

* 0: success (``imgprivacy check``: the image may be shared);
* 1: ``imgprivacy check``: the image is blocked;
* 2: usage error: an unknown command, option or value, a missing or wrong path;
* 3: input or server error: unreadable or unusable data, a request the service refused, a service
  that cannot be reached.

Nothing here imports torch or scikit-learn: ``imgprivacy --help`` and ``imgprivacy check`` stay
fast. Names that come from registries backed by torch (feature extractors, guard policies) are
read when a command runs or shows its help, not when the command line is built.
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from imgprivacy.data.paths import DATA_ENV_VAR
from imgprivacy.errors import ImgPrivacyError, InvalidInputError

console = Console(stderr=True)
logger = logging.getLogger(__name__)

EXIT_BLOCK = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_CODES_HELP = (
    "Exit codes: 0 success (check: share), 1 check: block, 2 usage error (unknown option or "
    "value, missing file), 3 input or server error (unusable data, a refused request, no service)."
)


# -- errors -------------------------------------------------------------------------------------
def error_message(exc: BaseException) -> str:
    """What to print for a user error: our messages as they are, OS errors with their path."""
    if isinstance(exc, InvalidInputError) and len(exc.problems) > 1:
        return f"{len(exc.problems)} problems:\n" + "\n".join(f"  - {p}" for p in exc.problems)
    if isinstance(exc, OSError) and not isinstance(exc, ImgPrivacyError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}. Check the path and its permissions."
    return str(exc)


def report_error(exc: BaseException) -> None:
    console.print(Text.assemble(("error: ", "bold red"), error_message(exc)), soft_wrap=True)
    logger.debug("details of the error above", exc_info=exc)  # shown with -vv


class ImgPrivacyGroup(TyperGroup):
    """The root command: user errors end with their message and exit code 3, not a traceback.

    Our errors (:mod:`imgprivacy.errors`, including the service client's) already say what was
    expected and how to fix it; OS errors (a file that cannot be read or written) name the path.
    Usage errors keep click's exit code 2. Handled here rather than around ``app()`` so that
    ``CliRunner`` sees the same exit codes as a shell.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ImgPrivacyError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise  # output piped into a closed reader: click's own handling
            report_error(exc)
            raise typer.Exit(EXIT_INPUT) from None


class ImgPrivacyApp(typer.Typer):
    """The root app, built with :class:`ImgPrivacyGroup`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("cls", ImgPrivacyGroup)
        super().__init__(**kwargs)


# -- closed sets of names -----------------------------------------------------------------------
class Names:
    """A closed set of names, read from ``load`` on first use; also a Typer ``parser``.

    Use as ``typer.Option(parser=FEATURE_NAMES)`` in a command registered with
    ``cls=ShowsChoices``: a name outside the set is a usage error listing the valid ones, and the
    command's help shows them. With ``default``, an option whose default is None means the
    library's default name, and the help shows that name.
    """

    def __init__(
        self,
        what: str,
        load: Callable[[], Iterable[str]],
        default: Callable[[], str] | None = None,
    ):
        self.what = what
        self._load = load
        self._default = default
        self._names: tuple[str, ...] | None = None

    def names(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = tuple(self._load())
        return self._names

    def default(self) -> str | None:
        """The library's default name (read on first use, like the names), or None."""
        return None if self._default is None else self._default()

    def metavar(self) -> str:
        return "<" + "|".join(self.names()) + ">"

    def __call__(self, value: Any) -> str:
        value = str(value)
        if value not in self.names():
            raise ValueError(
                f"{value!r} is not a {self.what}; choose one of: {', '.join(self.names())}"
            )
        return value


def _feature_names() -> Iterable[str]:
    from imgprivacy.features import FEATURES

    return FEATURES


def _default_feature_name() -> str:
    from imgprivacy.docl.defaults import DEFAULT_FEATURE_EXTRACTOR

    return DEFAULT_FEATURE_EXTRACTOR


def _policy_names() -> Iterable[str]:
    from imgprivacy.docl import POLICIES

    return POLICIES


def _dataset_names() -> Iterable[str]:
    from imgprivacy.data.registry import DATASETS

    return DATASETS


def _variation_names() -> Iterable[str]:
    from imgprivacy.data.synthetic.ferg_like import FERG_VARIATIONS

    return FERG_VARIATIONS


def _ae_arch_names() -> Iterable[str]:
    from imgprivacy.anonymizer.config import AE_ARCHS

    return AE_ARCHS


FEATURE_NAMES = Names("feature extractor", _feature_names, default=_default_feature_name)
POLICY_NAMES = Names("guard policy", _policy_names)
DATASET_NAMES = Names("bundled dataset", _dataset_names)
VARIATION_NAMES = Names("FERG-like variation", _variation_names)
AE_ARCH_NAMES = Names("autoencoder architecture", _ae_arch_names)


class ShowsChoices(TyperCommand):
    """A command whose help lists the names of its :class:`Names` options and their defaults."""

    def format_help(self, ctx, formatter):
        for param in self.get_params(ctx):
            info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
            names = getattr(info, "parser", None)
            if isinstance(names, Names) and param.metavar is None:
                param.metavar = names.metavar()
            if (
                isinstance(names, Names)
                and param.default is None
                and names.default() is not None
                and "(default:" not in (param.help or "")
            ):
                text = (param.help or "").rstrip()
                end = "." if text.endswith(".") else ""
                param.help = f"{text.removesuffix('.')} (default: {names.default()}){end}"
        return super().format_help(ctx, formatter)


# -- devices ------------------------------------------------------------------------------------
_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")


def parse_device(value: Any) -> str:
    """A torch device name: cpu, cuda, cuda:N or mps, available on this machine.

    torch is imported only to check an accelerator, never for ``cpu``.
    """
    device = str(value).strip().lower()
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"{value!r} is not a device; use cpu, cuda, cuda:N (N = GPU index) or mps")
    if device == "cpu":
        return device
    import torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("mps (Apple GPU) is not available on this machine; use --device cpu")
        return device
    if not torch.cuda.is_available():
        raise ValueError("CUDA is not available on this machine; use --device cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"{device} does not exist: this machine has {torch.cuda.device_count()} CUDA "
            f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return device


# -- shared options -----------------------------------------------------------------------------
OutOption = Annotated[
    Path,
    typer.Option("--out", help="Folder for figures (PNG) and results.json.", file_okay=False),
]
QuickOption = Annotated[
    bool, typer.Option("--quick", help="Reduced run (fewer epochs/images) for a fast look.")
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar=DATA_ENV_VAR,
        help="Folder with the shared data sets (default: ../shared/data next to the repository).",
        show_default=False,
        exists=True,
        file_okay=False,
        dir_okay=True,
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        parser=parse_device,
        metavar="<cpu|cuda|cuda:N|mps>",
        help="Torch device: cpu, cuda, cuda:N or mps.",
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]


# -- logging and progress -----------------------------------------------------------------------
def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    logging.getLogger("imgprivacy").setLevel(logging.INFO if verbose <= 0 else level)


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A rich progress display on stderr (hidden when stderr is not a terminal)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    ) as progress:
        yield progress
