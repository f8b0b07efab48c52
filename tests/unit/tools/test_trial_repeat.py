"""The repeated-delivery tool's pure parts: rows from each run's report, the summary against the
limit, the files, and its loop over runs (each run stubbed by a report written here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.tools.test_trial_report import _report, _row, _stage
from tools.trial import repeat, trial_cli
from tools.trial.errors import TrialError
from tools.trial.report_model import TrialReport


def _run_report(*ratios_down: int) -> TrialReport:
    """A report whose plada stage has one lora row per downlink byte count, and one ltem row."""
    rows = [_row(f"lora-{i + 1}", "lora", wire_down_bytes=b) for i, b in enumerate(ratios_down)]
    rows.append(_row("ltem-1", "ltem"))
    return _report().model_copy(update={"stages": [_stage("plada", rows)]})


def test_rows_are_the_thin_profile_deliveries_of_the_plada_stage() -> None:
    rows = repeat.deliveries(_run_report(2600, 3300), run=2, profile="lora")
    assert [(r.run, r.device) for r in rows] == [(2, "lora-1"), (2, "lora-2")]
    assert [r.ratio for r in rows] == pytest.approx([2600 / 2040, 3300 / 2040], abs=1e-4)
    no_plada = _report().model_copy(update={"stages": [_stage("images", [])]})
    with pytest.raises(TrialError, match="no plada stage"):
        repeat.deliveries(no_plada, run=1, profile="lora")


def test_main_runs_every_trial_and_counts_the_deliveries_over_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: run n writes a report with lora devices at these downlink bytes
    per_run = {1: (2600, 2700), 2: (3300, 2600)}
    calls: list[list[str]] = []

    def fake_trial(argv: list[str]) -> int:
        calls.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True)
        run = int(out.name.removeprefix("run"))
        (out / "trial.json").write_text(_run_report(*per_run[run]).model_dump_json())
        return 0

    monkeypatch.setattr(trial_cli, "main", fake_trial)
    # Execute
    code = repeat.main(["--runs", "2", "--out", str(tmp_path), "--tiny"])
    # Assert: each run was the plada stage alone, with the passed-through flags
    assert code == 0 and len(calls) == 2
    assert all(c[0] == "--tiny" and c[c.index("--stages") + 1] == "plada" for c in calls)
    saved = repeat.RepeatReport.model_validate_json((tmp_path / "trial_repeat.json").read_text())
    assert saved.summary()["deliveries"] == 4 and saved.within == 3
    assert saved.summary()["worst"] == pytest.approx(3300 / 2040, abs=1e-3)
    text = (tmp_path / "trial_repeat.md").read_text()
    assert "**3 of 4 within 1.5x**" in text and "| 2 | lora-1 | c-a | 1.62x |" in text
    assert (tmp_path / "trial_repeat.png").stat().st_size > 0
    assert json.loads((tmp_path / "trial_repeat.json").read_text())["runs"] == 2


def test_a_failed_run_stops_the_repeat_with_its_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trial_cli, "main", lambda argv: 70)
    assert repeat.main(["--runs", "3", "--out", str(tmp_path)]) == 70
    assert not (tmp_path / "trial_repeat.json").exists()
