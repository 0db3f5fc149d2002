"""`magpie-sdk`: bulk uploads from the command line.

    magpie-sdk upload csv catalog.csv
    magpie-sdk upload folder ./images --base-url https://cdn.example.com/images

Keys come from --access-key/--secret-key or MAGPIE_ACCESS_KEY/MAGPIE_SECRET_KEY, the server
from --host or MAGPIE_URL (default http://127.0.0.1:8080).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from magpie_sdk.client import Magpie
from magpie_sdk.errors import MagpieError


def _field(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name, value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="magpie-sdk", description="Magpie Python SDK tools.")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", help="Insert a catalog in chunks of 100, wait until indexed.")
    up.add_argument("source", choices=["csv", "folder"], help="What PATH is.")
    up.add_argument("path", type=Path)
    up.add_argument("--base-url", help="folder: the URL under which a web server serves PATH.")
    up.add_argument("--field", action="append", default=[], metavar="NAME=VALUE", type=_field,
                    help="folder: a field value given to every item (repeatable).")
    up.add_argument("--host", default=os.environ.get("MAGPIE_URL", "http://127.0.0.1:8080"))
    up.add_argument("--access-key", default=os.environ.get("MAGPIE_ACCESS_KEY"))
    up.add_argument("--secret-key", default=os.environ.get("MAGPIE_SECRET_KEY"))
    up.add_argument("--no-wait", action="store_true", help="Do not wait for indexing.")
    up.add_argument("--no-progress", action="store_true", help="No progress bar.")
    up.add_argument("--timeout", type=float, default=3600, help="Seconds to wait for indexing.")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; prints a JSON summary, exit code 1 when any item failed."""
    args = _parser().parse_args(argv)
    if not (args.access_key and args.secret_key):
        print("error: --access-key and --secret-key (or MAGPIE_ACCESS_KEY/MAGPIE_SECRET_KEY) are "
              "required", file=sys.stderr)
        return 2
    kw = {"wait": not args.no_wait, "progress": not args.no_progress, "timeout": args.timeout}
    try:
        with Magpie(args.host, access_key=args.access_key, secret_key=args.secret_key) as client:
            if args.source == "csv":
                result = client.upload_csv(args.path, **kw)
            else:
                if not args.base_url:
                    print("error: folder uploads need --base-url", file=sys.stderr)
                    return 2
                fields = dict(args.field)
                result = client.upload_folder(args.path, args.base_url, fields=fields, **kw)
    except (MagpieError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    json.dump({"sent": result.sent, "indexed": result.success_count, "failed": result.fail_count,
               "trans_ids": result.trans_ids,
               "errors": [e.__dict__ for e in result.errors]}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if result.fail_count else 0


if __name__ == "__main__":
    sys.exit(main())
