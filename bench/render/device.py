"""### Device cost: encoder throughput, cold cache, payload to model; builder and corpus costs."""

from __future__ import annotations

from bench.render.text import error_line, mean_of, num, table
from bench.schema import SectionError
from bench.schema.accuracy import AccuracyResults
from bench.schema.system import CorpusResults, DeviceResults


def _device(dev: DeviceResults) -> list[str]:
    enc = dev.encoder_images_per_second
    rows = []
    for name, value in enc.items():
        if name.endswith("_vs_torch"):
            continue
        vs_torch = enc.get(f"{name}_vs_torch")
        rows.append([name, f"{value:,.0f}", f"{vs_torch:.2f}x" if vs_torch else "1.00x (baseline)"])
    lines = [f"Encoder {dev.encoder}, 2 threads, batch 32.", ""]
    lines += table(["backend", "images/s", "vs torch eager"], rows)
    if dev.tflite != "measured":
        lines += [f"- TFLite {dev.tflite}", ""]
    warm = dev.warm_cache
    if warm:
        rate = warm.images / warm.seconds if warm.seconds else float("nan")
        source = "ref-v1" if dev.cache_corpus.is_ref_v1 else "the small corpus plus mirrored copies"
        lines += [
            f"Feature cache built from cold for {dev.cache_corpus.images:,} images "
            f"({source}): **{warm.seconds:.0f} s** ({rate:,.0f} images/s).",
            "",
        ]
    rows = [
        [
            backend,
            f"{r.kept_images:,}",
            f"{r.payload_to_model_seconds:.2f}",
            f"{r.train_seconds:.2f}",
            f"{r.peak_rss_mb:.0f}",
        ]
        for backend, r in dev.apply_5000_warm_cache.items()
    ]
    lines += ["Payload to stored model, warm cache, the real `plada-agent apply` CLI:", ""]
    lines += table(
        ["head backend", "kept images", "payload -> model s", "training s", "peak RSS MB"], rows
    )
    if dev.float16_cache_cost:
        lines += [
            "float16 feature cache, accuracy change vs float32: "
            + ", ".join(
                f"{t} {r.delta_points:+.2f} points" for t, r in dev.float16_cache_cost.items()
            )
            + ".",
            "",
        ]
    return lines


def _builder(acc: AccuracyResults) -> list[str]:
    secs = [mean_of(b.seconds) for res in acc.tasks.values() for b in res.summary.budgets]
    known = [s for s in secs if s is not None]
    rss = [r.peak_rss_mb for res in acc.tasks.values() for r in res.auto_runs]
    if not known:
        return []
    return [
        f"Builder, warm embedding cache: one `--auto` task (teacher, scores, candidates, "
        f"k-fold validation, signed payload, simulation) took {min(known):.0f} to "
        f"{max(known):.0f} s (mean per budget); peak RSS of the whole benchmark "
        f"process {max(rss):,.0f} MB.",
        "",
    ]


def device_lines(
    dev: DeviceResults | SectionError | None,
    corpus: CorpusResults | SectionError | None,
    acc: AccuracyResults | SectionError | None,
) -> list[str]:
    lines = ["### Device cost", ""]
    lines += _device(dev) if isinstance(dev, DeviceResults) else error_line("bench.device", dev)
    if isinstance(acc, AccuracyResults):
        lines += _builder(acc)
    if isinstance(corpus, CorpusResults):
        lines += [
            f"Corpus ({corpus.corpus.num_images:,} images, bench/corpus.py): "
            f"{num(corpus.random_reads.image_per_s)} random image reads/s, verify "
            f"{num(corpus.verify.images_per_s)} images/s, build {num(corpus.build.build_s)} s.",
            "",
        ]
    elif corpus is not None:
        lines += error_line("bench.corpus", corpus)
    return lines
