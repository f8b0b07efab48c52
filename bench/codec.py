"""Codec benchmark: paper codec vs the best codec vs the bound, on seeded synthetic selections.

    make bench-codec   # = .venv/bin/python -m bench.codec --out bench/results/codec.json

Cases (all seeded):
- (a) N = 14,197,122 (ImageNet-21K), k = 1 %, uniformly random indices, 10 / 100 uniform classes.
- (b) the same N and k, clustered as a synset-ordered corpus gives: 21,000 "synsets" of ~676
  images, each with one pseudo-label; 90 % of the selection comes from 400 relevant synsets at
  uneven densities, 10 % is scattered over the whole corpus; labels follow the synset.
- (c) N = 100,000 at k = 0.5, 1, 5 and 25 %, uniform, 10 classes.

Sizes are the selection bytes (the codec output); the envelope adds ~0.5 KiB of CBOR, names and
signature. bound = log2 C(N, k) + k * H(labels), the cost of an unstructured selection. The table
goes to the README between the codec-table markers.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from plada.atomic import write_text_atomic
from plada.codecs import CODECS, decode_selection, encode_selection

IMAGENET21K = 14_197_122
NUM_SYNSETS = 21_000
README_START = "<!-- codec-table:start -->"
README_END = "<!-- codec-table:end -->"


def bound_bytes(n: int, labels: np.ndarray, num_classes: int) -> float:
    """(log2 C(n, k) + k * H(labels)) / 8, H the empirical label entropy."""
    k = len(labels)
    log2_choose = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)
    p = np.bincount(labels, minlength=num_classes) / max(k, 1)
    p = p[p > 0]
    return (log2_choose + k * float(-(p * np.log2(p)).sum())) / 8


def uniform_case(n: int, k: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
    return indices, rng.integers(0, num_classes, size=k).astype(np.int64)


def _water_fill(total: float, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Split `total` in proportion to weights, no share above its cap (full synsets spill over)."""
    share = np.zeros(len(weights))
    free = np.ones(len(weights), dtype=bool)
    while free.any():
        left = total - share[~free].sum()
        share[free] = left * weights[free] / weights[free].sum()
        over = free & (share >= caps)
        if not over.any():
            break
        share[over] = caps[over]
        free &= ~over
    out: np.ndarray = np.minimum(np.round(share), caps).astype(np.int64)
    return out


def clustered_case(n: int, k: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synset-ordered corpus: contiguous synsets, one label each, selection concentrated in few."""
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, n, NUM_SYNSETS + 1).astype(np.int64)  # ~676 images per synset
    synset_label = rng.integers(0, num_classes, size=NUM_SYNSETS)
    relevant = rng.choice(NUM_SYNSETS, size=400, replace=False)
    weights = rng.gamma(0.7, size=len(relevant))  # uneven densities, some synsets nearly full
    want = _water_fill(0.9 * k, weights, bounds[relevant + 1] - bounds[relevant])
    parts = [
        bounds[s] + rng.choice(bounds[s + 1] - bounds[s], size=int(m), replace=False)
        for s, m in zip(relevant, want, strict=True)
    ]
    chosen = np.unique(np.concatenate(parts))
    rest = np.setdiff1d(rng.choice(n, size=2 * k, replace=False), chosen)
    scattered = rng.choice(rest, size=k - len(chosen), replace=False)
    indices = np.sort(np.concatenate((chosen, scattered))).astype(np.int64)
    synset = np.searchsorted(bounds, indices, side="right") - 1
    return indices, synset_label[synset].astype(np.int64)


def cases() -> list[tuple[str, int, int, int, tuple[np.ndarray, np.ndarray]]]:
    """(case, n, k, num_classes, (indices, labels))."""
    k21 = IMAGENET21K // 100
    out = []
    for c in (10, 100):
        out.append(("a-uniform", IMAGENET21K, k21, c, uniform_case(IMAGENET21K, k21, c, seed=c)))
    for c in (10, 100):
        out.append(
            ("b-clustered", IMAGENET21K, k21, c, clustered_case(IMAGENET21K, k21, c, seed=c))
        )
    for pct in (0.5, 1, 5, 25):
        k = int(100_000 * pct / 100)
        out.append((f"c-{pct:g}%", 100_000, k, 10, uniform_case(100_000, k, 10, seed=k)))
    return out


def _time(fn: Any, repeats: int) -> tuple[Any, float]:
    """(result, fastest of `repeats` wall times): the machine is shared, the minimum is the cost."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, min(times)


def run_case(
    case: str, n: int, num_classes: int, indices: np.ndarray, labels: np.ndarray, repeats: int
) -> dict[str, Any]:
    k = len(indices)
    sizes = {
        name: len(encode_selection(indices, labels, n=n, num_classes=num_classes, codecs=[name])[1])
        for name in CODECS
    }
    (best, data), encode_s = _time(
        lambda: encode_selection(indices, labels, n=n, num_classes=num_classes), 1
    )
    decoded, decode_s = _time(
        lambda: decode_selection(best, data, n=n, num_classes=num_classes, k=k), repeats
    )
    if not (np.array_equal(decoded[0], indices) and np.array_equal(decoded[1], labels)):
        raise AssertionError(f"{case}: {best} did not round-trip")
    bound = bound_bytes(n, labels, num_classes)
    return {
        "case": case,
        "n": n,
        "k": k,
        "num_classes": num_classes,
        "paper_bytes": sizes["paper"],
        "best_bytes": len(data),
        "best_codec": best,
        "bound_bytes": round(bound),
        "best_vs_bound": round(len(data) / bound, 4),
        "best_vs_paper": round(len(data) / sizes["paper"], 4),
        "encode_s": round(encode_s, 3),
        "decode_s": round(decode_s, 4),
        "codec_bytes": sizes,
    }


def render_table(rows: list[dict[str, Any]]) -> str:
    """The README table (Markdown), generated from the JSON rows."""
    lines = [
        "| case | N | k | C | paper | best | codec | bound | best/bound | best/paper "
        "| encode s | decode ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['n']:,} | {r['k']:,} | {r['num_classes']} | {r['paper_bytes']:,} "
            f"| {r['best_bytes']:,} | `{r['best_codec']}` | {r['bound_bytes']:,} "
            f"| {r['best_vs_bound']:.3f} | {r['best_vs_paper']:.3f} | {r['encode_s']:.2f} "
            f"| {1000 * r['decode_s']:.0f} |"
        )
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text, mode=0o644)


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between the codec-table markers; False if the markers are missing."""
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    _write_atomic(readme, f"{head}{README_START}\n{table}\n{README_END}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/results/codec.json"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--repeats", type=int, default=7, help="decode timings (fastest of)")
    args = parser.parse_args(argv)
    rows = []
    for case, n, _k, num_classes, (indices, labels) in cases():
        row = run_case(case, n, num_classes, indices, labels, args.repeats)
        print(
            f"{case:12s} C={num_classes:<3d} k={row['k']:<7d} paper {row['paper_bytes']:>8d}"
            f"  best {row['best_bytes']:>8d} ({row['best_codec']})  bound {row['bound_bytes']:>8d}"
            f"  decode {1000 * row['decode_s']:.0f} ms",
            flush=True,
        )
        rows.append(row)
    _write_atomic(args.out, json.dumps(rows, indent=2) + "\n")
    table = render_table(rows)
    if args.readme.exists() and update_readme(args.readme, table):
        print(f"updated the codec table in {args.readme}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
