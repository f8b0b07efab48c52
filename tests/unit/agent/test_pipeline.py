"""apply_payload: the whole device path, and rejection of bad payloads with nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.errors import ConfigError, TaskRejectedError
from agent.models import ModelStore
from agent.pipeline import apply_payload
from plada.errors import PayloadCorpusError, PayloadDecodeError, PayloadError, PayloadSignatureError
from plada.signing import generate_keypair, load_private_key
from tools.tiny.device import TinyDevice, make_device


@pytest.fixture
def device(tmp_path: Path) -> TinyDevice:
    return make_device(tmp_path)


def _model_dirs(device: TinyDevice) -> list[str]:
    root = device.config.state.dir / "models"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


def test_apply_payload_trains_and_stores_a_model(device: TinyDevice) -> None:
    # Prepare
    stages: list[str] = []
    data = device.payload(version=1, indices=np.arange(0, 80, 2))
    # Execute
    applied = apply_payload(data, config=device.config, progress=lambda f, s: stages.append(s))
    # Assert
    assert (applied.task, applied.version, applied.num_indices) == ("shapes", 1, 40)
    assert applied.train_accuracy > 0.7
    assert applied.features_computed == 40  # cold cache
    assert stages == ["verify", "features", "train", "store", "done"]
    current = ModelStore(device.config.state.dir).current()
    assert current is not None and current.payload_digest == applied.payload_digest
    assert current.meta.backend == "numpy"
    assert current.meta.hyper_params["epochs"] == 15
    assert applied.model_path == current.path


def test_apply_payload_uses_warm_cache(device: TinyDevice) -> None:
    # Prepare
    from agent.pipeline import open_corpus, open_feature_cache

    open_feature_cache(device.config, open_corpus(device.config)).warm()
    # Execute
    applied = apply_payload(device.payload(), config=device.config)
    # Assert
    assert applied.features_computed == 0


def test_apply_payload_rejects_tampered_payload_and_writes_nothing(device: TinyDevice) -> None:
    # Prepare: flip one byte near the end (inside the signed body or the signature)
    data = bytearray(device.payload())
    data[-5] ^= 0x01
    # Execute / Assert
    with pytest.raises(PayloadError):
        apply_payload(bytes(data), config=device.config)
    assert _model_dirs(device) == []


def test_apply_payload_rejects_untrusted_signer(device: TinyDevice, tmp_path: Path) -> None:
    # Prepare
    private, _ = generate_keypair(tmp_path / "other-keys")
    data = device.payload(signing_key=load_private_key(private))
    # Execute / Assert
    with pytest.raises(PayloadSignatureError, match="not among the trusted keys"):
        apply_payload(data, config=device.config)
    assert _model_dirs(device) == []


def test_apply_payload_rejects_unsigned_unless_allowed(device: TinyDevice) -> None:
    # Prepare
    data = device.payload(signed=False)
    # Execute / Assert
    with pytest.raises(PayloadSignatureError, match="unsigned"):
        apply_payload(data, config=device.config)
    relaxed = device.config.model_copy(
        update={"trust": device.config.trust.model_copy(update={"allow_unsigned": True})}
    )
    assert apply_payload(data, config=relaxed).version == 1


def test_apply_payload_rejects_other_corpus(device: TinyDevice) -> None:
    # Prepare
    data = device.payload(fingerprint="0" * 64)
    # Execute / Assert
    with pytest.raises(PayloadCorpusError, match=r"corpus\.fingerprint"):
        apply_payload(data, config=device.config)
    assert _model_dirs(device) == []


def test_apply_payload_rejects_garbage(device: TinyDevice) -> None:
    # Execute / Assert
    with pytest.raises(PayloadDecodeError):
        apply_payload(b"not a payload", config=device.config)


def test_apply_payload_rejects_older_version_keeps_current(device: TinyDevice) -> None:
    # Prepare
    apply_payload(device.payload(version=2), config=device.config)
    # Execute / Assert
    with pytest.raises(TaskRejectedError, match="version 2 is not newer"):
        apply_payload(device.payload(version=2), config=device.config)
    with pytest.raises(TaskRejectedError, match="version 1 is not newer"):
        apply_payload(device.payload(version=1), config=device.config)
    assert _model_dirs(device) == ["000001-shapes-v2"]
    assert apply_payload(device.payload(version=1), config=device.config, force=True).version == 1


def test_apply_payload_reports_missing_corpus_as_config_error(device: TinyDevice) -> None:
    # Prepare
    config = device.config.model_copy(
        update={"corpus": device.config.corpus.model_copy(update={"path": Path("/nonexistent")})}
    )
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"corpus\.path: "):
        apply_payload(device.payload(), config=config)


def test_apply_payload_is_deterministic_across_devices(tmp_path: Path) -> None:
    # Prepare: two devices, same corpus/encoder/seed, one with a warm cache
    a = make_device(tmp_path / "a")
    b = make_device(tmp_path / "b")
    payload = a.payload()
    # Execute
    apply_payload(payload, config=a.config)
    data_b = b.payload()  # b has its own keys; same selection
    apply_payload(data_b, config=b.config)
    # Assert
    ma, mb = ModelStore(a.config.state.dir).current(), ModelStore(b.config.state.dir).current()
    assert ma is not None and mb is not None
    import onnx

    graph_a, graph_b = onnx.load(str(ma.onnx_path)).graph, onnx.load(str(mb.onnx_path)).graph
    assert [t.raw_data for t in graph_a.initializer] == [t.raw_data for t in graph_b.initializer]
    assert ma.payload_digest != mb.payload_digest  # signed by different keys
