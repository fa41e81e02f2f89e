"""One builder for the core unit tests: a tiny in-process federation.

Constructors of Party, PartySettings, InProcessTransport and Coordinator are called only
here, so a change of signature touches this file alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tests.vflgan_app.conftest import TINY, make_table
from vflgan_app.core.coordinator import Coordinator
from vflgan_app.core.party import Party, PartySettings
from vflgan_app.core.protocol import Call, InProcessTransport, Transport
from vflgan_app.data.partition import PartyData, prepare_parties, split_vertical

ID_COLUMN = "record_id"
CATEGORICAL = ["color", "kind"]
PARTY_SPLITS = {
    2: [["a", "color", "count"], ["b", "c", "kind"]],
    3: [["a", "color"], ["b", "count"], ["c", "kind"]],
}

# f(calls, replies) -> replies: rewrites what the parties answered (fault injection)
Tamper = Callable[[dict[int, list[Call]], dict[int, list[dict]]], dict[int, list[dict]]]


class RecordingTransport(Transport):
    """An ``InProcessTransport`` that records every exchange and may rewrite replies.

    Attributes:
        calls: per exchange, ``{party_id: [(method, step or None), ...]}``.
        replies: per exchange, the replies as the parties returned them.
        tamper: optional :data:`Tamper` applied before the coordinator sees a reply.
    """

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self.calls: list[dict[int, list[tuple[str, int | None]]]] = []
        self.replies: list[dict[int, list[dict]]] = []
        self.tamper: Tamper | None = None

    @property
    def round_trips(self) -> int:  # type: ignore[override]
        return self.inner.round_trips

    def party_ids(self) -> list[int]:
        return self.inner.party_ids()

    def exchange(self, calls: dict[int, list[Call]]) -> dict[int, list[dict]]:
        self.calls.append({
            p: [(c.method, c.args.get("step")) for c in cs] for p, cs in calls.items()
        })
        replies = self.inner.exchange(calls)
        self.replies.append(replies)
        return self.tamper(calls, replies) if self.tamper else replies


@dataclass
class Federation:
    """What :func:`make_federation` built."""

    parties: list[Party]
    transport: RecordingTransport
    coordinator: Coordinator
    data: list[PartyData] = field(repr=False)

    @property
    def batch_size(self) -> int:
        return self.coordinator.arch.batch_size


def make_federation(
    n_parties: int = 2,
    n_rows: int = 32,
    seed: int = 3,
    n_critic: int = 5,
    sampler: str = "shuffle",
    arch=TINY,
    edit_data: Callable[[list[PartyData]], list[PartyData]] | None = None,
    expected_parties: int | None = None,
    handshake: bool = True,
    trunk: int = 0,
    server_trunk: int | None = None,
) -> Federation:
    """Build parties on a ``make_table(n_rows)`` split, a recording transport, a coordinator.

    Args:
        n_parties: 2 or 3 (column splits of :data:`PARTY_SPLITS`).
        n_rows: rows of the table.
        seed: run seed (parties and coordinator); the same seed gives identical weights.
        n_critic: critic steps per generator step.
        sampler: batch sampler.
        arch: architecture preset (``TINY``: batch 8, IF width 8).
        edit_data: rewrite the prepared ``PartyData`` list before parties are built
            (misaligned ids, duplicated columns, a missing party ...).
        expected_parties: passed to the coordinator.
        handshake: run ``coordinator.handshake()`` (turn off to test its refusals).
        trunk: generator blocks in a shared trunk (the parties' setting).
        server_trunk: the coordinator's trunk setting, if it differs from ``trunk``.
    """
    tables = split_vertical(make_table(n_rows), PARTY_SPLITS[n_parties], ID_COLUMN)
    data = prepare_parties(tables, ID_COLUMN, categorical=CATEGORICAL)
    if edit_data is not None:
        data = edit_data(data)
    settings = PartySettings(seed=seed, lambda_gp=arch.lambda_gp, lr=arch.lr,
                             batch_size=arch.batch_size, sampler=sampler, trunk=trunk)
    parties = [Party(d, arch, settings) for d in data]
    transport = RecordingTransport(InProcessTransport(parties))
    coord = Coordinator(transport, arch, seed=seed, n_critic=n_critic, sampler=sampler,
                        expected_parties=expected_parties,
                        generator_trunk=trunk if server_trunk is None else server_trunk)
    if handshake:
        coord.handshake()
    return Federation(parties, transport, coord, data)
