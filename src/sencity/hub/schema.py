"""Tables of the context hub, for both backends.

An entity is one row of ``hub_entities``:

* ``types`` — JSON array of expanded type IRIs (also one row each in ``hub_entity_types``);
* ``attrs`` — JSON object ``{expanded attribute IRI: [instance, ...]}``; an instance is the
  attribute in NGSI-LD normalized form with expanded sub-property names, e.g.
  ``{"type": "Property", "value": 21.5, "unitCode": "CEL", "observedAt": "…",
  "createdAt": "…", "modifiedAt": "…", "https://…/accuracy": {"type": "Property", "value": 0.1}}``;
  several instances only when they differ by ``datasetId`` (the default instance has none);
* the ``location`` GeoProperty is indexed: an R*Tree of bounding boxes (``hub_location``)
  on SQLite, a PostGIS ``geometry(Geometry, 4326)`` column with GiST indexes on PostgreSQL.
"""

from __future__ import annotations

from sencity.store.base import Migration

MIGRATIONS = [
    Migration(
        "hub",
        1,
        sqlite=[
            """CREATE TABLE hub_entities (
                rid INTEGER PRIMARY KEY,
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                types TEXT NOT NULL,
                attrs TEXT NOT NULL,
                scopes TEXT,
                created_at TEXT NOT NULL,
                modified_at TEXT NOT NULL,
                UNIQUE (tenant, id))""",
            """CREATE TABLE hub_entity_types (
                tenant TEXT NOT NULL, type TEXT NOT NULL,
                rid INTEGER NOT NULL REFERENCES hub_entities(rid) ON DELETE CASCADE,
                PRIMARY KEY (tenant, type, rid)) WITHOUT ROWID""",
            "CREATE INDEX hub_entity_types_rid ON hub_entity_types(rid)",
            "CREATE VIRTUAL TABLE hub_location USING rtree(rid, minx, maxx, miny, maxy)",
        ],
        postgresql=[
            "CREATE EXTENSION IF NOT EXISTS postgis",
            """CREATE TABLE hub_entities (
                rid BIGSERIAL PRIMARY KEY,
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                types JSONB NOT NULL,
                attrs JSONB NOT NULL,
                scopes JSONB,
                created_at TEXT NOT NULL,
                modified_at TEXT NOT NULL,
                location geometry(Geometry, 4326),
                UNIQUE (tenant, id))""",
            """CREATE TABLE hub_entity_types (
                tenant TEXT NOT NULL, type TEXT NOT NULL,
                rid BIGINT NOT NULL REFERENCES hub_entities(rid) ON DELETE CASCADE,
                PRIMARY KEY (tenant, type, rid))""",
            "CREATE INDEX hub_entity_types_rid ON hub_entity_types(rid)",
            "CREATE INDEX hub_entities_location ON hub_entities USING GIST (location)",
            "CREATE INDEX hub_entities_location_geog ON hub_entities "
            "USING GIST ((location::geography))",
        ],
    ),
    Migration(
        "hub",
        2,
        sqlite=[
            "CREATE TABLE hub_contexts (id TEXT PRIMARY KEY, body TEXT NOT NULL, "
            "created_at TEXT NOT NULL)"
        ],
        postgresql=[
            "CREATE TABLE hub_contexts (id TEXT PRIMARY KEY, body TEXT NOT NULL, "
            "created_at TEXT NOT NULL)"
        ],
    ),
]
