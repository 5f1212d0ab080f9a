"""The ``ab`` coordinator: two installs run the same workload, taking turns one training step each.

``run --reference`` takes turns inside one process, which is only possible
when both sides are importable together. A change to the harness itself, a
torch upgrade, or a plugin's base branch against its pull request needs two
installs, so two processes: this module starts one ``run`` in each (the
*sides*, ``a`` and ``b``) and passes the baton between them, one step each,
as ``lockstep.py`` does between threads. The protocol is ``ab_protocol.py``; a
side's own loop is ``ab_side.py``.

How the baton travels. This process (the *coordinator*) holds one end of a
Unix socket pair per side and gives each side the other end as an inherited
file descriptor: nothing is reachable off the machine, and no name is left
in the file system. Messages are JSON lines:

* side -> coordinator: ``hello`` (protocol version, cifar-bench version,
  runs planned, threads, loader), ``start`` (the run's workload, sent from
  the ``run_start`` hook after setup and warm-up), ``turn`` (after each
  training step), ``done`` (status, times, step times), ``written`` (the
  record's path), ``bye``;
* coordinator -> side: ``welcome`` (the shared CPU core, if any), ``go``
  (your turn), ``partner`` (the other side's summary, once both are done),
  ``abort`` (stop now, write nothing).

Each side runs with ``Session.run(config, turn=...)``: while it waits for
``go`` its clocks are paused and its random state is kept (see
``training.loop.turn_taker``), so each train time is its own steps only and each
run trains exactly as it would alone. With one torch thread and the tensor
loader both sides are pinned to one and the same CPU core. The side that
goes first alternates between repeats.

Each side times its own steps (from getting the baton to handing it back);
when both are done, each learns the other's step times and stores the
per-step-paired ratio, sum of its paired steps over the sum of its
partner's, in its record (``paired_ratio``), beside ``partner``.
``compare`` gates on those ratios (see docs/comparing.md).

Never a hang: the coordinator waits at most ``--timeout`` seconds for the
side that owes a message; a side that dies, hangs, speaks another protocol
or reports a different workload ends the command with a one-line error, and
both processes are stopped and reaped. Records are written only once both
runs of a pair are done, each atomically, so nothing is half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shlex
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunFailed, UsageError
from ..version import __version__
from .ab_protocol import PROTOCOL, Channel, ProtocolError

#: The run flags that describe what is computed: two sides whose runs differ in any of these did different work.
WORKLOAD_KEYS = ("dataset", "train_size", "test_size", "steps_per_epoch", "epochs", "batch_size", "device",
                 "loader", "seed", "precision", "channels_last", "compile", "threads")  # fmt: skip

KILL_WAIT_S = 5.0  # how long a side gets to end after being told to, before it is killed


# -- the coordinator ----------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    command: list[str]
    proc: subprocess.Popen | None = None
    channel: Channel | None = None
    log: Path | None = None
    hello: dict[str, Any] | None = None
    state: str = "hello"  # hello | setup | waiting | running | done | writing | finished
    workload: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    written: list[str] = field(default_factory=list)
    bye: bool = False

    @property
    def label(self) -> str:
        return f"side {self.name} ({shlex.join(self.command)})"

    def last_error(self) -> str:
        """The side's last stderr line that reads as an error, else its last line, else nothing."""
        try:
            lines = [line.strip() for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        errors = [line for line in lines if "error" in line.lower()]
        return (errors or lines or [""])[-1][:300]


class Match:
    """One invocation of ``ab``: both sides, from their start to their last record."""

    def __init__(self, sides: list[Side], timeout: float) -> None:
        self.sides, self.timeout = sides, timeout
        self.repeat, self.repeats = 0, None
        self.first = 0  # index of the side that goes first in this repeat
        self.pairs: list[dict[str, Any]] = []

    # The baton --------------------------------------------------------------------------------

    def other(self, side: Side) -> Side:
        return self.sides[1 - self.sides.index(side)]

    def handle(self, side: Side, message: dict[str, Any]) -> None:
        kind = message["type"]
        expected = {"hello": {"hello"}, "setup": {"start", "done"}, "running": {"turn", "done"},
                    "writing": {"written"}, "finished": {"bye"}}.get(side.state, set())  # fmt: skip
        if kind == "error":  # a side that stops on bad input says why before it exits
            raise _Stop(f"{side.label}: {message.get('message', 'stopped')}", int(message.get("code", 2)))
        if kind not in expected:
            raise _Stop(f"{side.label} broke the lockstep protocol: sent {kind!r} while {side.state}", 1)
        getattr(self, f"_on_{kind}")(side, message)

    def _on_hello(self, side: Side, message: dict[str, Any]) -> None:
        protocol = message.get("protocol")
        if protocol != PROTOCOL:
            raise _Stop(
                f"{side.label} speaks lockstep protocol {protocol!r}, this cifar-bench ({__version__}) speaks "
                f"{PROTOCOL}: install matching versions, or gate on seconds",
                2,
            )
        side.hello, side.state = message, "wait-hello"
        if all(s.hello for s in self.sides):
            a, b = (s.hello for s in self.sides)
            if a.get("runs") != b.get("runs"):
                raise _Stop(f"the sides plan different numbers of runs: a {a.get('runs')}, b {b.get('runs')}", 2)
            self.repeats = a.get("runs")
            one_core = all(h.get("threads") == 1 and h.get("loader") == "tensor" for h in (a, b))
            core = max(os.sched_getaffinity(0)) if one_core and hasattr(os, "sched_getaffinity") else None
            for s in self.sides:
                s.state = "setup"
                s.channel.send("welcome", core=core)

    def _on_start(self, side: Side, message: dict[str, Any]) -> None:
        side.workload, side.state = message.get("workload") or {}, "waiting"
        other = self.other(side)
        if other.state == "done":  # the other run ended before training (failed in setup): this one runs alone
            self._give(side)
        elif other.state == "waiting":
            differing = [
                f"{key} {side_value(self.sides[0], key)} vs {side_value(self.sides[1], key)}"
                for key in WORKLOAD_KEYS
                if self.sides[0].workload.get(key) != self.sides[1].workload.get(key)
            ]
            if differing:
                raise _Stop(f"the sides' workloads differ (a vs b): {'; '.join(differing)}", 2)
            self._give(self.sides[self.first])

    def _on_turn(self, side: Side, message: dict[str, Any]) -> None:
        other = self.other(side)
        self._give(other if other.state == "waiting" else side)

    def _on_done(self, side: Side, message: dict[str, Any]) -> None:
        side.summary, side.state = message.get("summary") or {}, "done"
        other = self.other(side)
        if other.state == "waiting":
            self._give(other)  # this run has left (or never started training): the other finishes alone
        if other.state != "done":
            return
        a, b = self.sides
        if a.summary.get("status") == b.summary.get("status") == "ok":
            fingerprints = [str(s.summary.get("fingerprint")) for s in self.sides]
            if fingerprints[0] != fingerprints[1]:
                raise _Stop(f"the sides' workloads differ (a vs b): dataset fingerprint {' vs '.join(fingerprints)}", 2)
        for s in self.sides:
            s.state = "writing"
            s.channel.send("partner", side=self.other(s).name, summary=self.other(s).summary,
                           hello=self.other(s).hello)  # fmt: skip

    def _on_written(self, side: Side, message: dict[str, Any]) -> None:
        side.written.append(str(message.get("path")))
        side.workload = None
        side.state = "setup" if len(side.written) < self.repeats else "finished"
        a, b = self.sides
        if len(a.written) == len(b.written) == self.repeat + 1:  # this repeat's pair is complete
            self.pairs.append({"repeat": self.repeat, "first": self.sides[self.first].name,
                               "a": a.summary, "b": b.summary, "paths": (a.written[-1], b.written[-1])})  # fmt: skip
            self.repeat += 1
            self.first = self.repeat % 2  # whoever went first, the other goes first next time

    def _on_bye(self, side: Side, message: dict[str, Any]) -> None:
        side.bye = True

    def _give(self, side: Side) -> None:
        side.state = "running"
        other = self.other(side)
        if other.state == "running":
            other.state = "waiting"
        side.channel.send("go")

    # The loop ---------------------------------------------------------------------------------

    def play(self) -> None:
        selector = selectors.DefaultSelector()
        for side in self.sides:
            selector.register(side.channel.sock, selectors.EVENT_READ, side)
        last = time.monotonic()
        while not all(s.bye for s in self.sides):
            events = selector.select(timeout=min(0.2, self.timeout))
            for key, _ in events:
                side = key.data
                try:
                    messages = side.channel.read_available()
                except (ProtocolError, OSError) as exc:
                    raise self._ended(side, exc) from None
                for message in messages:
                    self.handle(side, message)
                last = time.monotonic()
            for side in self.sides:
                if side.proc.poll() is not None and not side.bye and not events:
                    raise self._ended(side, None)
            if time.monotonic() - last > self.timeout:
                owing = [s for s in self.sides if s.state not in ("waiting", "wait-hello", "done") and not s.bye]
                names = " and ".join(s.label for s in owing) or "neither side"
                raise _Stop(f"{names} sent nothing for {self.timeout:g} s (hung?): both sides stopped", 1)

    def _ended(self, side: Side, exc: Exception | None) -> _Stop:
        """Why the command stops when a side's connection closed or its process ended."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            side.proc.wait(timeout=KILL_WAIT_S)
        code, said = side.proc.returncode, side.last_error()
        detail = f": {said}" if said else ""
        if side.hello is None:
            return _Stop(
                f"{side.label} ended (exit code {code}) before the lockstep handshake{detail} (a cifar-bench "
                "without 'ab' cannot take turns: install one with it, or gate on seconds)",
                2 if code == 2 else 1,
            )
        if isinstance(exc, ProtocolError) and "not a protocol message" in str(exc):
            return _Stop(f"{side.label} broke the lockstep protocol: {exc}", 1)
        return _Stop(f"{side.label} ended (exit code {code}) while {side.state}{detail}", 2 if code == 2 else 1)


class _Stop(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def side_value(side: Side, key: str) -> str:
    return json.dumps(side.workload.get(key))


def start_side(side: Side, run_argv: list[str], workdir: Path) -> None:
    """Start one side with its end of a socket pair; its output goes to a log file, never to a pipe."""
    ours, theirs = socket.socketpair()
    side.channel, side.log = Channel(ours), workdir / f"side-{side.name}.log"
    argv = [*side.command, "ab-side", "--fd", str(theirs.fileno()), "--side", side.name, "--", *run_argv]
    with open(side.log, "wb") as log:
        try:
            side.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         pass_fds=(theirs.fileno(),))  # fmt: skip
        except OSError as exc:
            raise UsageError(f"cannot start side {side.name} ({shlex.join(side.command)}): {exc.strerror}") from None
        finally:
            theirs.close()


def stop_sides(sides: list[Side], abort: str | None = None) -> None:
    """End and reap both sides: told to stop and ended at once (``abort``), else given a few seconds to exit."""
    for side in sides:
        if side.proc is None:
            continue
        if abort and side.proc.poll() is None:
            with contextlib.suppress(OSError):
                side.channel.send("abort", reason=abort)
            side.proc.terminate()
        try:
            side.proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            side.proc.kill()
            side.proc.wait()
    for side in sides:
        if side.channel is not None:
            side.channel.sock.close()


def command_of(text: str, flag: str) -> list[str]:
    try:
        command = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: cannot read {text!r} as a command ({exc})") from None
    if not command:
        raise UsageError(f"{flag} is empty: give a cifar-bench command, e.g. venv-base/bin/cifar-bench")
    return command


def coordinate(a: str, b: str, run_argv: list[str], folders: dict[str, Path], timeout: float) -> list[dict[str, Any]]:
    """Start ``CMD run RECIPE [flags]`` for each side and let them take turns; the pairs of runs they made.

    ``a``, ``b``: each side's cifar-bench command; ``folders``: each side's results folder. A side that
    dies, hangs or breaks the protocol ends it with a UsageError (bad input) or RunFailed, both sides
    stopped and reaped.
    """
    if not timeout > 0:
        raise UsageError(f"--timeout is in seconds and must be above 0, got {timeout:g}")
    sides = [Side("a", command_of(a, "--a")), Side("b", command_of(b, "--b"))]
    match = Match(sides, timeout)
    with tempfile.TemporaryDirectory(prefix="cifar-bench-ab-") as tmp:
        try:
            for side in sides:
                start_side(side, [*run_argv, "--results-dir", str(folders[side.name])], Path(tmp))
            match.play()
        except _Stop as stop:
            stop_sides(sides, abort=str(stop))
            raise (UsageError if stop.code == 2 else RunFailed)(str(stop)) from None
        except BaseException:
            stop_sides(sides, abort="the coordinator stopped")
            raise
        stop_sides(sides)
    return match.pairs
