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
    Migration(
        "hub",
        3,
        sqlite=[
            """CREATE TABLE hub_tentities (
                tid INTEGER PRIMARY KEY, tenant TEXT NOT NULL, id TEXT NOT NULL,
                types TEXT NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT,
                UNIQUE (tenant, id))""",
            """CREATE TABLE hub_tseries (
                sid INTEGER PRIMARY KEY,
                tid INTEGER NOT NULL REFERENCES hub_tentities(tid) ON DELETE CASCADE,
                attr TEXT NOT NULL, ds TEXT NOT NULL, kind TEXT NOT NULL,
                UNIQUE (tid, attr, ds))""",
            # clustered by series and time: a series' range is one sequential read
            """CREATE TABLE hub_history (
                sid INTEGER NOT NULL, ts INTEGER NOT NULL, iid INTEGER NOT NULL,
                obs INTEGER NOT NULL, rec INTEGER NOT NULL, mod INTEGER NOT NULL,
                deleted INTEGER NOT NULL, num REAL, val TEXT, meta TEXT,
                PRIMARY KEY (sid, ts, iid)) WITHOUT ROWID""",
            """CREATE TABLE hub_rollup (
                sid INTEGER NOT NULL, ts INTEGER NOT NULL, period INTEGER NOT NULL,
                n INTEGER NOT NULL, nn INTEGER NOT NULL, s REAL, ss REAL, mn REAL, mx REAL,
                PRIMARY KEY (sid, ts)) WITHOUT ROWID""",
        ],
        postgresql=[
            """CREATE TABLE hub_tentities (
                tid BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, id TEXT NOT NULL,
                types JSONB NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT,
                UNIQUE (tenant, id))""",
            """CREATE TABLE hub_tseries (
                sid BIGSERIAL PRIMARY KEY,
                tid BIGINT NOT NULL REFERENCES hub_tentities(tid) ON DELETE CASCADE,
                attr TEXT NOT NULL, ds TEXT NOT NULL, kind TEXT NOT NULL,
                UNIQUE (tid, attr, ds))""",
            # one partition per calendar month (created on demand, see hub.temporal)
            """CREATE TABLE hub_history (
                sid BIGINT NOT NULL, ts BIGINT NOT NULL, iid BIGINT NOT NULL,
                obs SMALLINT NOT NULL, rec BIGINT NOT NULL, mod BIGINT NOT NULL,
                deleted SMALLINT NOT NULL, num DOUBLE PRECISION, val TEXT, meta TEXT,
                PRIMARY KEY (sid, ts, iid)) PARTITION BY RANGE (ts)""",
            "CREATE INDEX hub_history_ts_brin ON hub_history USING BRIN (ts)",
            """CREATE TABLE hub_rollup (
                sid BIGINT NOT NULL, ts BIGINT NOT NULL, period BIGINT NOT NULL,
                n BIGINT NOT NULL, nn BIGINT NOT NULL, s DOUBLE PRECISION,
                ss DOUBLE PRECISION, mn DOUBLE PRECISION, mx DOUBLE PRECISION,
                PRIMARY KEY (sid, ts))""",
        ],
    ),
]
