"""FlowerTransport: the coordinator's calls as Flower messages through a ``Grid``.

One :meth:`FlowerTransport.exchange` pushes one message per party and polls for the
replies with a short interval (``send_and_receive`` sleeps 3 s between pulls in
deployment) until a per-round timeout. A party that does not answer in time, answers
with an error, or sends a reply that cannot be decoded stops the round with
:class:`~vflgan_app.core.coordinator.ReplyError` naming the party.
"""

from __future__ import annotations

import logging
import os
import time

from vflgan_app.core.protocol import Call, PayloadObserver, Transport
from vflgan_app.errors import HandshakeError, PartyTimeout, ReplyError
from vflgan_app.flower import codec

logger = logging.getLogger(__name__)

POLL_CAP_S = float(os.environ.get("VFLGAN_SERVER_POLL_CAP", "0.01"))  # see poll_cap
SILENT_GRACE_S = 2.0  # how long the handshake waits for extra nodes once all parties answered
OBJECT_BACKOFF_S = 0.01  # first retry of a reply object that is not stored yet (flwr: 1 s)


def shorten_object_backoff(initial: float = OBJECT_BACKOFF_S, cap: float = 1.0) -> bool:
    """Make the deployment grid retry a missing reply object after ``initial`` seconds.

    Wraps the ``pull_objects`` that ``flwr.superlink.grid.http_grid`` (flwr 1.42) calls
    when it pulls replies; the retries still double up to ``cap`` and keep flwr's limits.
    Returns False (and changes nothing) where that grid module or name is not there.
    """
    import functools

    try:
        from flwr.superlink.grid import http_grid
    except ImportError:
        return False
    pull = getattr(http_grid, "pull_objects", None)
    if pull is None:
        return False
    base = getattr(pull, "func", pull)  # idempotent: wrap flwr's function, not ours
    http_grid.pull_objects = functools.partial(base, initial_backoff=initial,
                                               backoff_cap=cap)
    return True


def _flower_message(content, message_type: str, dst_node_id: int, group_id: str):
    from flwr.app import Message

    return Message(content, dst_node_id=dst_node_id, message_type=message_type,
                   group_id=group_id)


