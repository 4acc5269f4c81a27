"""`python -m review [--host H] [--port P] [--https-only]`: serve the desk over the database of DRAFTFLOW_HOME."""

from __future__ import annotations

import argparse

from review.server import serve
from storage.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m review", description="The draftflow editors' web desk.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--https-only", action="store_true", help="mark the session cookie Secure (serve over HTTPS)")
    args = parser.parse_args()
    serve(Settings.from_env().database_url, host=args.host, port=args.port, https_only=args.https_only)


if __name__ == "__main__":
    main()
