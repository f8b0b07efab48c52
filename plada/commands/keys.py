"""`plada keys generate --out DIR`: an Ed25519 key pair for signing task payloads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "keys", help="manage the Ed25519 keys that sign task payloads"
    )
    keys_sub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = keys_sub.add_parser(
        "generate",
        help="write DIR/private.pem (mode 0600) and DIR/public.pem",
        description="Generate an Ed25519 key pair. The builder signs with private.pem; devices "
        "list public.pem under [trust] public_keys.",
    )
    generate.add_argument("--out", type=Path, required=True, help="directory for the key files")
    generate.add_argument(
        "--force", action="store_true", help="overwrite existing key files in DIR"
    )
    generate.add_argument("--json", action="store_true", help="print paths and key id as JSON")
    generate.set_defaults(func=handle_generate)


def handle_generate(args: argparse.Namespace) -> int:
    import json

    from plada.errors import KeyFileError
    from plada.signing import generate_keypair, load_public_key

    try:
        private, public = generate_keypair(args.out, overwrite=args.force)
        kid, _ = load_public_key(public)
    except (KeyFileError, OSError) as exc:
        print(f"plada keys generate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"private_key": str(private), "public_key": str(public), "key_id": kid}))
    else:
        print(f"key id      {kid}")
        print(f"private key {private} (mode 0600: keep it on the builder)")
        print(f"public key  {public} (copy to every device's [trust] public_keys)")
    return 0
