"""The inventory in the state store: one key per writer, merged on reading.

Every writer (one worker process of one gateway node: ``writer_id()``, e.g.
``gw1-4242``) keeps its own cumulative ``Inventory`` in memory and writes all of it to
``inventory:<writer>`` now and then (``save``, every ~10 s; the server's task). A key has
one writer, so there is no read-modify-write and no lost update, whatever the backend;
a writer that goes away stops refreshing its key and it expires after ``TTL`` (30 days),
so dead writers age out of the view. ``load`` scans ``inventory:`` and merges every
writer's state into one view (``apiward inventory``, spec export, the admin API).

The value is ``orjson.dumps(inventory.to_dict())``: templates, learned literal segments,
identity names and counts; never a body, a query, a path with its ids or a secret.
"""

from __future__ import annotations

import logging
import os
import re
import socket

import orjson

from apiward.inventory.aggregates import Inventory
from apiward.state.store import Store

__all__ = ["PREFIX", "TTL", "load", "save", "writer_id"]

log = logging.getLogger("apiward.inventory")

PREFIX = "inventory:"
TTL = 30 * 86400.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def writer_id(node: str | None = None, pid: int | None = None) -> str:
    """This process's writer name: ``<node>-<pid>`` (node: the host name by default),
    made of ``A-Za-z0-9_.-`` only."""
    name = _UNSAFE.sub("_", node or socket.gethostname() or "node")[:64]
    return f"{name}-{os.getpid() if pid is None else pid}"


async def save(store: Store, writer: str, inventory: Inventory, *,
               ttl: float = TTL) -> int:
    """Write ``inventory`` (all of it, cumulative) as ``writer``'s state; the bytes written.

    ``to_dict`` runs here, on the caller's thread (the inventory is not thread-safe):
    a few ms per thousand endpoints with clients, see the aggregates tests."""
    value = orjson.dumps(inventory.to_dict())
    await store.set(PREFIX + writer, value, ttl)
    return len(value)


async def load(store: Store, *, spec_templates: dict[str, set[tuple[str, str]]] | None = None,
               max_endpoints: int = 2000, max_clients_per_endpoint: int = 100,
               learner_nodes: int = 10_000) -> Inventory:
    """Every live writer's state merged into one inventory (empty without any).

    ``spec_templates``, when given, replaces the specs the writers recorded (theirs are
    merged otherwise): the report then judges shadow and zombie endpoints by the specs in
    the config now. A writer's state that cannot be read (damaged, another format) is
    skipped with a warning."""
    merged = Inventory(max_endpoints=max_endpoints,
                       max_clients_per_endpoint=max_clients_per_endpoint,
                       learner_nodes=learner_nodes)
    for key, value in await store.scan(PREFIX):
        try:
            state = Inventory.from_dict(orjson.loads(value))
        except ValueError as exc:  # orjson.JSONDecodeError is one
            log.warning("inventory: skipped the state of %s: %s", key[len(PREFIX):], exc)
            continue
        merged.merge(state)
    if spec_templates is not None:
        merged.spec_templates = {api: {(m.upper(), t) for m, t in ops}
                                 for api, ops in spec_templates.items()}
    return merged
