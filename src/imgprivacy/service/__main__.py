"""``python -m imgprivacy.service [--host H] [--port P] [--workers N]``.

The rest of the configuration comes from ``IMGPRIVACY_*`` environment variables
(:class:`imgprivacy.service.ServiceSettings`); ``imgprivacy serve`` offers the same as flags.
"""

import argparse
import sys

from imgprivacy.errors import InvalidInputError
from imgprivacy.service.server import run_server

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m imgprivacy.service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    from imgprivacy.service.settings import load_settings

    try:  # a bad IMGPRIVACY_* value: one line saying which, not a traceback from every worker
        settings = load_settings()
        if args.workers > 1:  # several workers on one Ray bank need one cluster's address
            from imgprivacy.service.ray_bank import check_workers

            check_workers(
                workers=args.workers, bank=settings.bank, ray_address=settings.ray_address
            )
    except InvalidInputError as exc:
        sys.exit(f"error: {exc}")
    run_server(host=args.host, port=args.port, workers=args.workers)
