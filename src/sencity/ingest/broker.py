"""The embedded MQTT broker (amqtt, pure Python, in the server's event loop), for a
city that has no broker yet. A real broker (Mosquitto) relays several times more
messages per second: set ``ingest.mqtt_url`` when the sensors outgrow this one."""

from __future__ import annotations

import logging
from typing import Any


async def start_broker(host: str, port: int) -> Any:
    """A started amqtt broker listening on ``host:port`` (anonymous clients allowed)."""
    from amqtt.broker import Broker

    for name in ("amqtt", "transitions"):  # their INFO lines would drown ours
        logging.getLogger(name).setLevel(logging.WARNING)

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    return broker