class FlowerTransport(Transport):
    """Reach the parties (SuperNodes) through a Flower ``Grid``.

    Args:
        grid: the ServerApp's grid (or any object with ``get_node_ids``,
            ``create_message``, ``push_messages`` and ``pull_messages``).
        num_parties: how many parties must connect before training.
        round_timeout: seconds one round trip may take before the run stops.
        connect_timeout: seconds to wait for all SuperNodes to connect.
        poll_interval: seconds before the second pull of a round trip.
        poll_cap: the wait grows by 1.5x per empty pull up to this many seconds.
        observer: optional ``f(direction, node_id, message_type, content)`` called with
            every ``RecordDict`` pushed or pulled (the wire audit).
        message_factory: ``f(content, message_type, dst_node_id, group_id)`` building
            an instruction; default ``flwr.app.Message`` (tests pass a fake).
    """

    def __init__(self, grid, num_parties: int, round_timeout: float = 120.0,
                 connect_timeout: float = 120.0, poll_interval: float = 0.01,
                 poll_cap: float = POLL_CAP_S,
                 observer: PayloadObserver | None = None, message_factory=None) -> None:
        self.grid = grid
        self.message_factory = message_factory or _flower_message
        self.num_parties = num_parties
        self.round_timeout = round_timeout
        self.connect_timeout = connect_timeout
        self.poll_interval = poll_interval
        self.poll_cap = max(poll_interval, poll_cap)
        self.observer = observer
        self.round_trips = 0
        self.round_s: list[float] = []  # wall seconds of each round trip
        self.node_of: dict[int, int] = {}

    # -- discovery ------------------------------------------------------------------------
    def connect(self) -> dict[int, int]:
        """Wait for the SuperNodes, ask each for its party id; return ``{party: node}``.

        Raises:
            PartyTimeout: fewer than ``num_parties`` nodes connected in time.
            HandshakeError: two nodes claim the same party id.
        """
        deadline = time.monotonic() + self.connect_timeout
        while len(nodes := sorted(self.grid.get_node_ids())) < self.num_parties:
            if time.monotonic() > deadline:
                raise PartyTimeout(
                    f"only {len(nodes)} of {self.num_parties} parties connected within "
                    f"{self.connect_timeout:.0f} s"
                )
            time.sleep(0.5)
        wanted = set(range(self.num_parties))

        def all_claimed(got: dict[int, list[dict]]) -> bool:
            return wanted <= {int(r[-1]["party_id"]) for r in got.values()}

        # A node that crashed stays listed until its heartbeat expires (about a minute):
        # once every party id is claimed, silent nodes are skipped after a short grace.
        replies = self._round({n: [Call("hello")] for n in nodes}, label=lambda n: f"node {n}",
                              enough=all_claimed)
        claims: dict[int, list[int]] = {}
        for node, r in replies.items():
            claims.setdefault(int(r[-1]["party_id"]), []).append(node)
        dup = {p: ns for p, ns in claims.items() if len(ns) > 1}
        if dup:
            p, ns = next(iter(sorted(dup.items())))
            raise HandshakeError(f"party id {p} is claimed by nodes {ns}; expected each "
                                 "party id at exactly one SuperNode (check partition-id)")
        self.node_of = {p: ns[0] for p, ns in claims.items()}
        logger.info("parties connected: %s", {p: n for p, n in sorted(self.node_of.items())})
        return self.node_of

    def party_ids(self) -> list[int]:
        """Party ids learned by :meth:`connect`."""
        if not self.node_of:
            self.connect()
        return sorted(self.node_of)

    # -- one round trip ---------------------------------------------------------------
    def exchange(self, calls: dict[int, list[Call]]) -> dict[int, list[dict]]:
        """Send each party its calls in one message; return the decoded replies."""
        unknown = sorted(set(calls) - set(self.node_of))
        if unknown:
            raise ReplyError(f"parties {unknown} are not connected")
        by_node = self._round({self.node_of[p]: c for p, c in calls.items()},
                              label=self._party_label)
        party_of = {n: p for p, n in self.node_of.items()}
        return {party_of[n]: r for n, r in by_node.items()}

    def _party_label(self, node: int) -> str:
        party_of = {n: p for p, n in self.node_of.items()}
        return f"party {party_of.get(node, '?')} (node {node})"

    def _round(self, calls: dict[int, list[Call]], label, enough=None) -> dict[int, list[dict]]:
        """One message per node; the decoded replies by node.

        ``enough(got)``: when it holds, nodes still silent :data:`SILENT_GRACE_S` later
        are left out (the handshake's crashed-node case) instead of timing the round out.
        """
        self.round_trips += 1
        t0 = time.monotonic()
        group = str(self.round_trips)
        msgs, node_of_msg = [], {}
        for node, plist in calls.items():
            mtype = codec.message_type_for(plist)
            content = codec.encode_calls(plist)
            if self.observer:
                self.observer("request", node, mtype, content)
            msgs.append((node, self.message_factory(content, mtype, node, group)))
        for (node, _), mid in zip(msgs, self.grid.push_messages([m for _, m in msgs]),
                                  strict=True):
            node_of_msg[mid] = node
        pending = set(node_of_msg)
        got: dict[int, list[dict]] = {}
        deadline = time.monotonic() + self.round_timeout
        grace_end, wait = None, self.poll_interval
        while pending:
            for reply in self.grid.pull_messages(list(pending)):
                mid = reply.metadata.reply_to_message_id
                if mid not in pending:
                    continue
                pending.discard(mid)
                node = node_of_msg[mid]
                if reply.has_error():
                    raise ReplyError(f"{label(node)} answered with an error: "
                                     f"{reply.error.reason}")
                if self.observer:
                    self.observer("reply", node, "reply", reply.content)
                try:
                    got[node] = codec.decode_replies(reply.content)
                except Exception as e:
                    raise ReplyError(f"{label(node)} sent a malformed reply: {e}") from e
                if len(got[node]) != len(calls[node]):
                    raise ReplyError(f"{label(node)} sent {len(got[node])} replies; "
                                     f"expected {len(calls[node])}")
            if pending and enough is not None and enough(got):
                grace_end = grace_end or time.monotonic() + SILENT_GRACE_S
                if time.monotonic() > grace_end:
                    logger.warning("left out silent %s (every party answered)", ", ".join(
                        sorted(label(node_of_msg[m]) for m in pending)))
                    break
            if pending:
                if time.monotonic() > deadline:
                    late = sorted(label(node_of_msg[m]) for m in pending)
                    raise PartyTimeout(f"{', '.join(late)} did not answer within "
                                       f"{self.round_timeout:g} s (round {group})")
                time.sleep(wait)
                wait = min(self.poll_cap, wait * 1.5)
        self.round_s.append(time.monotonic() - t0)
        return got
