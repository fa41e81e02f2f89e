"""How the coordinator reaches parties: a ``Transport`` and the in-process one.

One :meth:`Transport.exchange` is one round trip: it carries, for each party, an ordered
list of :class:`Call` s (several protocol steps fused into one message) and returns each
call's reply. ``InProcessTransport`` calls ``Party`` objects directly (tests, sweeps, the
Python API); the Flower transport sends the same calls as Flower messages.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The Party methods a coordinator may invoke remotely, by kind of exchange (the Flower
#: codec maps each kind to one message type). Listed here only.
METHOD_GROUPS: dict[str, frozenset[str]] = {
    "hello": frozenset({"hello"}),
    # exact mode: forward/backward; chunked mode (steps-per-round = K): features/apply
    "step": frozenset({"critic_forward", "critic_penalty", "critic_backward",
                       "generator_forward",
                       "generator_backward", "critic_features", "generator_features",
                       "critic_apply", "generator_apply"}),
    # resumable checkpoints (each party writes/reads/checks only its own files)
    "checkpoint": frozenset({"start_checkpoints", "save_checkpoint", "check_checkpoint",
                             "load_checkpoint"}),
    "generate": frozenset({"sample"}),
    # after publication, the synthetic data to its recipients (Flower only: served by
    # vflgan_app.flower.node.receive_delivery, not by a Party)
    "deliver": frozenset({"deliver"}),
}
PROTOCOL_METHODS = frozenset().union(*METHOD_GROUPS.values())

#: The intermediate features of one critic step, in the order every side uses.
CRITIC_FEATURES = ("h_real", "h_fake", "h_hat")


def abs_peak(t: Any) -> float:
    """``max |t|`` of a float tensor in one pass: NaN if it holds a NaN, inf if an inf.

    The check of every tensor a party or the server receives: ``not abs_peak(t) <= limit``
    refuses NaN, inf and values beyond ``limit`` at once (``isfinite(t).all()`` plus
    ``abs().max()`` cost 3-25x more, and were a tenth of a chunked step). 0.0 when empty.
    """
    if t.numel() == 0:
        return 0.0
    lo, hi = (float(v) for v in t.detach().aminmax())  # both NaN when any entry is NaN
    return math.nan if math.isnan(lo) else max(-lo, hi)


@dataclass(frozen=True)
class Call:
    """One protocol step requested from a party: ``method(**args)``."""

    method: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in PROTOCOL_METHODS:
            raise ValueError(
                f"call: method {self.method!r} is not a protocol step; expected one of "
                f"{sorted(PROTOCOL_METHODS)}"
            )


class Transport(abc.ABC):
    """Moves calls to parties and replies back; one ``exchange`` = one round trip."""

    round_trips: int = 0

    @abc.abstractmethod
    def party_ids(self) -> list[int]:
        """The ids of the reachable parties."""

    @abc.abstractmethod
    def exchange(self, calls: dict[int, list[Call]]) -> dict[int, list[dict]]:
        """Run each party's calls in order; return the replies in the same layout."""


PayloadObserver = Callable[[str, int, str, dict], None]


class InProcessTransport(Transport):
    """Calls ``Party`` objects in this process.

    Args:
        parties: the parties, any order (addressed by ``party_id``).
        observer: optional ``f(direction, party_id, method, payload)`` called for every
            payload that would cross a network (``"request"`` and ``"reply"``): the
            wire audit records through it.
    """

    def __init__(self, parties: Sequence, observer: PayloadObserver | None = None) -> None:
        self.parties = {p.party_id: p for p in parties}
        if len(self.parties) != len(parties):
            raise ValueError("two parties share a party_id; expected unique ids")
        self.observer = observer
        self.round_trips = 0

    def party_ids(self) -> list[int]:
        """Party ids in ascending order."""
        return sorted(self.parties)

    def exchange(self, calls: dict[int, list[Call]]) -> dict[int, list[dict]]:
        """Run the calls party by party."""
        self.round_trips += 1
        replies: dict[int, list[dict]] = {}
        for pid, plist in calls.items():
            party = self.parties[pid]
            out = []
            for call in plist:
                if self.observer:
                    self.observer("request", pid, call.method, call.args)
                reply = getattr(party, call.method)(**call.args)
                if self.observer:
                    self.observer("reply", pid, call.method, reply)
                out.append(reply)
            replies[pid] = out
        return replies
