"""Runs that take turns, one training step each: a reference and a candidate timed side by side.

A shared machine's speed wanders: on a 2-core VM, 250 steps of the
baseline take anywhere from 0.45 to 0.85 s from one second to the next,
with nothing else running in the guest. Two runs one after the other
each see a different machine; two runs that alternate *steps* see the
same one, so the ratio of their train times keeps the difference between
the recipes and loses most of the machine's (see ``benchmarks/`` and
docs/comparing.md for the figures).

Each run keeps its own thread and its usual code path (``Session.run``);
a baton lets exactly one of them work at a time, and a run hands it over
after each training step. While a run waits, its phase timer is paused
(so its train time is its own steps only) and its global random state is
put aside (so it trains exactly as it would alone). With one torch thread,
both runs are also kept on one and the same CPU core: a VM's cores are not
equally fast from moment to moment, and two runs on two cores would each
measure their own (on the 2-core VM the noise of the ratio drops from ~9%
to ~2% IQR/median). A run that ends early (failed, diverged) leaves, and
the other goes on alone; an interrupted run interrupts the other too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import torch

from ..training.state import RunResult


class Baton:
    """Whose turn it is, among players 0..n-1; play starts with player 0."""

    def __init__(self, players: int) -> None:
        self._cond = threading.Condition()
        self._active = list(range(players))
        self._holder = 0
        self.stopped = False  # set when a player was interrupted: the others stop at their next turn

    def wait(self, me: int) -> None:
        """Block until it is ``me``'s turn; raises KeyboardInterrupt once play has been stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._holder == me or self.stopped)
            if self.stopped:
                raise KeyboardInterrupt

    def turn(self, me: int) -> None:
        """Hand over to the next player still in play and wait for the baton to come back."""
        with self._cond:
            self._pass_from(me)
        self.wait(me)

    def leave(self, me: int, *, stop: bool = False) -> None:
        """``me`` is done; ``stop`` ends play for everyone."""
        with self._cond:
            if self._holder == me:
                self._pass_from(me)
            self._active.remove(me)
            self.stopped = self.stopped or stop
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    def _pass_from(self, me: int) -> None:
        i = self._active.index(me)
        self._holder = self._active[(i + 1) % len(self._active)]
        self._cond.notify_all()


def shared_core(loader: str) -> int | None:
    """The one CPU core runs in lockstep should share, or None to leave them where the OS puts them.

    Only when torch computes on the calling thread (one intra-op thread) and
    no worker processes feed the batches (the tensor loader): workers would
    inherit the pin and compete with training for the core. Linux only.
    """
    if not hasattr(os, "sched_setaffinity") or torch.get_num_threads() != 1 or loader != "tensor":
        return None
    return max(os.sched_getaffinity(0))


def run_lockstep(
    run: Callable[[int, Callable[[], None]], RunResult], players: int, core: int | None = None
) -> list[RunResult | None]:
    """Play ``run(i, turn)`` for each i, alternating at every ``turn()``; their records, in order.

    ``run`` must call ``turn`` after each training step (``Session.run`` does,
    given ``turn=``). Player 0 runs on the calling thread, so that Ctrl-C
    reaches a run and is recorded as it would be alone. An exception that
    escapes a run (bad input) stops the others and is raised here. A run
    that never started (play stopped before its first turn) gives None.
    ``core``: pin every player's thread to this CPU core while it plays.
    """
    baton = Baton(players)
    results: list[RunResult | BaseException | None] = [None] * players

    def play(i: int) -> None:
        allowed = os.sched_getaffinity(0) if core is not None else None
        try:
            if core is not None:
                os.sched_setaffinity(0, {core})  # on Linux, 0 is the calling thread, not the whole process
            baton.wait(i)
            results[i] = run(i, lambda: baton.turn(i))
        except BaseException as exc:  # handed to the calling thread, raised there
            results[i] = exc
        finally:
            failed = not isinstance(results[i], RunResult) or results[i].record.status == "interrupted"
            baton.leave(i, stop=failed)
            if allowed is not None:
                os.sched_setaffinity(0, allowed)

    others = [threading.Thread(target=play, args=(i,), name=f"lockstep-{i}") for i in range(1, players)]
    for thread in others:
        thread.start()
    play(0)
    for thread in others:
        while thread.is_alive():
            try:
                thread.join()
            except KeyboardInterrupt:  # Ctrl-C while another run goes on alone: it stops at its next step
                baton.stop()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, KeyboardInterrupt):
            raise result
    return [r if isinstance(r, RunResult) else None for r in results]
