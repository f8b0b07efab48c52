"""The coordinator's side of the worker processes: start them, send commands, read events.

A reader thread per worker turns its stdout into typed events on a queue, so a worker that hangs
or dies is a timeout or an error naming it (with the tail of its log), never a blocked benchmark.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TypeVar

from pydantic import ValidationError

from bench._common import ROOT
from bench.fleet.protocol import (
    Command,
    CommandLine,
    Connected,
    EventLine,
    Ready,
    Report,
    Stopped,
    WorkerSpec,
)

E = TypeVar("E", Connected, Ready, Report, Stopped)
_Event = Connected | Ready | Report | Stopped


class WorkerError(RuntimeError):
    """A worker died, said something unreadable, or did not answer in time."""


class Worker:
    def __init__(self, spec: WorkerSpec, folder: Path) -> None:
        self.spec = spec
        self.log_path = folder / f"worker-{spec.worker}.log"
        spec_path = folder / f"worker-{spec.worker}.json"
        spec_path.write_text(spec.model_dump_json(), encoding="utf-8")
        spec_path.chmod(0o600)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.fleet.worker", str(spec_path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                env=env,
                text=True,
            )
        self.events: queue.Queue[_Event | WorkerError] = queue.Queue()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                self.events.put(EventLine.model_validate_json(line).event)
            except ValidationError as exc:
                self.events.put(WorkerError(f"worker {self.spec.worker}: bad event line: {exc}"))
        self.events.put(WorkerError(f"worker {self.spec.worker} exited: {self._tail()}"))

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-5:]) or "(empty log)"

    def send(self, command: Command) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(CommandLine(command=command).model_dump_json() + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise WorkerError(f"worker {self.spec.worker}: cannot send a command: {exc}") from exc

    def receive(self, kind: type[E], *, timeout_s: float) -> E:
        try:
            event = self.events.get(timeout=timeout_s)
        except queue.Empty:
            raise WorkerError(
                f"worker {self.spec.worker}: no {kind.__name__} event in {timeout_s:g} s"
            ) from None
        if isinstance(event, WorkerError):
            raise event
        if not isinstance(event, kind):
            raise WorkerError(f"worker {self.spec.worker}: expected {kind.__name__}, got {event}")
        return event

    def close(self, *, timeout_s: float = 60.0) -> None:
        """Wait for the process (killed after `timeout_s`), then close its pipes."""
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:  # a broken pipe to a worker that is gone
                    pass


class Pool:
    """Several workers driven in lockstep: every command goes to all, every answer is awaited."""

    def __init__(self, specs: list[WorkerSpec], folder: Path) -> None:
        self.workers: list[Worker] = []
        try:
            for spec in specs:
                self.workers.append(Worker(spec, folder))
        except BaseException:
            self.kill()
            raise

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    def ask(self, command: Command, kind: type[E], *, timeout_s: float) -> list[E]:
        for worker in self.workers:
            worker.send(command)
        return self.collect(kind, timeout_s=timeout_s)

    def collect(self, kind: type[E], *, timeout_s: float) -> list[E]:
        deadline = time.monotonic() + timeout_s
        return [
            w.receive(kind, timeout_s=max(0.1, deadline - time.monotonic())) for w in self.workers
        ]

    def stop(self, command: Command, *, timeout_s: float = 120.0) -> list[Stopped]:
        """Ask every worker to stop its agents cleanly; then wait for the processes."""
        try:
            return self.ask(command, Stopped, timeout_s=timeout_s)
        finally:
            for worker in self.workers:
                worker.close()

    def kill(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
            worker.close()
