"""The byte search: cheap probes, and a signed payload that never exceeds its budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from builder.errors import BudgetError
from builder.pipeline.payload import PayloadFields, sign_payload
from builder.pipeline.scores import ReferenceScores, score_reference
from builder.pipeline.select import Selection, select
from builder.pipeline.sizing import FAST_CODECS, PayloadSizer, largest_fitting
from plada.codecs import CODECS
from plada.payload import CorpusRef, decode_payload
from plada.signing import SigningKey, generate_keypair, load_private_key, load_trusted_keys

N = 20_000
C = 6


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[SigningKey, Path]:
    private, public = generate_keypair(tmp_path_factory.mktemp("keys"))
    return load_private_key(private), public


def _scores(seed: int = 0) -> ReferenceScores:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (N, C))
    return score_reference(logits)


def _fields() -> PayloadFields:
    names = tuple(f"class-{i}" for i in range(C))
    return PayloadFields("shapes", 3, names, CorpusRef("ab" * 32, N), created_at=1_800_000_000)


def _search(strategy: str, budget: int, sizer: PayloadSizer, scores: ReferenceScores) -> Selection:
    def make(keep: int) -> Selection:
        return select(scores, strategy=strategy, keep=keep, seed=0)

    return largest_fitting(make, sizer, max_bytes=budget, min_keep=C, max_keep=N)


@pytest.mark.parametrize("strategy", ["low-energy", "random", "class-top-k"])
@pytest.mark.parametrize("budget", [700, 1024, 2048, 4096])
def test_signed_payload_of_the_search_fits_its_budget_and_its_measured_size(
    key: tuple[SigningKey, Path], strategy: str, budget: int
) -> None:
    # Prepare
    private, public = key
    sizer = PayloadSizer(_fields(), key_id=private.key_id)
    # Execute
    selection = _search(strategy, budget, sizer, _scores())
    size, codec = sizer.best(selection)
    data = sign_payload(
        _fields(),
        selection,
        accuracy_estimate=0.8123,
        signing_key=private,
        codec=codec,
        max_bytes=budget,
    )
    # Assert: never over, exactly as measured except a shorter float, and a real payload
    assert len(data) <= size <= budget
    assert size - len(data) <= 8
    decoded = decode_payload(data, trusted_keys=load_trusted_keys([public]))
    assert np.array_equal(decoded.indices, selection.indices)
    # ... and near the largest keep that fits: 5 % more images no longer fit
    bigger = select(_scores(), strategy=strategy, keep=int(selection.keep * 1.05) + 1, seed=0)
    assert sizer.size(bigger) > budget


def test_search_probes_with_fast_codecs_and_runs_each_slow_codec_a_few_times(
    key: tuple[SigningKey, Path],
) -> None:
    # Prepare
    sizer = PayloadSizer(_fields(), key_id=key[0].key_id)
    slow = [name for name in CODECS if name not in FAST_CODECS]
    # Execute
    _search("low-energy", 4096, sizer, _scores())
    # Assert: one run at the found keep, then at most the three growth steps
    assert slow
    assert all(sizer.codec_runs[name] <= 4 for name in slow), sizer.codec_runs
    assert all(sizer.codec_runs[name] >= 4 for name in FAST_CODECS), sizer.codec_runs


def test_sizer_encodes_a_selection_once_per_codec(key: tuple[SigningKey, Path]) -> None:
    # Prepare
    sizer = PayloadSizer(_fields(), key_id=key[0].key_id)
    selection = select(_scores(), strategy="random", keep=500, seed=1)
    # Execute
    first = sizer.best(selection)
    again = sizer.best(select(_scores(), strategy="random", keep=500, seed=1))
    # Assert
    assert first == again
    assert set(sizer.codec_runs.values()) == {1}


def test_sign_payload_refuses_a_payload_over_its_budget(key: tuple[SigningKey, Path]) -> None:
    selection = select(_scores(), strategy="random", keep=3000, seed=0)
    with pytest.raises(BudgetError, match="over the 100 byte budget"):
        sign_payload(
            _fields(),
            selection,
            accuracy_estimate=0.5,
            signing_key=key[0],
            codec="paper",
            max_bytes=100,
        )


def test_candidates_sized_on_threads_are_the_candidates_of_one_thread(
    key: tuple[SigningKey, Path],
) -> None:
    # Prepare: every default setting at two keeps under a byte budget, one shared sizer each
    from builder.pipeline.budget import parse_budget
    from builder.pipeline.candidates import DEFAULT_SETTINGS, Candidate, make_candidates

    settings = [s for s in DEFAULT_SETTINGS if s[0] != "prototype"]  # needs target features

    scores = _scores(seed=3)

    def run(workers: int) -> tuple[list[Candidate], PayloadSizer]:
        sizer = PayloadSizer(_fields(), key_id=key[0].key_id)
        found = make_candidates(
            scores, settings=settings, budget=parse_budget("2KiB"),
            keep_fractions=(1.0, 0.5), seed=0, sizer=sizer, workers=workers,
        )  # fmt: skip
        return found, sizer

    # Execute
    (one, one_sizer), (three, three_sizer) = run(1), run(3)
    # Assert: same settings in the same order, same selections, sizes and codecs
    assert [c.spec for c in three] == [c.spec for c in one]
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a.selection.indices, b.selection.indices)
        np.testing.assert_array_equal(a.selection.labels, b.selection.labels)
        assert (a.payload_bytes, a.codec) == (b.payload_bytes, b.codec)
    assert three_sizer.codec_runs == one_sizer.codec_runs


def test_fleet_strategies_are_candidates_only_where_the_scores_carry_agreement(
    key: tuple[SigningKey, Path],
) -> None:
    # Prepare
    from dataclasses import replace

    from builder.pipeline.budget import parse_budget
    from builder.pipeline.candidates import Setting, make_candidates

    scores = _scores(seed=3)
    settings: list[Setting] = [("consensus", {}), ("random", {})]
    agree = np.arange(len(scores)) % 3 != 0

    def strategies(s: ReferenceScores) -> list[str]:
        found = make_candidates(
            s, settings=settings, budget=parse_budget("2KiB"), keep_fractions=None, seed=0,
            sizer=PayloadSizer(_fields(), key_id=key[0].key_id),
        )  # fmt: skip
        assert all(
            agree[c.selection.indices].all() for c in found if c.spec.strategy == "consensus"
        )
        return [c.spec.strategy for c in found]

    # Execute / Assert
    assert strategies(scores) == ["random"]
    assert strategies(replace(scores, agreement=agree)) == ["consensus", "random"]
    assert strategies(replace(scores, agreement=np.zeros(len(scores), dtype=bool))) == ["random"]
