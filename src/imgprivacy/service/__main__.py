"""``python -m imgprivacy.service [flags]`` = ``imgprivacy serve [flags]``."""

import typer

from imgprivacy.cli.serve import serve

if __name__ == "__main__":
    typer.run(serve)
