"""The field trial's kit on the real data (``make data``): the demo's encoders and task builder.

Every expensive step is the demo's own and is cached under the work folder (tools/demo/steps.py):
the device classes' encoders (``plada-build export-encoder``), the signed task at the budget
(``plada-build task --auto``, simulated for every class), and here also each class's feature cache
(``plada-agent warm-cache``, run by the orchestrator before the timed part) and the images packs.
A cold first run exports and embeds; a second run reuses everything and only trains the devices.

The probe set is the first ``probe_per_class`` test images of every class of the target (symlinks,
sorted by name): every device embeds it to report its accuracy, so it is kept small enough for ten
devices on two cores.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from plada.corpus import Corpus
from plada.encoders import parse_encoder_spec
from plada.signing import generate_keypair, load_private_key
from tools.demo.agents import device_profile
from tools.demo.steps import ensure_encoders, ensure_task
from tools.trial.errors import TrialRunError
from tools.trial.kit import pack_selected_images, resigned


class DataKit:
    def __init__(
        self,
        *,
        data: Path,
        work: Path,
        task: str,
        budget: str,
        classes: tuple[str, ...],
        probe_per_class: int,
    ) -> None:
        if not (data / "ref-v1").exists():
            raise TrialRunError(f"{data}/ref-v1 is missing: run `make data` first")
        self.task = task
        self.classes = classes
        self.data = data.resolve()
        self.work = work.resolve()
        self.budget = budget
        self._encoders = {c: device_profile(c).device.encoder for c in classes}
        specs = list(dict.fromkeys(self._encoders.values()))
        ensure_encoders(specs, self.work / "encoders", self.data / "ref-v1")
        keys = self.work / "keys"
        if not (keys / "private.pem").exists():
            generate_keypair(keys)
        self.public_key = keys / "public.pem"
        args = argparse.Namespace(data=self.data, out=self.work, task=task, budget=budget)
        self._payload, self.build_report = ensure_task(args, specs, keys / "private.pem")
        self._probe = self._link_probe(probe_per_class)
        self._packs: dict[str, bytes] = {}

    def _link_probe(self, per_class: int) -> Path:
        test = self.data / "targets" / self.task / "test"
        root = self.work / f"probe-{self.task}-{per_class}"
        shutil.rmtree(root, ignore_errors=True)
        for folder in sorted(p for p in test.iterdir() if p.is_dir()):
            (root / folder.name).mkdir(parents=True)
            for image in sorted(f for f in folder.iterdir() if f.is_file())[:per_class]:
                (root / folder.name / image.name).symlink_to(image.resolve())
        return root

    @property
    def payload_path(self) -> Path:
        return self._payload

    @property
    def probe_dir(self) -> Path:
        return self._probe

    @property
    def signing_key_path(self) -> Path:
        return self.work / "keys" / "private.pem"

    @property
    def public_key_path(self) -> Path:
        return self.public_key

    def encoder(self, device_class: str) -> str:
        return self._encoders[device_class]

    def agent_table(self, *, device_id: str, device_class: str, folder: Path) -> dict[str, Any]:
        encoder = self._encoders[device_class]
        overrides = {
            "corpus": {"path": str(self.data / "ref-v1")},
            "encoder": {"file": str(self.work / "encoders" / f"{encoder}.onnx")},
            "state": {"dir": str(folder.resolve() / "state")},
            # one cache per class, shared by its devices and warmed before the timed part
            "cache": {"dir": str(self.work / "feature-cache" / device_class)},
            "trust": {"public_keys": [str(self.public_key)], "allow_unsigned": False},
        }
        return device_profile(device_class).agent_table(device_id=device_id, overrides=overrides)

    def images_pack(self, device_class: str) -> bytes:
        encoder = self._encoders[device_class]
        cached = self.work / f"images-{self.task}-{self.budget}-{encoder}.bin"
        if not cached.exists() or cached.stat().st_mtime < self._payload.stat().st_mtime:
            with Corpus.open(self.data / "ref-v1") as corpus:
                pack = pack_selected_images(
                    self._payload.read_bytes(),
                    corpus,
                    input_size=parse_encoder_spec(encoder).size,
                )
            cached.write_bytes(pack)
        return cached.read_bytes()

    def payload_version(self, version: int) -> Path:
        path = self.work / f"{self.task}-{self.budget}-v{version}.plada"
        key = load_private_key(self.work / "keys" / "private.pem")
        path.write_bytes(resigned(self._payload.read_bytes(), version=version, key=key))
        return path

    def describe(self) -> dict[str, Any]:
        with Corpus.open(self.data / "ref-v1") as corpus:
            size = len(corpus)
        report = self.build_report
        return {
            "kind": "data",
            "data": str(self.data),
            "corpus_images": size,
            "budget": self.budget,
            "num_indices": report.num_indices,
            "teacher_accuracy": report.teacher_accuracy,
            # what the builder's simulation expected of each class (the trial measures it)
            "builder_simulated": {
                name: device.model_dump(mode="json") for name, device in report.devices.items()
            },
        }
