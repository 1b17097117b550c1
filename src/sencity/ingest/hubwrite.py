"""Writing ingested data into the hub, the one way every ingestion path uses.

A command-line import opens the platform itself (:func:`open_platform`): the same
plugins and write hooks as the server, so history is kept and subscriptions are
notified (the server delivers what a command queued in the outbox).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sencity.errors import SenCityError
from sencity.hub.model import Entity, parse_entity

if TYPE_CHECKING:
    from sencity.config import Settings
    from sencity.core.platform import Platform
    from sencity.hub.api import HubService


@contextmanager
def open_platform(settings: Settings) -> Iterator[Platform]:
    """The platform of ``settings`` (store migrated, plugins started up), closed after."""
    from sencity.core.platform import Platform

    platform = Platform(settings)
    try:
        yield platform
    finally:
        platform.close()


@dataclass
class WriteResult:
    """What a batch did: ids written (created or changed) and errors by position."""

    written: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)  # index in the batch -> problem
    errors_by_id: dict[str, str] = field(default_factory=dict)  # entity id -> problem


class HubWriter:
    """Batches of NGSI-LD entity bodies (dicts) → one hub transaction each."""

    def __init__(self, hub: HubService, context: Any = None) -> None:
        self.hub = hub
        self.ctx = hub.resolver.resolve(context)

    @classmethod
    def of(cls, platform: Platform, context: Any = None) -> HubWriter:
        hub: HubService | None = platform.state.get("hub")
        if hub is None:
            raise RuntimeError("ingestion needs the hub plugin (sencity.hub.plugin)")
        return cls(hub, context)

    def parse(self, body: dict[str, Any]) -> Entity:
        """An entity body as the batch endpoint would take it (BadRequest if invalid)."""
        return parse_entity(body, self.ctx)

    def write(
        self, tenant: str, bodies: Sequence[dict[str, Any]], update: bool = True
    ) -> WriteResult:
        """Upsert ``bodies`` in one transaction (``update``: merge attributes into an
        existing entity, as ``upsert?options=update``; else replace it).  Invalid bodies
        are reported by index and not written; the valid ones are."""
        res = WriteResult()
        entities: list[Entity] = []
        index: dict[str, int] = {}
        for n, body in enumerate(bodies):
            try:
                entity = self.parse(body)
            except SenCityError as exc:
                res.errors[n] = exc.detail
                continue
            entities.append(entity)
            index[entity.id] = n
        done = self.write_entities(tenant, entities, update)
        for eid, detail in done.errors_by_id.items():
            res.errors[index.get(eid, -1)] = detail
        res.written, res.created = done.written, done.created
        return res

    def write_entities(
        self, tenant: str, entities: Sequence[Entity], update: bool = True
    ) -> WriteResult:
        """Upsert entities already parsed (see :meth:`parse`); errors by entity id."""
        res = WriteResult()
        changes, errs = self.hub.upsert(tenant, entities, update)
        res.errors_by_id = {eid: err.detail for eid, err in errs.items()}
        res.written = list(changes)
        res.created = [i for i, c in changes.items() if c.kind == "created"]
        return res
