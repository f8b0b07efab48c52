"""### Corpus scale: a derived corpus of 100k to 1M images through every stage, extrapolated to
ImageNet-21K's 14.2M."""

from __future__ import annotations

from collections.abc import Mapping

from bench.render.text import error_line, table
from bench.schema import SectionError
from bench.schema.corpus_scale import CorpusScaleResults, Fit, Measured, SizeRow


def _t(m: Measured | None) -> str:
    return "n/a" if m is None else f"{m.wall_s:,.1f}"


def _mem(m: Measured | None) -> str:
    return "n/a" if m is None else f"{m.peak_rss_mb:,.0f}"


def _row(r: SizeRow) -> list[str]:
    b, v, e, bu, c, w = r.build, r.verify, r.embed, r.builder, r.apply_cold, r.apply_warm
    return [
        f"{r.images:,}",
        f"{_t(b)} / {_mem(b)}" + (f" / {b.bytes_on_disk / 1e9:.2f}" if b else ""),
        f"{_t(v)}" + (f" ({v.images_per_s:,.0f}/s)" if v else ""),
        "n/a" if r.reads is None else f"{r.reads.open_s:.2f} / {r.reads.images_per_s:,.0f}",
        f"{_t(e)} / {_mem(e)}" + (f" ({e.images_per_s:,.0f}/s)" if e else ""),
        f"{_t(bu)} / {_mem(bu)}",
        "n/a"
        if w is None
        else f"{w.payload_to_model_s:.2f} / {w.user_s + w.sys_s:.2f} / {w.wall_s:.2f} / {_mem(w)}",
        "n/a" if c is None else f"{c.payload_to_model_s:.1f} / {_mem(c)}",
        _load(r),
    ]


def _load(r: SizeRow) -> str:
    loads = [m.loadavg_1m for m in (r.build, r.embed, r.builder, r.apply_warm) if m is not None]
    return "n/a" if not loads else f"{min(loads):.1f}-{max(loads):.1f}"


def _fit_row(f: Fit) -> list[str]:
    per = f.slope * 1e6
    return [f.what, f"{per:,.2f} {f.unit} per 1M images", f"{f.value:,.1f} {f.unit}"]


def corpus_scale_lines(
    result: CorpusScaleResults | SectionError | None, plot_paths: Mapping[str, str]
) -> list[str]:
    lines = ["### Corpus scale: 100k to 1M images", ""]
    if not isinstance(result, CorpusScaleResults):
        return lines + error_line("bench.corpus_scale", result)
    m, s, t = result.machine, result.settings, result.targets
    lines += [
        f"`make bench-corpus-scale` (`python -m bench.corpus_scale`, {result.date}, commit "
        f"{result.git_commit or '?'}). The corpora are made from ref-v1 "
        f"(`{s.base_fingerprint[:16]}...`) by `plada corpus build --derive data/ref-v1 "
        f"--derive-count N --derive-seed {s.seed}` (`plada/corpus/derived.py`): image i is base "
        "image i mod 83,480 cropped to 60-100 % of its sides, mirrored or not, turned by a "
        "multiple of 90 degrees and rescaled (bilinear) to a long side of 24-64 px, every "
        "parameter drawn from `default_rng([seed, i])`; its manifest key names the base image "
        "and the transform, and the same N and seed give the same fingerprint (a smaller "
        "corpus is a prefix of a larger one). Every stage is the real CLI in its own process "
        "under `/usr/bin/time` (peak RSS = the process's maximum resident set, mapped files "
        f"included). Embedding: `plada-build embed --encoder {s.encoder}` from an empty cache. "
        f"Builder: `plada-build task` on `{s.task}` with one teacher on the same encoder, "
        f"`--strategy {s.strategy}`, keep {s.kept:,}: scoring and selection over all N "
        "reference features, then validation, simulation and the leakage search (task images "
        f"from the image cache). Apply: `plada-agent apply` of that {s.kept:,}-index payload "
        "on a device with an empty feature cache (cold: every kept image embedded on demand), "
        "then again (warm: the rows the first apply stored, `agent/cache_rows.py`; the faster "
        "of two runs; s = payload to stored model inside the agent, CPU s = user + system of the "
        "whole process, interpreter start and imports included, wall s = the same in wall "
        f"time). Machine: {m.cpu_model}, {m.nproc or '?'} cores, {m.ram_gib or '?'} GiB, shared "
        "with other jobs and every stage at niceness 19, so wall times carry the load (load "
        "column: 1-minute load average at the stages' starts).",
        "",
    ]
    header = ["images", "build s / MB / GB", "verify s", "open s / random reads/s"]
    header += ["embed s / MB", "builder s / MB", "apply warm s / CPU s / wall s / MB"]
    header += ["apply cold s / MB", "load"]
    lines += table(header, [_row(r) for r in result.sizes])
    if "corpus_scale" in plot_paths:
        lines += [f"![corpus size]({plot_paths['corpus_scale']})", ""]
    lines += _commits(result)
    lines += _targets(result, t.builder_peak_rss_mb, t.apply_warm_s, t.apply_warm_rss_mb)
    lines += _builder_stages(result)
    lines += _accuracy(result)
    if result.extrapolation:
        lines += [
            f"**Extrapolated to ImageNet-21K's {result.extrapolation[0].at_images:,} images** "
            f"(least-squares lines through the {result.extrapolation[0].points} measured sizes, "
            "this machine, one process per stage):",
            "",
        ]
        lines += table(["what", "slope", "at 14.2M"], [_fit_row(f) for f in result.extrapolation])
    return lines + AT_SCALE_LINES


