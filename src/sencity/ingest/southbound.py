"""Commands to devices (southbound), as the FIWARE IoT agents do them.

A device provisioned with ``commands: [{"name": "dim"}]`` has a command attribute
``dim`` on its entity. When anyone but the sensor agent itself writes a new value to it
(``PATCH /ngsi-ld/v1/entities/{id}/attrs/dim``), once that write commits the agent
publishes the command to the device's ``/{apikey}/{device_id}/cmd`` topic (QoS 1) —
JSON ``{"dim": 40}``, or UltraLight ``{device_id}@dim|40`` for UltraLight devices — and
sets ``dim_status`` to ``PENDING``. The device answers on ``…/cmdexe`` (JSON
``{"dim": "OK"}`` or UltraLight ``{device_id}@dim|OK``): ``dim_status`` becomes ``OK``
(or ``ERROR`` when the answer says so) and ``dim_info`` holds the answer.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from sencity.hub.store import Change
from sencity.ingest.model import Device, Group, entity_id
from sencity.store.base import utcnow

if TYPE_CHECKING:
    from sencity.ingest.pipeline import Message
    from sencity.ingest.service import IngestService

log = logging.getLogger("sencity.ingest")
_local = threading.local()


def agent_writing() -> bool:
    """True while the sensor agent itself writes (its writes never send commands)."""
    return bool(getattr(_local, "writing", False))


class AgentWrites:
    """``with AgentWrites():`` marks the hub writes of this thread as the agent's own."""

    def __enter__(self) -> None:
        _local.writing = True

    def __exit__(self, *exc: object) -> None:
        _local.writing = False


def command_payload(device: Device, group: Group, name: str, value: Any) -> bytes:
    protocol = device.protocol or group.protocol
    if protocol == "ul":
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return f"{device.device_id}@{name}|{text}".encode()
    return json.dumps({name: value}, ensure_ascii=False).encode()


def parse_result(raw: bytes) -> dict[str, str]:
    """Command results of a ``cmdexe`` message: ``{command: result}``."""
    text = raw.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
    out = {}
    for part in text.split("#"):
        head, _, result = part.partition("|")
        _, _, name = head.rpartition("@")
        if name:
            out[name] = result
    return out


class Southbound:
    """Sends commands after hub writes commit, records their status."""

    def __init__(self, svc: IngestService) -> None:
        self.svc = svc
        self.sent = 0

    def committed(self, tenant: str, changes: dict[str, Change]) -> None:
        """Hub commit hook: commands written by someone else go to their devices."""
        if agent_writing() or self.svc.mqtt is None:
            return
        index = self.svc.registry.command_devices(tenant)
        if not index:
            return
        for eid, ch in changes.items():
            found = index.get(eid)
            if found is None or ch.after is None:
                continue
            device, group = found
            for cmd in device.commands:
                iri = self.svc.writer.ctx.expand(cmd.name)
                new = ch.after.attrs.get(iri)
                old = ch.before.attrs.get(iri) if ch.before else None
                if not new or (old and old[0].get("value") == new[0].get("value")):
                    continue
                self.send(tenant, eid, device, group, cmd.name, new[0].get("value"))

    def send(
        self, tenant: str, eid: str, device: Device, group: Group, name: str, value: Any
    ) -> None:
        assert self.svc.mqtt is not None
        topic = f"/{device.apikey}/{device.device_id}/cmd"
        self.svc.mqtt.publish(topic, command_payload(device, group, name, value))
        self.sent += 1
        log.info("command %s=%r sent to device %s", name, value, device.device_id)
        self._status(tenant, eid, name, "PENDING", None)

    def result(self, msg: Message) -> None:
        """A device's ``cmdexe`` answer (called from the MQTT thread)."""
        if msg.apikey is None or msg.device_id is None:
            return
        found = self.svc.registry.group(msg.apikey)
        if found is None:
            return
        tenant, group = found
        device = self.svc.registry.device(tenant, msg.device_id)
        if device is None or device.apikey != msg.apikey:
            return
        eid = entity_id(device, group)
        for name, result in parse_result(msg.payload).items():
            if name not in {c.name for c in device.commands}:
                continue
            failed = result.upper().startswith(("ERROR", "FAIL"))
            self._status(tenant, eid, name, "ERROR" if failed else "OK", result)

    def _status(self, tenant: str, eid: str, name: str, status: str, info: Any) -> None:
        now = utcnow()
        body: dict[str, Any] = {
            "id": eid,
            "type": self._type(tenant, eid),
            f"{name}_status": {"type": "Property", "value": status, "observedAt": now},
        }
        if info is not None:
            body[f"{name}_info"] = {"type": "Property", "value": info, "observedAt": now}
        try:
            with AgentWrites():
                self.svc.writer.write(tenant, [body])
        except Exception:
            log.exception("could not record the status of command %s of %s", name, eid)

    def _type(self, tenant: str, eid: str) -> str:
        index = self.svc.registry.command_devices(tenant)
        found = index.get(eid)
        if found is None:
            return "Device"
        device, group = found
        return device.entity_type or group.entity_type
