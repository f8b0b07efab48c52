"""The offline agent commands: apply, predict, models, rollback, warm-cache (via agent.cli.main)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from tools.tiny.device import TinyDevice, make_device


@pytest.fixture
def device(tmp_path: Path) -> TinyDevice:
    return make_device(tmp_path)


def _write_payload(device: TinyDevice, name: str, **kwargs: object) -> Path:
    path = device.root / name
    path.write_bytes(device.payload(**kwargs))  # type: ignore[arg-type]
    return path


def test_apply_then_predict_json(device: TinyDevice, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    payload = _write_payload(device, "task.plada")
    image_paths = []
    for index in (0, 1, 2):
        path = device.root / f"img{index}.png"
        device.corpus.image(index).save(path)
        image_paths.append(str(path))
    config = str(device.config_path)
    # Execute
    code_apply = main(["apply", str(payload), "--config", config, "--json"])
    applied = json.loads(capsys.readouterr().out)
    code_predict = main(["predict", *image_paths, "--config", config, "--json", "--top", "2"])
    predictions = json.loads(capsys.readouterr().out)
    # Assert
    assert (code_apply, code_predict) == (0, 0)
    assert applied["task"] == "shapes" and applied["version"] == 1
    assert [p["image"] for p in predictions] == image_paths
    assert all(len(p["top"]) == 2 for p in predictions)
    first = predictions[0]["top"][0]
    assert set(first) == {"class", "prob"} and 0 <= first["prob"] <= 1
    assert predictions[0]["top"][0]["prob"] >= predictions[0]["top"][1]["prob"]


def test_apply_rejects_bad_payload_with_exit_65(
    device: TinyDevice, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    payload = _write_payload(device, "task.plada", fingerprint="f" * 64)
    # Execute
    code = main(["apply", str(payload), "--config", str(device.config_path)])
    # Assert
    assert code == 65
    assert "PayloadCorpusError" in capsys.readouterr().err
    assert not (device.config.state.dir / "models").exists() or not any(
        p.is_dir() for p in (device.config.state.dir / "models").iterdir()
    )


def test_apply_exit_codes_for_config_and_missing_file(
    device: TinyDevice, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text('device_id = "x"\n', encoding="utf-8")
    # Execute
    code_config = main(["apply", "p", "--config", str(bad_config)])
    code_missing = main(["apply", str(tmp_path / "absent"), "--config", str(device.config_path)])
    # Assert
    assert (code_config, code_missing) == (78, 66)
    err = capsys.readouterr().err
    assert "corpus: Field required" in err and "cannot read payload file" in err


def test_models_and_rollback(device: TinyDevice, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    config = str(device.config_path)
    for version in (1, 2):
        main(
            [
                "apply",
                str(_write_payload(device, f"v{version}", version=version)),
                "--config",
                config,
            ]
        )
    capsys.readouterr()
    # Execute
    main(["models", "--config", config, "--json"])
    listed = json.loads(capsys.readouterr().out)
    code_rollback = main(["rollback", "--config", config, "--json"])
    rolled = json.loads(capsys.readouterr().out)
    code_again = main(["rollback", "--config", config])
    # Assert
    assert [(m["version"], m["current"]) for m in listed] == [(1, False), (2, True)]
    assert code_rollback == 0 and rolled["version"] == 1
    assert code_again == 69
    main(["models", "--config", config])
    assert "* 000001-shapes-v1" in capsys.readouterr().out


def test_predict_without_model_exits_69(
    device: TinyDevice, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    path = device.root / "img.png"
    device.corpus.image(0).save(path)
    # Execute
    code = main(["predict", str(path), "--config", str(device.config_path)])
    # Assert
    assert code == 69
    assert "apply a task first" in capsys.readouterr().err


def test_warm_cache_then_apply_computes_nothing(
    device: TinyDevice, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    config = str(device.config_path)
    # Execute
    code_warm = main(["warm-cache", "--config", config, "--json"])
    warm = json.loads(capsys.readouterr().out)
    code_again = main(["warm-cache", "--config", config, "--json"])
    again = json.loads(capsys.readouterr().out)
    payload = _write_payload(device, "t", indices=np.arange(0, 80, 3))
    main(["apply", str(payload), "--config", config, "--json"])
    applied = json.loads(capsys.readouterr().out)
    # Assert
    assert (code_warm, code_again) == (0, 0)
    assert (warm["blocks_total"], warm["blocks_computed"], warm["images_embedded"]) == (3, 3, 80)
    assert again["blocks_computed"] == 0
    assert applied["features_computed"] == 0


@pytest.mark.parametrize("command", ["apply", "predict", "models", "rollback", "warm-cache"])
def test_commands_have_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    # Assert
    assert info.value.code == 0
    assert "--config" in capsys.readouterr().out
