"""`plada-build export-encoder`: export a device encoder to ONNX (fp32 or int8) with a parity check.

    plada-build export-encoder --model lite0 --size 64 --int8 --out build/encoders
    -> build/encoders/lite0-64-int8.onnx + lite0-64-int8.json

The check runs PyTorch and ONNX Runtime on real photos: fp32 max abs diff <= 1e-4, int8 mean
cosine >= 0.99; a failure exits 1 and writes nothing.

--tflite also writes <id>.tflite (fp32), run on LiteRT as the agent runs it and checked the same
way (max abs diff <= 1e-3); --tflite-only writes just that, beside an existing ONNX export (made if
missing). Both need litert-torch, which lives in its own environment: `make setup-litert`, then
run `.venv-litert/bin/plada-build`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plada.encoders import EncoderSpec


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "export-encoder",
        help="export a device encoder (ONNX fp32/int8, TFLite if available) with parity check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="encoder model: lite0, lite1 or lite2")
    parser.add_argument("--size", type=int, required=True, help="input size in pixels, e.g. 64")
    parser.add_argument("--int8", action="store_true", help="int8 static quantisation (QDQ)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--calibration-corpus",
        type=Path,
        default=None,
        help="calibrate int8 on images of this corpus (evenly spaced) plus real photos",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=128,
        help="number of corpus images for calibration (with --calibration-corpus)",
    )
    parser.add_argument(
        "--float-blocks",
        type=int,
        default=None,
        help="int8: keep this many leading units (stem, block 0, ...) in float; "
        "default: search 0.. until the cosine clears its target",
    )
    tflite = parser.add_mutually_exclusive_group()
    tflite.add_argument("--tflite", action="store_true", help="also write <id>.tflite")
    tflite.add_argument(
        "--tflite-only",
        action="store_true",
        help="write only <id>.tflite, keeping a valid ONNX export already in --out",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from builder.errors import BuilderError
    from plada.encoders import EncoderSpec
    from plada.errors import PladaError

    try:
        spec = EncoderSpec(args.model, args.size, args.int8)
        from builder.encoders.export import export_encoder
        from builder.encoders.tflite import export_tflite, require_tflite_export

        if args.tflite or args.tflite_only:
            require_tflite_export(spec)  # says why it cannot, before any work
        if args.tflite_only:
            return _tflite_only(spec, args)
        calibration, label = _calibration_images(args)

        result = export_encoder(
            spec,
            args.out,
            calibration_images=calibration,
            float_blocks=args.float_blocks,
            calibration=label,
        )
        summary = result.to_json()
        if args.tflite:
            summary["tflite"] = export_tflite(spec, args.out).to_json()
    except (BuilderError, PladaError) as exc:
        print(f"plada-build export-encoder: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        parity = ", ".join(f"{k} {v:.3g}" for k, v in (result.info.parity or {}).items())
        print(
            f"wrote {result.path} (D={result.info.feature_dim}; {parity}) in {result.seconds:.1f} s"
        )
        if args.tflite:
            _print_tflite(summary["tflite"])
    return 0


def _tflite_only(spec: EncoderSpec, args: argparse.Namespace) -> int:
    """--tflite-only: the .tflite beside a kept (or new) ONNX export, whose sidecar it shares."""
    from builder.encoders.export import ensure_exported
    from builder.encoders.tflite import export_tflite

    ensure_exported(spec, out_dir=args.out)
    summary = export_tflite(spec, args.out).to_json()
    if args.json:
        print(json.dumps({"tflite": summary}, indent=2))
    else:
        _print_tflite(summary)
    return 0


def _print_tflite(summary: dict[str, Any]) -> None:
    parity = ", ".join(f"{k} {v:.3g}" for k, v in summary["parity"].items())
    print(f"wrote {summary['path']} ({parity}) in {summary['seconds']:.1f} s")


def _calibration_images(args: argparse.Namespace) -> tuple[list[Any] | None, str]:
    """(calibration images, their name for the sidecar and the embedding cache key)."""
    from plada.encoders import DEFAULT_CALIBRATION

    if args.calibration_corpus is None:
        return None, DEFAULT_CALIBRATION
    import numpy as np

    from builder.encoders.parity import real_images
    from plada.corpus import Corpus

    corpus = Corpus.open(args.calibration_corpus)
    count = min(args.calibration_images, len(corpus))
    indices = np.linspace(0, len(corpus) - 1, num=count).round().astype(int)
    images = [*corpus.images(sorted(set(indices.tolist()))), *real_images(64, seed=1)]
    return images, f"corpus-{corpus.fingerprint[:8]}"
