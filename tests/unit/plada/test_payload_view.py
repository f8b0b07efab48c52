"""The payload's optional view field: absent means unchanged bytes, present round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest

from plada.commands.payload import info_to_json
from plada.errors import PayloadValueError
from plada.payload import decode_payload, encode_payload, inspect_payload
from plada.signing import load_trusted_keys
from plada.views import ViewOp, view_from_ops
from tests.unit.plada.payload_helpers import make_payload

DATA = Path(__file__).resolve().parents[2] / "data"
VIEW = view_from_ops(
    [
        {"op": "crop_content", "threshold": 64, "margin": 0, "square": 1},
        {"op": "resize", "size": 8, "filter": "box"},
        {"op": "quantize", "levels": 17},
    ]
)


def _with_view(view: object) -> object:
    payload = make_payload()
    return type(payload)(**{**payload.__dict__, "view": view})


def test_a_payload_without_a_view_has_no_view_key() -> None:
    data = encode_payload(make_payload(), signing_key=None)
    assert "view" not in cbor2.loads(cbor2.loads(data)["body"])
    assert decode_payload(data, trusted_keys={}, allow_unsigned=True).view is None


def test_a_view_round_trips_and_costs_a_few_bytes() -> None:
    plain = encode_payload(make_payload(), signing_key=None)
    data = encode_payload(_with_view(VIEW), signing_key=None)  # type: ignore[arg-type]
    decoded = decode_payload(data, trusted_keys={}, allow_unsigned=True)
    assert decoded.view == VIEW
    assert 0 < len(data) - len(plain) < 120


def test_encoding_refuses_an_out_of_bounds_op() -> None:
    bad = type(VIEW)((ViewOp("quantize", (("levels", 999),)),))
    with pytest.raises(PayloadValueError, match=r"levels: 999 is outside"):
        encode_payload(_with_view(bad), signing_key=None)  # type: ignore[arg-type]


def test_golden_payload_with_a_view_decodes_to_its_contents() -> None:
    # If this fails the wire format changed: never regenerate the file to make it pass.
    expected = json.loads((DATA / "golden_payload_view.json").read_text(encoding="utf-8"))
    data = (DATA / "golden_payload_view.cbor").read_bytes()
    # signed once with another throw-away key (the first golden key's private half is gone)
    trusted = load_trusted_keys([DATA / "golden_view_public.pem"])
    payload = decode_payload(data, trusted_keys=trusted, now=1_800_000_000)
    info = inspect_payload(data, trusted_keys=trusted, now=1_800_000_000)
    assert info.signature == "valid" and info.digest == expected["payload_digest"]
    assert payload.view is not None
    assert payload.view.to_obj() == expected["view"]
    assert payload.view.digest == expected["view_digest"]
    assert payload.indices.tolist() == expected["indices"]
    assert payload.labels.tolist() == expected["labels"]
    doc = info_to_json(info)
    assert doc["view"]["digest"] == expected["view_digest"]
    assert doc["view"]["ops"] == expected["view"]["ops"]


def test_inspect_prints_the_view(capsys: pytest.CaptureFixture[str]) -> None:
    from plada.cli import main

    path = DATA / "golden_payload_view.cbor"
    key = DATA / "golden_view_public.pem"
    assert main(["payload", "inspect", str(path), "--trusted-key", str(key)]) == 0
    human = capsys.readouterr().out
    assert "view          grayscale() > crop_content(" in human
    assert main(["payload", "inspect", str(DATA / "golden_payload.cbor")]) == 1
    assert "view          none" in capsys.readouterr().out
