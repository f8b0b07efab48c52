"""`plada corpus build|info|verify|leakage`: make, describe and check reference corpora.

Exit codes: 0 fine; 1 the check found problems (corrupt/missing images, leaked target images);
2 the input cannot be used at all (no corpus, bad manifest, unreadable importer input).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_BAD_INPUT = 2
_MAX_TEXT_PROBLEMS = 100


class _SourceAction(argparse.Action):
    """Collect importers in command-line order: args.sources = [(kind, name, path), ...]."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        kind = self.dest
        text = str(values)
        name, sep, path = text.partition("=")
        if not sep:
            name, path = "", text
        found = list(getattr(namespace, "sources", None) or [])
        found.append((kind, name, path))
        namespace.sources = found


def register(sub: Any) -> None:
    # Every `plada corpus` subcommand and its flags in one flat block (longer than 60 lines on
    # purpose: argparse definitions read best in one place).
    parser: argparse.ArgumentParser = sub.add_parser(
        "corpus",
        help="build, describe, verify reference corpora; check target leakage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    corpus_sub = parser.add_subparsers(dest="corpus_command", required=True, metavar="ACTION")

    build = corpus_sub.add_parser(
        "build",
        help="build a corpus from importers, concatenated in command-line order",
        description="Build a corpus. Each importer option adds one source, in the order given; "
        "write NAME=PATH to name the source (default: the importer kind). The same inputs give "
        "the same fingerprint on any machine. The corpus is written to a temporary folder and "
        "renamed into place.",
    )
    build.add_argument("--out", type=Path, required=True, help="corpus folder to create")
    for flag, dest, what in (
        ("--imagefolder", "imagefolder", "every image under a folder, by relative path"),
        ("--idx", "idx", "an IDX image file (MNIST style, .gz allowed)"),
        ("--list", "filelist", "a text file naming image files, one per line"),
        ("--corpus", "corpus", "all images of an existing corpus (keeps its source names)"),
        (
            "--derive",
            "derive",
            "--derive-count images made from an existing corpus by index-seeded crops, flips, "
            "rotations and rescales (plada/corpus/derived.py; key = base index + transform)",
        ),
    ):
        build.add_argument(flag, dest=dest, action=_SourceAction, metavar="[NAME=]PATH", help=what)
    build.add_argument(
        "--derive-count", type=int, default=None, metavar="N", help="images per --derive source"
    )
    build.add_argument(
        "--derive-seed", type=int, default=0, metavar="S", help="seed of --derive (default 0)"
    )
    build.add_argument(
        "--images-per-shard", type=int, default=10_000, help="images per zip shard (default 10000)"
    )
    build.add_argument("--force", action="store_true", help="replace an existing --out folder")
    build.add_argument("--json", action="store_true", help="print the new corpus's info as JSON")
    build.set_defaults(func=handle_build, sources=[])

    info = corpus_sub.add_parser(
        "info",
        help="fingerprint, size, sources and bytes on disk of a corpus",
        description="Print a corpus's fingerprint, number of images, sources (name and count, "
        "in order), shards and bytes on disk. Opening checks the manifest and index hashes.",
    )
    info.add_argument("dir", type=Path, metavar="DIR", help="corpus folder")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=handle_info)

    verify = corpus_sub.add_parser(
        "verify",
        help="check every image's hash; name each corrupt or missing index",
        description="Check every stored image against its sha256 (and with --deep, decode it "
        "and check its pixels against the manifest). Names each corrupt or missing index; "
        "exits 1 when anything is wrong.",
    )
    verify.add_argument("dir", type=Path, metavar="DIR", help="corpus folder")
    verify.add_argument("--deep", action="store_true", help="also decode and check pixels")
    verify.add_argument(
        "--shard-hashes", action="store_true", help="also hash each whole shard file"
    )
    verify.add_argument(
        "--fingerprint", metavar="HEX", help="fail unless the corpus has this fingerprint"
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(func=handle_verify)

    leakage = corpus_sub.add_parser(
        "leakage",
        help="count target images that are in the corpus (exact or near copies)",
        description="Count images under TARGET_DIR that are in the corpus: exactly (same "
        "pixels) or nearly (256-bit perceptual hash within --threshold bits: the same picture "
        "resized, recoloured or re-encoded). JSON keys: overlap (exact + near), exact, near, "
        "examples. Exits 1 when overlap > 0.",
    )
    leakage.add_argument("corpus_dir", type=Path, metavar="CORPUS_DIR", help="corpus folder")
    leakage.add_argument("target_dir", type=Path, metavar="TARGET_DIR", help="images to check")
    leakage.add_argument(
        "--threshold",
        type=int,
        default=None,
        help="Hamming distance (of 256 bits) that still counts as near "
        "(default: plada.corpus.leakage.DEFAULT_NEAR_THRESHOLD, 40)",
    )
    leakage.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where corpus hashes are cached (default: ~/.cache/plada/leakage)",
    )
    leakage.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    leakage.add_argument("--json", action="store_true", help="print one JSON object")
    leakage.set_defaults(func=handle_leakage)


