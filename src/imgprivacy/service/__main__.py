"""``python -m imgprivacy.service [--host H] [--port P] [--workers N]``.

The rest of the configuration comes from ``IMGPRIVACY_*`` environment variables
(:class:`imgprivacy.service.ServiceSettings`); ``imgprivacy serve`` offers the same as flags.
"""

import argparse

from imgprivacy.service.server import run_server

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m imgprivacy.service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    run_server(host=args.host, port=args.port, workers=args.workers)
