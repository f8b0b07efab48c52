"""`plada-agent warm-cache --config FILE`: embed the whole local corpus into the feature cache.

Run once after installing a corpus or encoder (the daemon also does it when idle). Resumable:
interrupt it at any time and run it again; finished blocks are kept. Caches of another corpus or
encoder under the cache dir are removed. A corrupt corpus image stops it with exit 74, naming the
image (`plada corpus verify` names them all).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from agent.commands._common import EXIT_OK, add_command, print_json, report_error

if TYPE_CHECKING:
    from agent.config import AgentConfig


def register(sub: Any) -> None:
    add_command(
        sub,
        "warm-cache",
        help="embed the whole local corpus once (resumable)",
        description=__doc__,
        handler=handler,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def handler(args: argparse.Namespace, config: AgentConfig) -> int:
    from agent.errors import AgentError
    from agent.pipeline import open_corpus, open_feature_cache
    from plada.errors import PladaError

    def progress(done: int, total: int) -> None:
        if not args.json:
            print(f"\rblocks {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        corpus = open_corpus(config)
        cache = open_feature_cache(config, corpus)
        removed = cache.remove_stale()
        report = cache.warm(progress=progress)
    except (AgentError, PladaError, OSError) as exc:
        if not args.json:
            print(file=sys.stderr)  # end the progress line
        return report_error(exc)
    if not args.json and report.blocks_computed:
        print(file=sys.stderr)
    rate = report.images_embedded / report.seconds if report.seconds > 0 else 0.0
    if args.json:
        print_json(
            {
                "cache": str(report.path),
                "images": len(corpus),
                "blocks_total": report.blocks_total,
                "blocks_computed": report.blocks_computed,
                "images_embedded": report.images_embedded,
                "seconds": round(report.seconds, 3),
                "images_per_second": round(rate, 1),
                "stale_removed": [str(p) for p in removed],
            }
        )
    else:
        print(
            f"feature cache {report.path}: {report.blocks_total} blocks, "
            f"{report.blocks_computed} computed now ({report.images_embedded} images, "
            f"{report.seconds:.1f} s, {rate:.0f} img/s); removed {len(removed)} stale cache(s)"
        )
    return EXIT_OK