def _fail(command: str, exc: Exception) -> int:
    print(f"plada corpus {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT


def handle_build(args: argparse.Namespace) -> int:
    from plada.corpus import (
        CorpusSource,
        DerivedSource,
        FileListSource,
        ImageFolderSource,
        ImageSource,
        build_corpus,
        idx_source,
    )
    from plada.errors import CorpusError

    if not args.sources:
        print(
            "plada corpus build: give at least one of --imagefolder, --idx, --list, --corpus, "
            "--derive",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    derives = any(kind == "derive" for kind, _, _ in args.sources)
    if derives != (args.derive_count is not None):
        print(
            "plada corpus build: --derive-count is "
            + ("required with --derive" if derives else "only meaningful with --derive"),
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        sources: list[ImageSource] = []
        for kind, name, raw in args.sources:
            path = Path(raw)
            if kind == "imagefolder":
                sources.append(ImageFolderSource(path, name=name or "imagefolder"))
            elif kind == "idx":
                sources.append(idx_source(path, name=name or "idx"))
            elif kind == "filelist":
                sources.append(FileListSource.from_list_file(path, name=name or "filelist"))
            elif kind == "derive":
                sources.append(
                    DerivedSource(path, args.derive_count, seed=args.derive_seed, name=name)
                )
            else:
                sources.append(CorpusSource(path))
        corpus = build_corpus(
            sources, args.out, images_per_shard=args.images_per_shard, overwrite=args.force
        )
    except CorpusError as exc:
        return _fail("build", exc)
    doc = corpus.info()
    print(json.dumps(doc, indent=2) if args.json else _info_text(doc))
    return EXIT_OK


def _info_text(doc: dict[str, Any]) -> str:
    lines = [
        f"corpus        {doc['path']}",
        f"fingerprint   {doc['fingerprint']}",
        f"images        {doc['num_images']} in {doc['num_shards']} shards",
        f"on disk       {doc['bytes_on_disk']} bytes ({doc['bytes_on_disk'] / 1e6:.1f} MB)",
        "sources:",
    ]
    width = max((len(s["name"]) for s in doc["sources"]), default=0)
    for s in doc["sources"]:
        end = s["start"] + s["count"] - 1
        lines.append(f"  {s['name']:<{width}}  {s['count']:>8}   [{s['start']}..{end}]")
    return "\n".join(lines)


def handle_info(args: argparse.Namespace) -> int:
    from plada.corpus import Corpus
    from plada.errors import CorpusError

    try:
        corpus = Corpus.open(args.dir)
    except CorpusError as exc:
        return _fail("info", exc)
    doc = corpus.info()
    print(json.dumps(doc, indent=2) if args.json else _info_text(doc))
    return EXIT_OK


def handle_verify(args: argparse.Namespace) -> int:
    from plada.corpus import Corpus
    from plada.errors import CorpusError

    try:
        corpus = Corpus.open(args.dir, check_shards=False, expected_fingerprint=args.fingerprint)
    except CorpusError as exc:
        return _fail("verify", exc)

    def progress(done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

    report = corpus.verify(deep=args.deep, check_shard_hashes=args.shard_hashes, progress=progress)
    if not args.json and sys.stderr.isatty():
        print(file=sys.stderr)
    doc = {"path": str(args.dir), "fingerprint": corpus.fingerprint, **report.to_json()}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        rate = report.num_images / report.seconds if report.seconds > 0 else 0.0
        lines = _problem_lines(report.problems)
        for line in lines[:_MAX_TEXT_PROBLEMS]:
            print(f"BAD  {line}")
        if len(lines) > _MAX_TEXT_PROBLEMS:
            more = len(lines) - _MAX_TEXT_PROBLEMS
            print(f"... and {more} more problems (use --json for all)")
        status = "OK" if report.ok else f"FAILED: {len(report.bad_indices)} bad images"
        print(
            f"{status}  {report.num_checked}/{report.num_images} images checked"
            f"{' (deep)' if args.deep else ''} in {report.seconds:.2f} s ({rate:.0f}/s), "
            f"fingerprint {corpus.fingerprint}"
        )
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _problem_lines(problems: list[Any]) -> list[str]:
    """One line per problem, except that the images of a missing or truncated shard are one line
    per shard (a missing 10,000-image shard is one problem to fix, not 10,000)."""
    per_shard: dict[tuple[str, str | None], list[int]] = {}
    lines: list[str] = []
    for problem in problems:
        if problem.index is not None and problem.kind in ("missing", "truncated"):
            per_shard.setdefault((problem.kind, problem.file), []).append(problem.index)
        else:
            lines.append(problem.message)
    for (kind, file), indices in per_shard.items():
        span = f"image {indices[0]}" if len(indices) == 1 else f"images {indices[0]}..{indices[-1]}"
        lines.append(f"{span} ({len(indices)}) unreadable: shard {file} is {kind}")
    return lines


def handle_leakage(args: argparse.Namespace) -> int:
    from plada.corpus import Corpus
    from plada.corpus.leakage import DEFAULT_NEAR_THRESHOLD, check_leakage, default_cache_dir
    from plada.errors import CorpusError

    threshold = DEFAULT_NEAR_THRESHOLD if args.threshold is None else args.threshold
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    try:
        corpus = Corpus.open(args.corpus_dir)
        report = check_leakage(corpus, args.target_dir, threshold=threshold, cache_dir=cache_dir)
    except CorpusError as exc:
        return _fail("leakage", exc)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for leak in report.leaks[:_MAX_TEXT_PROBLEMS]:
            how = "exact" if leak.exact else f"near (distance {leak.distance})"
            print(f"LEAK  {leak.target}  ~ corpus image {leak.corpus_index}  {how}")
        print(
            f"overlap {report.overlap} of {report.num_target_images} target images "
            f"(exact {report.exact}, near {report.near}, threshold {threshold}/256)"
        )
    return EXIT_OK if report.overlap == 0 else EXIT_PROBLEMS
