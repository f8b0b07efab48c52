"""Markdown and plots from the benchmark results: bench/results/summary.md, the README's Results
section and the PNGs. Pure functions of the results (every number comes from the JSON files the
benchmark modules wrote, read back through bench/results.py); one module per section. The
renderer is tested on a tiny fake results dict."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.render import plots
from bench.render.accuracy import accuracy_lines
from bench.render.alternatives import alternatives_lines
from bench.render.builder_warm import builder_warm_lines
from bench.render.codec import codec_lines
from bench.render.corpus_scale import corpus_scale_lines
from bench.render.device import device_lines
from bench.render.device_budget import device_budget_lines
from bench.render.embed import embed_lines
from bench.render.fleet import fleet_lines
from bench.render.fleet_targets import fleet_targets_lines
from bench.render.header import header_lines
from bench.render.hetero import hetero_lines
from bench.render.multitask import multitask_lines
from bench.render.reading import reading_lines
from bench.schema import BenchResults
from bench.schema.comparisons import AlternativesResults

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


def render_markdown(results: Mapping[str, Any], plot_paths: Mapping[str, str]) -> str:
    typed = BenchResults.parse(results)
    lines: list[str] = []
    lines += header_lines(typed.meta)
    lines += reading_lines(typed)
    lines += accuracy_lines(typed.accuracy, plot_paths)
    lines += hetero_lines(typed.hetero, plot_paths)
    alternatives = (
        typed.alternatives if isinstance(typed.alternatives, AlternativesResults) else None
    )
    lines += fleet_targets_lines(typed.fleet_targets, plot_paths, alternatives)
    lines += alternatives_lines(typed.alternatives, plot_paths)
    lines += codec_lines(typed.codec, typed.accuracy)
    lines += device_lines(typed.device, typed.corpus, typed.accuracy)
    if typed.budget is not None:  # shown once bench.device_budget has run
        lines += device_budget_lines(typed.budget)
    if typed.builder_warm is not None:  # shown once bench.builder_warm has run
        lines += builder_warm_lines(typed.builder_warm)
    if typed.embed is not None:  # shown once bench.embed_pipeline has run
        lines += embed_lines(typed.embed)
    lines += multitask_lines(typed.multitask)
    lines += fleet_lines(typed.fleet, plot_paths, nproc=typed.meta.machine.nproc)
    if typed.corpus_scale is not None:  # shown once bench.corpus_scale has run
        lines += corpus_scale_lines(typed.corpus_scale, plot_paths)
    return "\n".join(lines).rstrip() + "\n"


def make_plots(results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """PNG plots (matplotlib Agg) of whichever sections exist; {name: path}."""
    return plots.make_plots(BenchResults.parse(results), out_dir)


def replace_between_markers(text: str, body: str) -> str:
    """`text` with everything between the results markers replaced by `body`."""
    if README_START not in text or README_END not in text:
        raise ValueError(f"README has no {README_START} ... {README_END} markers")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{body.rstrip()}\n{README_END}{tail}"
