"""``cifar-bench ab``: two installs run the same workload, taking turns one training step each.

``run --reference`` takes turns inside one process, which is only possible
when both sides are importable together. A change to the harness itself, a
torch upgrade, or a plugin's base branch against its pull request needs two
installs, so two processes: this module starts one ``run`` in each (the
*sides*, ``a`` and ``b``) and passes the baton between them, one step each,
as ``lockstep.py`` does between threads.

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
``runner._turn_taker``), so each train time is its own steps only and each
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

import argparse
import contextlib
import json
import os
import selectors
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tabulate import tabulate

from . import __version__, hookimpl
from .errors import RunFailed, UsageError, one_line

#: The lockstep protocol's version: a side must speak exactly this one.
PROTOCOL = 1

#: The run flags that describe what is computed: two sides whose runs differ in any of these did different work.
WORKLOAD_KEYS = ("dataset", "train_size", "test_size", "steps_per_epoch", "epochs", "batch_size", "device",
                 "loader", "seed", "precision", "channels_last", "compile", "threads")  # fmt: skip

SIDES = ("a", "b")
KILL_WAIT_S = 5.0  # how long a side gets to end after being told to, before it is killed


class ProtocolError(Exception):
    """The other end broke the protocol, closed the connection, or went silent."""


class Channel:
    """Newline-delimited JSON messages over a connected socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self._buffer = sock, b""

    def send(self, kind: str, **fields: Any) -> None:
        self.sock.sendall(json.dumps({"type": kind, **fields}).encode() + b"\n")

    def read_available(self) -> list[dict[str, Any]]:
        """The messages that one read brings in (the socket is readable); raises ProtocolError at end of stream."""
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ProtocolError("connection closed")
        self._buffer += chunk
        return self._complete()

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message, waiting at most ``timeout`` seconds (None: until one comes or the stream ends)."""
        while True:
            messages = self._complete(limit=1)
            if messages:
                return messages[0]
            self.sock.settimeout(timeout)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                raise ProtocolError(f"no message within {timeout:g} s") from None
            if not chunk:
                raise ProtocolError("connection closed")
            self._buffer += chunk

    def _complete(self, limit: int | None = None) -> list[dict[str, Any]]:
        messages = []
        while b"\n" in self._buffer and (limit is None or len(messages) < limit):
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                raise ProtocolError(f"not a protocol message: {line[:80]!r}") from None
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ProtocolError(f"not a protocol message: {line[:80]!r}")
            messages.append(message)
        return messages


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


def cmd_ab(args) -> int:
    if args.protocol:
        print(PROTOCOL)
        return 0
    if args.a is None or args.b is None:
        raise UsageError("ab needs both sides: --a CMD --b CMD (each a cifar-bench command, e.g. venv/bin/cifar-bench)")
    run_argv = list(args.run)
    if run_argv[:1] == ["--"]:
        run_argv = run_argv[1:]
    if run_argv[:1] != ["run"] or len(run_argv) < 2:
        raise UsageError("ab runs one workload on both sides: end with '-- run RECIPE [flags]'")
    if "--results-dir" in run_argv:
        raise UsageError("ab writes each side's records to its own folder: use --results-a/--results-b, "
                         "not --results-dir")  # fmt: skip
    if not args.timeout > 0:
        raise UsageError(f"--timeout is in seconds and must be above 0, got {args.timeout:g}")
    sides = [Side("a", command_of(args.a, "--a")), Side("b", command_of(args.b, "--b"))]
    folders = {"a": args.results_a, "b": args.results_b}
    match = Match(sides, args.timeout)
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
    print(pairs_table(match.pairs))
    failed = [p for p in match.pairs for s in SIDES if p[s].get("status") in ("failed", "diverged")]
    return 1 if failed else 0


def pairs_table(pairs: list[dict[str, Any]]) -> str:
    rows = []
    for p in pairs:
        a, b = p["a"], p["b"]
        ratio = paired_ratio(b.get("steps") or [], a.get("steps") or [])
        rows.append({
            "repeat": p["repeat"],
            "first": p["first"],
            "status a/b": f"{a.get('status')}/{b.get('status')}",
            "train s a": _fmt(a.get("train_s")),
            "train s b": _fmt(b.get("train_s")),
            "b/a paired": "–" if ratio is None or a.get("status") != "ok" or b.get("status") != "ok"
            else f"{ratio['train_s']:.4f}",
            "records": f"{p['paths'][0]}  {p['paths'][1]}",
        })  # fmt: skip
    return tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def paired_ratio(own: list[float | None], partner: list[float | None]) -> dict[str, Any] | None:
    """This side's steps over its partner's, step k against step k; None when no step pairs."""
    pairs = [(o, p) for o, p in zip(own, partner, strict=False) if o is not None and p is not None and p > 0]
    if not pairs or not sum(p for _, p in pairs):
        return None
    return {
        "train_s": sum(o for o, _ in pairs) / sum(p for _, p in pairs),
        "step_median": statistics.median(o / p for o, p in pairs),
        "steps": len(pairs),
    }


# -- a side ---------------------------------------------------------------------------------------


class Turns:
    """The ``turn`` callback of one side's runs, and the hooks that start and time them."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.steps: list[float | None] = []
        self.resumed: float | None = None
        self.workload: dict[str, Any] = {}

    def wait_go(self) -> None:
        message = self.channel.receive()
        if message["type"] == "abort":
            raise SystemExit(f"cifar-bench: stopped by the coordinator: {message.get('reason', '')}")
        if message["type"] != "go":
            raise ProtocolError(f"expected 'go', got {message['type']!r}")

    def __call__(self) -> None:
        """After each training step: hand the baton over and wait for it to come back."""
        now = time.perf_counter()
        self.steps.append(now - self.resumed if self.resumed is not None else None)
        self.channel.send("turn")
        self.wait_go()
        self.resumed = time.perf_counter()

    @hookimpl
    def run_start(self, run) -> None:
        """Setup and warm-up are done: say what this run computes, then wait for the first turn."""
        workload = {**self.workload, "dataset": run.dataset, "train_size": run.train_size,
                    "test_size": run.test_size, "steps_per_epoch": run.steps_per_epoch, "epochs": run.epochs,
                    "batch_size": run.hyperparameters.get("batch_size")}  # fmt: skip
        self.channel.send("start", workload=workload)
        self.wait_go()
        self.resumed = None  # the first step of an epoch follows hooks and timers, not a step: left unpaired

    @hookimpl
    def epoch_end(self, run, epoch) -> None:
        self.resumed = None


