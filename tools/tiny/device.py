"""A complete tiny device for agent tests: corpus, encoder, keys, config, and payload factory.

device = make_device(tmp_path)
data = device.payload(version=1)              # signed, every corpus image with its true class
apply_payload(data, config=device.config)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.config import AgentConfig, parse_config
from plada.corpus import Corpus
from plada.payload import CorpusRef, Provenance, TaskPayload, encode_payload
from plada.signing import SigningKey, generate_keypair, load_private_key
from plada.views import View
from tools.tiny.corpus import TINY_CLASSES, make_tiny_corpus, tiny_labels
from tools.tiny.encoder import make_tiny_onnx_encoder

if sys.version_info >= (3, 11):
    import tomllib
else:  # the agent tests also run on Python 3.10 (Jetson)
    import tomli as tomllib


@dataclass(frozen=True)
class TinyDevice:
    root: Path
    corpus: Corpus
    labels: np.ndarray  # (N,) true class of every corpus image
    encoder_path: Path
    signing_key: SigningKey
    public_key: Path
    config: AgentConfig
    config_path: Path

    def payload(
        self,
        *,
        version: int = 1,
        task: str = "shapes",
        indices: np.ndarray | None = None,
        signed: bool = True,
        signing_key: SigningKey | None = None,
        fingerprint: str | None = None,
        labels: np.ndarray | None = None,
        class_names: tuple[str, ...] | None = None,
        view: View | None = None,
    ) -> bytes:
        """Encoded payload; indices default to every image, labels are the true classes (or
        `labels[indices]` with `class_names`: another task over the same corpus).

        Signed with the device's trusted key unless `signing_key` (another key) or signed=False.
        """
        chosen = np.arange(len(self.corpus)) if indices is None else np.asarray(indices)
        key = (signing_key or self.signing_key) if signed else None
        payload = TaskPayload(
            task=task,
            version=version,
            class_names=class_names or TINY_CLASSES,
            corpus=CorpusRef(
                fingerprint=fingerprint or self.corpus.fingerprint, size=len(self.corpus)
            ),
            indices=chosen.astype(np.int64),
            labels=(self.labels if labels is None else labels)[chosen].astype(np.int64),
            provenance=Provenance(
                builder_version="test",
                strategy="all",
                params={},
                accuracy_estimate=None,
                created_at=1_700_000_000,
            ),
            view=view,
        )
        return encode_payload(payload, signing_key=key)


def make_device(
    root: Path,
    *,
    num_images: int = 80,
    head_backend: str = "numpy",
    epochs: int = 15,
    extra_toml: str = "",
) -> TinyDevice:
    """Build corpus, encoder, key pair and agent.toml under root."""
    corpus = make_tiny_corpus(root / "corpus", num_images=num_images, seed=5)
    encoder_path = make_tiny_onnx_encoder(root / "encoders", size=32, feature_dim=24, seed=1)
    private, public = generate_keypair(root / "keys")
    toml = f"""
device_id = "test-device"
device_class = "tiny"
[corpus]
path = "corpus"
[encoder]
file = "encoders/{encoder_path.name}"
threads = 1
batch_size = 16
[state]
dir = "state"
[cache]
dir = "cache"
block_size = 32
[trust]
public_keys = ["keys/public.pem"]
[head]
backend = "{head_backend}"
epochs = {epochs}
learning_rate = 0.01
batch_size = 16
{extra_toml}
"""
    config_path = root / "agent.toml"
    config_path.write_text(toml, encoding="utf-8")
    config = parse_config(tomllib.loads(toml), base_dir=root)
    return TinyDevice(
        root=root,
        corpus=corpus,
        labels=tiny_labels(num_images, seed=5),
        encoder_path=encoder_path,
        signing_key=load_private_key(private),
        public_key=public,
        config=config,
        config_path=config_path,
    )