def _targets(result: CorpusScaleResults, rss_mb: float, warm_s: float, warm_mb: float) -> list[str]:
    big = max(result.sizes, key=lambda r: r.images)
    out = []
    if big.builder is not None:
        ok = "met" if big.builder.peak_rss_mb <= rss_mb else "MISSED"
        out.append(
            f"Targets at {big.images:,} images: builder peak RSS {big.builder.peak_rss_mb:,.0f} "
            f"MB (target <= {rss_mb:,.0f}: {ok})"
        )
    if big.apply_warm is not None:
        w = big.apply_warm
        ok = "met" if w.payload_to_model_s <= warm_s and w.peak_rss_mb <= warm_mb else "MISSED"
        out.append(
            f"warm apply of {w.kept:,} indices {w.payload_to_model_s:.2f} s payload to model "
            f"({w.wall_s:.2f} s for the whole process, interpreter start included), "
            f"{w.peak_rss_mb:,.0f} MB (target <= {warm_s:g} s and <= {warm_mb:g} MB: {ok})"
        )
    if big.apply_cold is not None:
        c = big.apply_cold
        out.append(
            f"cold, {c.features_computed:,} images embedded on demand: "
            f"{c.payload_to_model_s:.1f} s, {c.peak_rss_mb:,.0f} MB"
        )
    return ["; ".join(out) + ".", ""] if out else []


def _commits(result: CorpusScaleResults) -> list[str]:
    """Which commit measured which stages, when a re-run left more than one."""
    by_commit: dict[str, list[str]] = {}
    for r in result.sizes:
        for name in ("build", "verify", "reads", "embed", "builder", "apply_cold", "apply_warm"):
            m = getattr(r, name)
            if m is not None:
                by_commit.setdefault(m.git_commit or "?", []).append(f"{name} {r.images:,}")
    if len(by_commit) < 2:
        return []
    parts = [f"`{c}`: {', '.join(stages)}" for c, stages in by_commit.items()]
    return ["Stages by the commit that measured them: " + "; ".join(parts) + ".", ""]


def _accuracy(result: CorpusScaleResults) -> list[str]:
    """What the fixed strategy's payloads are worth: this section measures cost, not choice."""
    rows = [(r.images, r.builder.device_accuracy) for r in result.sizes if r.builder is not None]
    shown = [f"{n:,}: {100 * a:.1f} %" for n, a in rows if a is not None]
    if not shown:
        return []
    return [
        f"Simulated device accuracy on the target's test split ({', '.join(shown)}): the fixed "
        f"`{result.settings.strategy}` strategy keeps the images the teacher is most sure of "
        "whatever their class, and on a larger corpus more of them fall in one pseudo-class. "
        "The section measures cost at a fixed keep; choosing the strategy for accuracy is "
        "`--auto`'s job (not run at these sizes here).",
        "",
    ]


def _builder_stages(result: CorpusScaleResults) -> list[str]:
    """The builder's own stage timings (report.json) at each size."""
    timed = [(r.images, r.builder.stage_seconds) for r in result.sizes if r.builder is not None]
    timed = [(n, stages) for n, stages in timed if stages]
    if not timed:
        return []
    names = list(timed[-1][1])
    body = [[f"{n:,}", *(f"{stages.get(s, 0.0):.1f}" for s in names)] for n, stages in timed]
    return [
        "Builder stages (s, from each build's report.json):",
        "",
        *table(["images", *names], body),
    ]


AT_SCALE_LINES = [
    "",
    "What changes at 14.2M images (none of it measured here):",
    "",
    "- **Embedding is the cost that matters**: it grows linearly and a single 2-core box would "
    "take the time above; the cache is already built for this: `plada-build embed --shard i/n` "
    "(Slurm job arrays or torchrun, see Encoders) embeds contiguous block ranges on many nodes "
    "into one shared cache folder and `--merge` joins them, block by block, in bounded memory.",
    "- **Features on disk**: N x D x 4 bytes as float32, 73 GB for 14.2M x 1280 (the row of the "
    "table above); the builder reads them memory-mapped and streams every pass a chunk at a "
    "time (`builder/features/stream.py` hands the pages back), so its resident memory is the "
    "per-image arrays (logits, scores, labels: ~100 bytes an image) and the leakage search's "
    "projection rather than the feature matrix. Storing float16 would halve the disk.",
    "- **The leakage search** keeps an (N, 129) float32 PCA projection of the corpus in memory "
    "(516 bytes an image: 7.3 GB at 14.2M, most of the builder's extrapolated memory) and "
    "scans all of it for every test image; at that size it would move to disk or to an "
    "approximate-nearest-neighbour index (IVF/HNSW) built once per corpus and encoder.",
    "- **Corpus on disk and on devices**: the corpus grows linearly; 1,420 zip shards of 10,000 "
    "images, an index.bin of 680 MB and a manifest of ~1.8 GB (126 bytes a line), which "
    "`Corpus.open` hashes once and memory-maps (16 bytes per image resident). A device would "
    "hold a subset or a corpus it can stream; payload indices stay 32-bit (`plada/limits.py`: "
    "N < 2^32).",
    "- **The device** never reads the whole corpus: a payload's images are embedded on demand "
    "and kept as rows (`agent/cache_rows.py`), so apply cost follows the payload (k images), "
    "not N, apart from opening the corpus (hashing its manifest and index: linear in N).",
    "",
]
