"""The payload stage: a selection and the task's fixed fields -> the signed payload bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import plada
from builder.errors import BudgetError
from builder.pipeline.select import ParamValue, Selection
from plada.corpus import Corpus
from plada.payload import CorpusRef, Provenance, TaskPayload, encode_payload
from plada.signing import SigningKey
from plada.views import View


@dataclass(frozen=True)
class PayloadFields:
    """Everything a payload carries besides its selection and accuracy estimate."""

    task: str
    version: int
    class_names: tuple[str, ...]
    corpus: CorpusRef
    created_at: int
    note: str = ""
    view: View | None = None  # how devices look at the kept reference images

    @classmethod
    def for_task(
        cls,
        *,
        task: str,
        version: int,
        class_names: Sequence[str],
        corpus: Corpus,
        created_at: int,
        note: str = "",
    ) -> PayloadFields:
        ref = CorpusRef(fingerprint=corpus.fingerprint, size=len(corpus))
        return cls(task, version, tuple(class_names), ref, created_at, note)

    def payload(self, selection: Selection, *, accuracy_estimate: float | None) -> TaskPayload:
        params: Mapping[str, ParamValue] = dict(selection.params)
        return TaskPayload(
            task=self.task,
            version=self.version,
            class_names=self.class_names,
            corpus=self.corpus,
            indices=selection.indices,
            labels=selection.labels,
            provenance=Provenance(
                builder_version=plada.__version__,
                strategy=selection.strategy,
                params=dict(params),
                accuracy_estimate=accuracy_estimate,
                created_at=self.created_at,
                note=self.note,
            ),
            view=self.view,
        )


def sign_payload(
    fields: PayloadFields,
    selection: Selection,
    *,
    accuracy_estimate: float,
    signing_key: SigningKey | None,
    codec: str,
    max_bytes: int | None,
) -> bytes:
    """The signed envelope with `codec` (the one the byte search sized it with), checked against
    the byte budget: the guarantee that a payload never leaves the builder over its budget."""
    data = encode_payload(
        fields.payload(selection, accuracy_estimate=accuracy_estimate),
        signing_key=signing_key,
        codecs=[codec],
    )
    if max_bytes is not None and len(data) > max_bytes:
        raise BudgetError(f"signed payload is {len(data)} bytes, over the {max_bytes} byte budget")
    return data
