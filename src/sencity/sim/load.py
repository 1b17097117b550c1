"""Load mode: ``--devices N --rate R/s --duration D`` publishes R messages a second,
spread over N provisioned devices, for D, then counts through the platform's public
interfaces what became of them:

- *published*: messages the MQTT broker acknowledged (PUBACK);
- *accepted*: readings in the entities' history (the temporal API's ``totalCount`` of
  the run's time window);
- *dead-lettered*: new dead letters of the tenant (``/ingest/v1/deadletters``).

``--invalid F`` makes a share F of the messages deliberately unreadable (a text where
a number is expected), so the dead-letter path is measured too.  The report balances
when published = accepted + dead-lettered.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sencity.sim import noise
from sencity.sim.client import Client
from sencity.sim.mqtt import Publisher
from sencity.sim.runner import Options, Progress, Say, Stop, apikey, ensure_devices, ensure_group

ETYPE = "DeviceMeasurement"
SETTLE = 15.0  # seconds the counts must stay still to be final
MAX_DRAIN = 3600.0  # seconds to wait at most for a server working through a backlog


@dataclass
class LoadReport:
    devices: int = 0
    rate: float = 0.0
    published: int = 0  # acknowledged by the broker
    invalid: int = 0  # of them deliberately invalid
    accepted: int = 0  # readings in history
    dead: int = 0  # new dead letters
    publish_seconds: float = 0.0
    drain_seconds: float = 0.0  # from the end of publishing until the counts settled

    @property
    def missing(self) -> int:
        return self.published - self.accepted - self.dead

    @property
    def balanced(self) -> bool:
        return self.missing == 0

    def lines(self) -> list[str]:
        pub_rate = self.published / self.publish_seconds if self.publish_seconds else 0.0
        total = self.publish_seconds + self.drain_seconds
        out = [
            f"load: {self.devices:,} devices, asked {self.rate:,.0f} msg/s, "
            f"published {pub_rate:,.0f} msg/s for {self.publish_seconds:.1f} s",
            f"published (acknowledged by the broker): {self.published:,}"
            + (f" ({self.invalid:,} deliberately invalid)" if self.invalid else ""),
            f"accepted (in history, temporal API):    {self.accepted:,}",
            f"dead-lettered (/ingest/v1/deadletters): {self.dead:,}",
        ]
        if self.balanced:
            out.append(
                f"balanced: published = accepted + dead-lettered; all handled "
                f"{self.drain_seconds:.1f} s after the last message "
                f"({(self.accepted + self.dead) / total if total else 0:,.0f} msg/s end to end)"
            )
        elif self.missing > 0:
            out.append(
                f"NOT balanced: {self.missing:,} messages neither in history nor dead letters "
                "(the broker dropped them, e.g. Mosquitto's max_queued_messages, or the "
                "server is still behind)"
            )
        else:
            out.append(
                f"NOT balanced: {-self.missing:,} more readings than messages (redelivered "
                "after a reconnection: at-least-once delivery)"
            )
        return out


def _dead_total(client: Client) -> int:
    _, headers, _ = client.request("GET", "/ingest/v1/deadletters", params={"limit": 1})
    return int(headers.get("total-count", "0"))


def accepted_count(client: Client, tenant: str, t0: float, t1: float) -> int:
    """Readings of the load devices observed in [t0, t1], by the temporal API."""
    total = 0
    for e in client.pages(
        "/ngsi-ld/v1/temporal/entities",
        type=ETYPE,
        idPattern=f"^urn:ngsi-ld:{ETYPE}:{tenant}:ld-",
        attrs="numValue",
        timerel="between",
        timeAt=_ms(t0),
        endTimeAt=_ms(t1),
        aggrMethods="totalCount",
        options="aggregatedValues",
    ):
        attr = e.get("numValue")
        for a in attr if isinstance(attr, list) else [attr]:
            for bucket in (a or {}).get("totalCount", []):
                total += int(bucket[0] or 0)
    return total


def _ms(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def run_load(opts: Options, say: Say, progress: Progress, stop: Stop) -> LoadReport:
    assert opts.devices and opts.rate
    client = Client(opts.url, opts.tenant, opts.token)
    rep = LoadReport(devices=opts.devices, rate=opts.rate)
    key = apikey(opts.tenant, "load")
    pub = Publisher(opts.mqtt_url, f"sencity-sim-load-{uuid.uuid4().hex[:8]}", window=5_000)
    pub.connect()  # the broker first: nothing is provisioned when it is not there
    try:
        ensure_group(
            client,
            {
                "apikey": key,
                "entity_type": ETYPE,
                "timestamp": "ts",
                "attributes": [{"object_id": "v", "name": "numValue", "datatype": "number"}],
                "static_attributes": [{"name": "controlledProperty", "value": "load"}],
                "explicit_attrs": True,
                "description": "sencity sim: load mode",
            },
        )
        bodies = [
            {
                "device_id": f"ld-{i + 1:05d}",
                "apikey": key,
                "entity_id": f"urn:ngsi-ld:{ETYPE}:{opts.tenant}:ld-{i + 1:05d}",
                "description": "simulated load",
            }
            for i in range(opts.devices)
        ]
        made = ensure_devices(client, key, bodies)
        say(f"provisioned {opts.devices:,} load devices ({made:,} created or updated)")
        dead0 = _dead_total(client)
        topics = [f"/json/{key}/{b['device_id']}/attrs" for b in bodies]
        bad_key = noise.stream_key(opts.seed, "load-invalid")
        t0 = time.time()
        real0 = time.monotonic()
        duration = opts.duration if opts.duration is not None else 60.0
        n = 0
        try:
            while not stop:
                elapsed = time.monotonic() - real0
                if elapsed >= duration:
                    break
                target = min(int(opts.rate * elapsed) + 1, n + 2_000)
                if n >= target:
                    time.sleep(min(0.002, (n + 1) / opts.rate - elapsed))
                    continue
                now = time.time()
                stamp = _ms(now)
                first = n
                bad = noise.uniform(bad_key, np.arange(first, target)) < opts.invalid
                while n < target:
                    value: Any = "n/a" if bad[n - first] else n
                    payload = json.dumps({"ts": stamp, "v": value}, separators=(",", ":"))
                    pub.send(topics[n % len(topics)], payload.encode())
                    rep.invalid += value == "n/a"
                    n += 1
                    if n % 1000 == 0:
                        progress("published", n, int(opts.rate * duration))
            pub.wait(0)
        finally:
            rep.published = pub.acked
        rep.publish_seconds = time.monotonic() - real0
        t1 = time.time()
        say(f"published {rep.published:,} messages; counting what the platform accepted…")
        # wait until the counts settle (the server may still be working through a backlog)
        last, since = (-1, -1), time.monotonic()
        end_pub = time.monotonic()
        deadline = end_pub + MAX_DRAIN
        while time.monotonic() < deadline:
            acc = accepted_count(client, opts.tenant, t0 - 1, t1 + 1)
            dead = _dead_total(client) - dead0
            progress("accepted", acc + dead, rep.published)
            if (acc, dead) != last:
                last, since = (acc, dead), time.monotonic()
                rep.drain_seconds = time.monotonic() - end_pub
            if acc + dead >= rep.published or time.monotonic() - since > SETTLE:
                break
            time.sleep(1.0)  # each count reads the history of every load device
        rep.accepted, rep.dead = max(last[0], 0), max(last[1], 0)
    finally:
        pub.close()
        client.close()
    return rep
