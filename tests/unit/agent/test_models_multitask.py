"""The model store with several tasks: side by side, per-task rollback, the bound, retirement."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ModelStoreError, TaskLimitError, TaskRejectedError
from agent.models import ModelMeta, ModelStore
from agent.versions import check_installable
from tests.unit.agent.test_models import _meta, _weights

_TOMB = "ef" * 32


def _meta_t(task: str, version: int) -> ModelMeta:
    meta = _meta(version, task=task)
    # distinct digests per (task, version): a version names one payload
    return meta.model_copy(update={"payload_digest": f"{sum(map(ord, task)):032x}{version:032x}"})


def _save(store: ModelStore, task: str, version: int) -> None:
    store.save(_weights(seed=version), _meta_t(task, version))


def test_two_tasks_are_installed_side_by_side(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path)
    # Execute
    _save(store, "digits", 1)
    _save(store, "bins", 1)
    # Assert
    assert [(m.task, m.version) for m in store.installed()] == [("bins", 1), ("digits", 1)]
    assert [m.task for m in store.installed("digits")] == ["digits"]
    assert store.check() == []


def test_new_version_of_one_task_leaves_the_other_untouched(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path)
    _save(store, "digits", 1)
    _save(store, "bins", 1)
    bins_before = store.installed("bins")[0]
    # Execute
    _save(store, "digits", 2)
    # Assert
    assert store.installed("bins")[0] == bins_before
    assert store.installed("digits")[0].version == 2


def test_rollback_is_per_task(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path)
    _save(store, "digits", 1)
    _save(store, "digits", 2)
    _save(store, "bins", 1)
    # Execute
    with pytest.raises(ModelStoreError, match="name the one to roll back with --task"):
        store.rollback()
    back = store.rollback("digits")
    # Assert
    assert (back.task, back.version) == ("digits", 1)
    assert [(m.task, m.version) for m in store.installed()] == [("bins", 1), ("digits", 1)]
    record = store.task_record("digits")
    assert record is not None and [r.version for r in record.rolled_back] == [2]
    with pytest.raises(ModelStoreError, match="oldest kept model of task bins"):
        store.rollback("bins")
    with pytest.raises(ModelStoreError, match="not installed here"):
        store.rollback("absent")


def test_keep_is_per_task_so_installs_of_one_never_prune_another(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path, keep=2)
    _save(store, "bins", 1)
    _save(store, "bins", 2)
    # Execute
    for version in (1, 2, 3, 4):
        _save(store, "digits", version)
    # Assert
    kept = [(m.task, m.version) for m in store.entries()]
    assert kept == [("bins", 1), ("bins", 2), ("digits", 3), ("digits", 4)]


def test_task_bound_refuses_a_new_task_and_drops_none(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path, max_tasks=2)
    _save(store, "a", 1)
    _save(store, "b", 1)
    # Execute
    with pytest.raises(TaskLimitError, match="holds at most 2"):
        _save(store, "c", 1)
    _save(store, "a", 2)  # a new version of an installed task is not a new task
    # Assert
    assert [(m.task, m.version) for m in store.installed()] == [("a", 2), ("b", 1)]


def test_retire_removes_the_heads_keeps_the_record_and_blocks_older_versions(
    tmp_path: Path,
) -> None:
    # Prepare
    store = ModelStore(tmp_path, max_tasks=2)
    _save(store, "a", 1)
    _save(store, "a", 2)
    _save(store, "b", 1)
    # Execute
    outcome = store.retire("a", version=2, tombstone_digest=_TOMB)
    again = store.retire("a", version=2, tombstone_digest=_TOMB)
    # Assert
    assert len(outcome.removed) == 2 and again.already
    assert [m.task for m in store.installed()] == ["b"]
    record = store.task_record("a")
    assert record is not None and record.is_retired and record.highest_version == 2
    with pytest.raises(TaskRejectedError, match="retired"):
        check_installable(record, task="a", version=2, digest="12" * 32)
    check_installable(record, task="a", version=3, digest="12" * 32)  # newer: taught anew
    _save(store, "c", 1)  # the freed slot takes a new task
    assert store.check() == []


def test_retire_leaves_a_newer_installed_version(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path)
    _save(store, "a", 3)
    # Execute
    outcome = store.retire("a", version=2, tombstone_digest=_TOMB)
    # Assert
    assert outcome.newer == 3 and outcome.removed == ()
    assert [m.version for m in store.installed("a")] == [3]
