"""What a field trial teaches its devices: the task, device classes, agent configs, test images.

A kit hides where these come from, so the orchestrator runs the same stages on the real data
(tools.trial.data_kit: ``make data`` output, exported encoders, a ``plada-build task``) and on
the tests' tiny device (``TinyKit``: a generated corpus and a tiny ONNX encoder, seconds to
train). Both give the same things:

- ``payload_path``: the signed task payload ``plada-build publish`` sends;
- ``agent_table(...)``: a device's agent config (its class's encoder, its own state folder), the
  orchestrator adds the ``[mqtt]`` and ``[metrics]`` tables of the trial's links;
- ``probe_dir``: labelled test images of the task (root/<class>/<image>); every agent reports its
  real head's accuracy on them;
- ``signing_key_path`` / ``public_key_path``: the key pair the task is signed with and the devices
  trust (the rollout stages sign their payloads and the revocation with it);
- ``payload_version(n)``: an update of the task as version ``n``, signed (the data kit re-signs
  the same selection; the tiny kit selects half its corpus, so the update needs several chunks);
- ``images_pack(device_class)``: the same task sent as images: the payload's selected corpus images
  with their labels, each at most the class's encoder input size, JPEG q30, the pack Zstd-19 (the
  leanest image format of tools/image_pack.py, so the comparison is fair to images).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from plada.corpus import Corpus
from plada.payload import encode_payload, inspect_payload
from plada.signing import SigningKey
from tools.image_pack import device_sized, pack_images
from tools.tiny.corpus import make_tiny_imagefolder
from tools.tiny.device import TinyDevice, make_device


class TaskKit(Protocol):
    task: str
    classes: tuple[str, ...]

    @property
    def payload_path(self) -> Path: ...

    @property
    def probe_dir(self) -> Path: ...

    @property
    def signing_key_path(self) -> Path: ...

    @property
    def public_key_path(self) -> Path: ...

    def encoder(self, device_class: str) -> str: ...

    def agent_table(self, *, device_id: str, device_class: str, folder: Path) -> dict[str, Any]: ...

    def images_pack(self, device_class: str) -> bytes: ...

    def payload_version(self, version: int) -> Path: ...

    def describe(self) -> dict[str, Any]: ...


def pack_selected_images(payload: bytes, corpus: Corpus, *, input_size: int) -> bytes:
    """The payload's selection as images: corpus images at its indices, with its labels."""
    selection = inspect_payload(payload, trusted_keys={}).payload
    images = [device_sized(corpus.image(int(i)), input_size) for i in selection.indices]
    return pack_images(images, [int(label) for label in selection.labels], "jpeg-q30")


def resigned(data: bytes, *, version: int, key: SigningKey) -> bytes:
    """The same task and selection as another version, signed again: an update to send."""
    payload = inspect_payload(data, trusted_keys={}).payload
    return encode_payload(replace(payload, version=version), signing_key=key)


class TinyKit:
    """The tests' tiny device as a trial kit: a task over 60 images of a generated corpus (its
    images pack stays small enough for a test on the 9.6 kbit/s profile)."""

    task = "shapes"
    INPUT_SIZE = 32  # the tiny encoder's input size

    def __init__(
        self,
        root: Path,
        *,
        classes: tuple[str, ...] = ("tiny",),
        num_images: int = 8000,
        selected: int = 60,
    ) -> None:
        self.root = root
        self.classes = classes
        self.tiny: TinyDevice = make_device(root / "tiny", num_images=num_images, epochs=3)
        self._rng = np.random.default_rng(1)
        chosen = np.sort(self._rng.choice(num_images, selected, replace=False))
        self._payload = root / f"{self.task}.plada"
        self._payload.write_bytes(self.tiny.payload(version=1, indices=chosen, task=self.task))
        self._probe = make_tiny_imagefolder(root / "target", train_per_class=1, test_per_class=4)

    @property
    def payload_path(self) -> Path:
        return self._payload

    @property
    def probe_dir(self) -> Path:
        return self._probe / "test"

    @property
    def signing_key_path(self) -> Path:
        return self.tiny.public_key.with_name("private.pem")  # plada.signing.generate_keypair

    @property
    def public_key_path(self) -> Path:
        return self.tiny.public_key

    def encoder(self, device_class: str) -> str:
        return self.tiny.encoder_path.stem

    def agent_table(self, *, device_id: str, device_class: str, folder: Path) -> dict[str, Any]:
        table: dict[str, Any] = self.tiny.config.model_dump(mode="json", exclude_none=True)
        table |= {"device_id": device_id, "device_class": device_class}
        table["state"] = {"dir": str(folder / "state")}
        return table

    def images_pack(self, device_class: str) -> bytes:
        return pack_selected_images(
            self._payload.read_bytes(), self.tiny.corpus, input_size=self.INPUT_SIZE
        )

    def payload_version(self, version: int) -> Path:
        """An update over half the corpus: a few kB, so it is sent in several chunks."""
        size = len(self.tiny.corpus)
        half = np.sort(self._rng.choice(size, size // 2, replace=False))
        path = self.root / f"{self.task}-v{version}.plada"
        path.write_bytes(self.tiny.payload(version=version, indices=half, task=self.task))
        return path

    def describe(self) -> dict[str, Any]:
        return {"kind": "tiny", "corpus_images": len(self.tiny.corpus), "budget": None}
