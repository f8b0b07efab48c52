"""`plada-build task`'s flags: pinned, so a reshuffle of the parser cannot change one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from builder.commands.task import add_task_arguments

# option -> (dest, default, required): what scripts and docs call the builder with.
_PINNED: dict[str, tuple[str, Any, bool]] = {
    "--corpus": ("corpus", None, True),
    "--target": ("target", None, True),
    "--budget": ("budget", None, True),
    "--auto": ("auto", False, False),
    "--strategy": ("strategy", None, False),
    "--param": ("param", [], False),
    "--key": ("key", None, True),
    "--out": ("out", None, True),
    "--report": ("report", None, True),
    "--devices": ("devices", None, False),
    "--fleet-objective": ("fleet_objective", None, False),
    "--fleet-weights": ("fleet_weights", None, False),
    "--fleet-status": ("fleet_status", None, False),
    "--fleet-base-topic": ("fleet_base_topic", "plada", False),
    "--profiles": ("profiles", Path("firmware_configs"), False),
    "--teacher-encoder": ("teacher_encoder", "lite1-96,lite0-64-int8", False),
    "--teacher-backend": ("teacher_backend", "onnx", False),
    "--cache": ("cache", Path("data/cache/embeddings"), False),
    "--encoder-dir": ("encoder_dir", None, False),
    "--task-name": ("task_name", None, False),
    "--version": ("version", 1, False),
    "--seed": ("seed", 0, False),
    "--views": ("views", "auto", False),
    "--max-views": ("max_views", 1, False),
    "--teacher-search": ("teacher_search", "off", False),
    "--no-teacher-augment": ("no_teacher_augment", False, False),
    "--fine-tune": ("fine_tune", False, False),
    "--folds": ("folds", 3, False),
    "--repeats": ("repeats", 1, False),
    "--finalists": ("finalists", 4, False),
    "--finalist-repeats": ("finalist_repeats", 2, False),
    "--temperature": ("temperature", 1.0, False),
    "--leakage-threshold": ("leakage_threshold", 0.99, False),
    "--batch-size": ("batch_size", 256, False),
    "--note": ("note", "", False),
    "--no-progress": ("no_progress", False, False),
    "--json": ("json", False, False),
}
_REQUIRED = [
    "--corpus", "c", "--target", "t", "--budget", "2KiB",
    "--key", "k", "--out", "o", "--report", "r",
]  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plada-build task")
    add_task_arguments(parser)
    return parser


def test_task_args_pin_every_flag_dest_default_and_required() -> None:
    # Prepare
    parser = _parser()
    # Execute
    flags = {
        a.option_strings[0]: (a.dest, a.default, a.required)
        for a in parser._actions
        if a.dest != "help"
    }
    # Assert
    assert flags == _PINNED
    assert all(len(a.option_strings) == 1 for a in parser._actions if a.dest != "help")
    assert all(a.help for a in parser._actions)


def test_task_args_auto_and_strategy_exclude_each_other() -> None:
    # Prepare
    parser = _parser()
    # Execute
    groups = [sorted(a.dest for a in g._group_actions) for g in parser._mutually_exclusive_groups]
    # Assert
    assert groups == [["auto", "strategy"]]


def test_task_args_parse_repeated_params_and_types() -> None:
    # Prepare
    argv = [*_REQUIRED, "--strategy", "safety-net", "--param", "s=0.5", "--param", "alpha=1",
            "--max-views", "2", "--temperature", "0.5", "--no-progress"]  # fmt: skip
    # Execute
    args = _parser().parse_args(argv)
    # Assert
    assert args.param == ["s=0.5", "alpha=1"]
    assert args.strategy == "safety-net" and args.auto is False
    assert args.max_views == 2 and args.temperature == 0.5 and args.no_progress is True
    assert args.corpus == Path("c") and args.budget == "2KiB"


def test_task_args_help_reads_by_group() -> None:
    # Prepare
    parser = _parser()
    # Execute
    titled = {
        g.title: [a.option_strings[0] for a in g._group_actions] for g in parser._action_groups
    }
    # Assert: every flag sits in a topic group, none is left in the catch-all "options"
    assert titled["options"] == ["-h"]
    assert titled["selection and budget"][:3] == ["--budget", "--auto", "--strategy"]
    assert "--teacher-encoder" in titled["teachers"] and "--views" in titled["views"]
    assert "--fleet-status" in titled["device classes (fleet)"]
    assert sorted(f for t, fs in titled.items() if t != "options" for f in fs) == sorted(_PINNED)