def add_side_command(commands) -> None:
    side = commands.add_parser("ab-side")  # no help: started by 'ab', not by people
    side.add_argument("--fd", type=int, required=True)
    side.add_argument("--side", choices=SIDES, required=True)
    side.add_argument("run", nargs=argparse.REMAINDER)
    side.set_defaults(func=cmd_side)


def cmd_side(args) -> int:
    """One side: the runs ``run``'s flags describe, each taking turns with the other side's."""
    from . import cli, manager, orchestration
    from .devices import parse_devices

    channel = Channel(socket.socket(fileno=args.fd))
    run_argv = args.run[1:] if args.run[:1] == ["--"] else args.run
    try:
        run_args = cli.build_parser().parse_args(run_argv)
        run_args.plugins_global = [*args.plugins_global, *run_args.plugins_global]  # '-p' before 'ab-side'
        if run_args.command != "run":
            raise UsageError("ab-side runs 'run RECIPE [flags]'")
        for flag, value in (("--reference", run_args.reference), ("--nproc", run_args.nproc)):
            if value is not None:
                raise UsageError(f"ab takes turns between two installs: {flag} cannot be used with it")
        devices = parse_devices(run_args.device)
        if len(devices) != 1:
            raise UsageError(f"ab runs on one device, got {run_args.device}")
        import torch

        if run_args.threads is not None:
            torch.set_num_threads(run_args.threads)
        orchestration.preflight(run_args)  # the results folder, seeds, devices: before anything trains
        plugins, session = orchestration.load(run_args)
        plugins.check_broken()
        base = orchestration.run_config(run_args)
    except UsageError as exc:
        channel.send("error", message=one_line(exc), code=exc.exit_code)
        raise
    channel.send("hello", protocol=PROTOCOL, version=__version__, runs=run_args.repeats,
                 threads=torch.get_num_threads(), loader=run_args.loader,
                 install=str(Path(__file__).resolve().parent), python=sys.executable)  # fmt: skip
    welcome = channel.receive()
    if welcome["type"] != "welcome":
        raise SystemExit(f"cifar-bench: stopped by the coordinator: {welcome.get('reason', welcome['type'])}")
    if welcome.get("core") is not None:
        os.sched_setaffinity(0, {int(welcome["core"])})  # this (the training) thread, beside the other side's
    turns = Turns(channel)
    manager.register_inline(plugins, turns, "ab-turns")
    for repeat in range(run_args.repeats):
        # CPU settings are tuned per process: two installs taking turns keep torch's, fixed by --threads.
        config = replace(base, device=devices[0], seed=run_args.seed + repeat, repeat=repeat, cpu_tune=False)
        turns.steps, turns.resumed = [], None
        turns.workload = {"device": config.device, "loader": config.loader, "seed": config.seed,
                          "precision": config.variant.precision, "channels_last": config.variant.channels_last,
                          "compile": config.variant.compile, "threads": torch.get_num_threads()}  # fmt: skip
        record = session.run(config, turn=turns)
        summary = {"run_id": record.run_id, "status": record.status, "train_s": record.timings.train_s,
                   "total_s": record.timings.total_s, "steps": turns.steps,
                   "fingerprint": record.dataset.fingerprint if record.dataset else None,
                   "git_commit": record.environment.git_commit}  # fmt: skip
        channel.send("done", summary=summary)
        message = channel.receive()
        if message["type"] != "partner":
            raise SystemExit(f"cifar-bench: stopped by the coordinator: {message.get('reason', message['type'])}")
        partner, hello = message["summary"], message.get("hello") or {}
        record.partner = {"side": message.get("side"), "run_id": partner.get("run_id"),
                          "status": partner.get("status"), "train_s": partner.get("train_s"),
                          "version": hello.get("version"), "install": hello.get("install"),
                          "git_commit": partner.get("git_commit"), "protocol": PROTOCOL}  # fmt: skip
        if record.status == partner.get("status") == "ok":
            record.paired_ratio = paired_ratio(turns.steps, partner.get("steps") or [])
        path = session.finish(record, run_args.results_dir)  # run_end, then the one write
        channel.send("written", path=str(path))
    channel.send("bye")
    return 0


