"""`plada payload inspect FILE`: what a task payload carries and whether its signature holds.

Exit codes, so scripts can gate on them: 0 the signature is valid under a --trusted-key and the
payload has not expired; 1 it decodes but a device would refuse it (signature invalid, unsigned or
by an unknown key; expired; the contents are still printed), or it is not a payload at all (or is
over the size bound); 2 the file or a key file cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plada.payload import PayloadInfo

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNREADABLE = 2


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("payload", help="inspect task payloads")
    payload_sub = parser.add_subparsers(dest="payload_command", required=True, metavar="ACTION")
    inspect = payload_sub.add_parser(
        "inspect",
        help="print a summary of a payload file",
        description="Decode a payload file and print its task, classes, corpus, codec, size and "
        "signature status (valid, invalid, unsigned or unknown-key). The contents are shown "
        "whatever the signature says; a device would reject anything but 'valid'. Exit 0 only "
        "for a valid signature (under a --trusted-key) on an unexpired payload; 1 when a device "
        "would refuse it or it is not a payload; 2 when a file cannot be read.",
    )
    inspect.add_argument("file", type=Path, metavar="FILE", help="payload file (CBOR envelope)")
    inspect.add_argument(
        "--trusted-key",
        type=Path,
        action="append",
        default=[],
        metavar="PUB",
        help="trusted public key (PEM); repeat for several",
    )
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(func=handle_inspect)


def info_to_json(info: PayloadInfo) -> dict[str, Any]:
    """The `--json` object; keys are part of the CLI contract."""
    payload = info.payload
    prov = payload.provenance
    k = len(payload.indices)
    return {
        "task": payload.task,
        "version": payload.version,
        "num_classes": payload.num_classes,
        "class_names": list(payload.class_names),
        "class_counts": payload.class_counts(),
        "num_indices": k,
        "corpus_fingerprint": payload.corpus.fingerprint,
        "corpus_size": payload.corpus.size,
        "codec": info.codec,
        "bytes_total": info.bytes_total,
        "selection_bytes": info.selection_bytes,
        "bits_per_index": round(8 * info.selection_bytes / k, 3) if k else None,
        "signature": info.signature,
        "key_id": info.key_id,
        "payload_digest": info.digest,
        "expired": info.expired,
        "valid": info.signature == "valid" and not info.expired,
        "view": None
        if payload.view is None
        else {
            **payload.view.to_obj(),
            "digest": payload.view.digest,
            "description": payload.view.describe(),
        },
        "provenance": {
            "builder_version": prov.builder_version,
            "strategy": prov.strategy,
            "params": dict(prov.params),
            "accuracy_estimate": prov.accuracy_estimate,
            "created_at": prov.created_at,
            "expires_at": prov.expires_at,
            "note": prov.note,
        },
    }


def _human(doc: dict[str, Any]) -> str:
    import datetime as dt

    def when(ts: int | None) -> str:
        if ts is None:
            return "never"
        return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

    prov = doc["provenance"]
    key = f" (key {doc['key_id']})" if doc["key_id"] else ""
    acc = prov["accuracy_estimate"]
    lines = [
        f"task          {doc['task']} v{doc['version']}",
        f"signature     {doc['signature']}{key}",
        f"payload id    {doc['payload_digest']}",
        f"size          {doc['bytes_total']} bytes total, {doc['selection_bytes']} bytes of "
        f"selection ({doc['codec']}, {doc['bits_per_index']} bits/index)",
        f"corpus        {doc['corpus_fingerprint']} ({doc['corpus_size']} images)",
        f"selection     {doc['num_indices']} indices, {doc['num_classes']} classes",
        "view          "
        + (
            "none (reference images as they are)"
            if doc["view"] is None
            else f"{doc['view']['description']} (v{doc['view']['version']}, "
            f"{doc['view']['digest'][:16]})"
        ),
    ]
    width = max(len(name) for name in doc["class_names"])
    for name, count in zip(doc["class_names"], doc["class_counts"], strict=True):
        lines.append(f"  {name:<{width}}  {count}")
    params = ", ".join(f"{k}={v}" for k, v in sorted(prov["params"].items()))
    lines += [
        f"builder       {prov['builder_version']}, strategy {prov['strategy']}"
        + (f" ({params})" if params else ""),
        "accuracy est. " + ("n/a" if acc is None else f"{100 * acc:.1f} %"),
        f"created       {when(prov['created_at'])}",
        f"expires       {when(prov['expires_at'])}" + (" (EXPIRED)" if doc["expired"] else ""),
    ]
    if prov["note"]:
        lines.append(f"note          {prov['note']}")
    return "\n".join(lines)


def handle_inspect(args: argparse.Namespace) -> int:
    import json

    from plada.errors import KeyFileError, PayloadError
    from plada.payload import inspect_payload, read_payload_file
    from plada.signing import load_trusted_keys

    try:
        trusted = load_trusted_keys(args.trusted_key)
        data = read_payload_file(args.file)  # bounded: a 1 GiB file is refused after one read
        info = inspect_payload(data, trusted_keys=trusted)
    except KeyFileError as exc:
        print(f"plada payload inspect: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except OSError as exc:
        print(f"plada payload inspect: {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_UNREADABLE
    except PayloadError as exc:
        print(f"plada payload inspect: {args.file}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    doc = info_to_json(info)
    print(json.dumps(doc, indent=2) if args.json else _human(doc))
    if doc["valid"]:
        return EXIT_OK
    why = "expired" if info.expired else f"signature {info.signature}"
    hint = (
        "" if args.trusted_key or info.signature != "unknown-key" else " (no --trusted-key given)"
    )
    print(
        f"plada payload inspect: {args.file}: a device would refuse it: {why}{hint}",
        file=sys.stderr,
    )
    return EXIT_REFUSED
