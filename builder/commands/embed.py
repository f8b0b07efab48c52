"""`plada-build embed`: embed a reference corpus once per encoder into the resumable cache.

plada-build embed --corpus data/ref-v1 --encoder lite0-64            # whole corpus
plada-build embed --corpus data/ref-v1 --encoder lite0-64 --shard 3/8  # one shard of 8
plada-build embed --corpus data/ref-v1 --encoder lite0-64 --merge      # join the shards
plada-build embed --corpus data/ref-v1 --encoder build/enc/lite0-64-int8.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path("data/cache/embeddings")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "embed",
        help="embed a reference corpus into the per-encoder cache (resumable, shardable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--corpus", type=Path, required=True, help="reference corpus folder")
    parser.add_argument(
        "--encoder",
        required=True,
        help="encoder spec (lite0-64, lite1-96, lite0-64-int8) or an exported .onnx file",
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help=f"cache root (default {DEFAULT_CACHE})"
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="auto: torch for float specs, ONNX Runtime for -int8 specs and .onnx files",
    )
    parser.add_argument(
        "--encoder-dir",
        type=Path,
        default=None,
        help="where exported ONNX encoders for specs are kept (default ~/.cache/plada/encoders)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument(
        "--block-size",
        type=int,
        default=2048,
        help="images per cache block, the unit of resumption and sharding (new caches only)",
    )
    parser.add_argument(
        "--shard",
        default=None,
        help="embed only shard i of n (`i/n`), or `env` to read RANK/WORLD_SIZE (torchrun) or "
        "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT; then run --merge once",
    )
    parser.add_argument(
        "--merge", action="store_true", help="join finished shards into features.npy"
    )
    parser.add_argument("--status", action="store_true", help="print cache progress, embed nothing")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device (cpu, cuda:0); `local-rank` = cuda:$LOCAL_RANK under torchrun",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.set_defaults(func=handler)


def _shard(args: argparse.Namespace) -> tuple[int, int] | None:
    from builder.features.embed import parse_shard, shard_from_env

    if args.merge and args.shard:
        raise SystemExit("plada-build embed: --merge and --shard exclude each other")
    if args.shard != "env":
        return parse_shard(args.shard) if args.shard else None
    shard = shard_from_env()
    if shard is None:
        raise SystemExit(
            "plada-build embed: --shard env, but neither RANK/WORLD_SIZE nor "
            "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT is set"
        )
    return shard


def _embed(args: argparse.Namespace, shard: tuple[int, int] | None) -> dict[str, Any]:
    """Status, merge or embed, as asked; the JSON summary."""
    from builder.encoders.load import load_encoder
    from builder.features.embed import cache_dir, cache_status, embed_corpus, merge_embeddings
    from plada.corpus import Corpus

    corpus = Corpus.open(args.corpus)
    device = args.device
    if device == "local-rank":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    encoder = load_encoder(
        args.encoder,
        encoder_dir=args.encoder_dir,
        backend=args.backend,
        threads=args.threads,
        device=device,
    )
    summary: dict[str, Any] = {
        "corpus": str(args.corpus),
        "corpus_fingerprint": corpus.fingerprint,
        "num_images": len(corpus),
        "encoder": encoder.id,
        "cache_key": encoder.cache_key,
        "feature_dim": encoder.feature_dim,
        "cache_dir": str(cache_dir(args.cache, corpus, encoder)),
        "shard": list(shard) if shard else None,
    }
    started = time.perf_counter()
    if args.status:
        status = cache_status(corpus, encoder, cache_root=args.cache)
        summary["status"] = status.to_json() if status else None
    elif args.merge:
        summary["shape"] = list(merge_embeddings(corpus, encoder, cache_root=args.cache).shape)
    else:
        features = embed_corpus(
            corpus,
            encoder,
            cache_root=args.cache,
            batch_size=args.batch_size,
            block_size=args.block_size,
            shard=shard,
            progress=not args.no_progress,
        )
        summary["shape"] = list(features.shape)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


def handler(args: argparse.Namespace) -> int:
    from builder.errors import BuilderError
    from plada.errors import PladaError

    try:
        shard = _shard(args)
        summary = _embed(args, shard)
    except (BuilderError, PladaError) as exc:
        print(f"plada-build embed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    what = "status" if args.status else "merged" if args.merge else "embedded"
    if shard:
        what += f" shard {shard[0]}/{shard[1]} of"
    print(
        f"{what}: {summary['num_images']} images, encoder {summary['encoder']} "
        f"(D={summary['feature_dim']}) -> {summary['cache_dir']}"
        + (f" shape {tuple(summary['shape'])}" if "shape" in summary else "")
        + f" in {summary['seconds']:.1f} s"
    )
    return 0