def add_command(commands, plugin_flag) -> None:
    parser = commands.add_parser(
        "ab",
        help="two installs run one workload, taking turns step by step; records carry paired time ratios",
        description="Start 'CMD run RECIPE [flags]' for each side and let them take turns one training step "
        "each. Example: cifar-bench ab --a venv-base/bin/cifar-bench --b venv-pr/bin/cifar-bench "
        "-- run baseline --dataset synthetic --limit-train 1000 --epochs 1 --repeats 5 --threads 1",
    )
    parser.add_argument("--a", metavar="CMD", help="side a's cifar-bench command (the base): venv-base/bin/cifar-bench")
    parser.add_argument("--b", metavar="CMD", help="side b's cifar-bench command (the change)")
    parser.add_argument("--results-a", type=Path, default=Path("results/a"), help="side a's records [results/a]")
    parser.add_argument("--results-b", type=Path, default=Path("results/b"), help="side b's records [results/b]")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S",
                        help="longest a side may take to answer: setup, one step, evaluation [300]")  # fmt: skip
    parser.add_argument("--protocol", action="store_true", help="print the lockstep protocol version and exit")
    parser.add_argument("run", nargs=argparse.REMAINDER, help="-- run RECIPE [flags]: the workload of both sides")
    parser.set_defaults(func=cmd_ab)
    add_side_command(commands)
