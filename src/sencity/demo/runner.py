"""What ``sencity demo`` runs around the server: the MQTT broker choice and the simulator.

Broker.  The platform's sensors arrive over MQTT.  With ``ingest.mqtt_url`` set, that
broker is used.  Otherwise the embedded broker should listen on ``ingest.embedded_port``
(1883); when that port is already taken — typically by a Mosquitto running on the
machine — the demo does not give up MQTT (as ``sencity serve`` does, with an error):

* if an MQTT broker answers on 127.0.0.1:<port>, the demo uses it
  (``ingest.mqtt_url = mqtt://127.0.0.1:<port>``), so ``mosquitto_pub -p 1883`` and
  the simulator reach the platform as the guides show;
* otherwise the embedded broker moves to a free port, which the demo prints.

Simulator.  ``sencity sim`` (the city's simulated sensors) runs as a child process once
the server is ready, as the machine client ``simulator`` (role ``operator`` on the
city's tenant: the provisioning API ``/ingest/v1`` and the NGSI-LD entity and temporal
write endpoints accept ``admin`` and ``operator``), with a fresh API token in the
environment variable ``SENCITY_TOKEN`` (earlier demo tokens of that client are revoked).
It stops with the server (also when the server is stopped with SIGTERM).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sencity.auth.service import AuthService
    from sencity.config import Settings
    from sencity.store import Store

log = logging.getLogger("sencity.demo")
SIM_USER = "simulator"
SIM_ROLE = "operator"
SIM_TOKEN_NAME = "demo simulator"  # noqa: S105 (a label, not a secret)
SIM_SEED = 1
SIM_BACKFILL = "30d"
LOCALHOST = "127.0.0.1"


# -- broker ------------------------------------------------------------------------------
def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (as asyncio would: reuse addr)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOCALHOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def mqtt_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether an MQTT broker accepts an anonymous MQTT 3.1.1 connection on host:port."""
    client_id = b"sencity-demo-probe"
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol, level 4, clean session, 10 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    packet = b"\x10" + bytes([len(variable) + len(payload)]) + variable + payload
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(packet)
            answer = b""
            while len(answer) < 4:
                chunk = s.recv(4 - len(answer))
                if not chunk:
                    break
                answer += chunk
            with contextlib.suppress(OSError):
                s.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:
        return False
    return len(answer) == 4 and answer[0] == 0x20 and answer[3] == 0


@dataclass
class BrokerChoice:
    overrides: dict[str, Any]  # settings to add to the demo's overrides
    url: str | None  # where the simulator (and sensors) publish; None: no MQTT
    note: str  # one line for the operator


def choose_broker(settings: Settings) -> BrokerChoice:
    """The MQTT broker of the demo (see the module's docstring)."""
    ing = settings.ingest
    if ing.mqtt_url:
        return BrokerChoice({}, ing.mqtt_url, "MQTT: the configured broker (ingest.mqtt_url)")
    if not ing.embedded_broker:
        return BrokerChoice({}, None, "MQTT: off (no ingest.mqtt_url, embedded broker disabled)")
    port = ing.embedded_port
    if port and port_free(LOCALHOST, port):
        url = f"mqtt://{LOCALHOST}:{port}"
        return BrokerChoice({}, url, f"MQTT: embedded broker on port {port}")
    if port and mqtt_answers(LOCALHOST, port):
        url = f"mqtt://{LOCALHOST}:{port}"
        return BrokerChoice(
            {"ingest": {"mqtt_url": url}},
            url,
            f"MQTT: port {port} already has a broker; the demo uses it ({url}) — set "
            "ingest.mqtt_url or ingest.embedded_port to choose",
        )
    other = free_port()
    return BrokerChoice(
        {"ingest": {"embedded_port": other}},
        f"mqtt://{LOCALHOST}:{other}",
        f"MQTT: port {port} is taken (not by an MQTT broker); embedded broker on port {other}",
    )


# -- simulator ---------------------------------------------------------------------------
def sim_token(store: Store, auth: AuthService, tenant: str) -> str:
    """A fresh API token of the ``simulator`` client, operator on ``tenant``."""
    from sencity.errors import NotFound

    try:
        user = store.get_user(SIM_USER)
    except NotFound:
        store.create_user(
            SIM_USER,
            kind="client",
            display_name="City simulator (sencity demo)",
            roles={tenant: SIM_ROLE},
        )
    else:
        if user["roles"].get(tenant) not in ("admin", SIM_ROLE):
            store.set_role(SIM_USER, tenant, SIM_ROLE)
    for t in store.list_tokens(SIM_USER):
        if t["name"] == SIM_TOKEN_NAME and t["revoked_at"] is None:
            store.revoke_token(t["id"])
    token, _ = auth.issue_token(SIM_USER, "api", SIM_TOKEN_NAME)
    return token


def sim_command(base_url: str, tenant: str, mqtt_url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sencity",
        "sim",
        "--url",
        base_url,
        "--tenant",
        tenant,
        "--mqtt-url",
        mqtt_url,
        "--seed",
        str(SIM_SEED),
        "--backfill",
        SIM_BACKFILL,
    ]


class SimProcess:
    """The simulator child process: started once the server is ready, stopped with it."""

    def __init__(self, tenant: str, mqtt_url: str, token: str) -> None:
        self.tenant = tenant
        self.mqtt_url = mqtt_url
        self.token = token
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = False

    def start(self, base_url: str) -> None:
        command = sim_command(base_url, self.tenant, self.mqtt_url)
        env = {**os.environ, "SENCITY_TOKEN": self.token}
        self.proc = subprocess.Popen(command, env=env)  # noqa: S603 (our own command)
        log.info("simulator started (pid %d): sencity %s", self.proc.pid, " ".join(command[3:]))
        threading.Thread(target=self._watch, name="demo-sim-watch", daemon=True).start()

    @staticmethod
    def exit_on_sigterm() -> None:
        """Make SIGTERM end the process through ``SystemExit``, so the ``finally`` that
        stops the simulator runs (uvicorn re-raises the signal it caught after its
        shutdown, and the default action would end the process on the spot)."""

        def handler(signum: int, _frame: Any) -> None:
            raise SystemExit(128 + signum)

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)

    def _watch(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        if not self._stopping:
            log.warning("the simulator exited with status %d; the demo goes on without it", code)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self._stopping = True
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("the simulator did not stop in %.0f s; killing it", timeout)
            self.proc.kill()
            self.proc.wait()
