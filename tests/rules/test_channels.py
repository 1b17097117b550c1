"""Notification channels against real receivers: an HTTP server of the test's own (it
answers what the test says and records every attempt), Mosquitto on 127.0.0.1:1883 and
an aiosmtpd SMTP server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiomqtt
import pytest
from aiosmtpd.controller import Controller

from sencity.config import load_settings
from sencity.rules.channels import (
    SIGNATURE_HEADER,
    ChannelError,
    ChannelSettings,
    payload,
    send,
    verify_signature,
)
from sencity.rules.notice import AlarmNotice
from tests.subs.conftest import free_port, wait_for

QUICK = ChannelSettings(retries=3, backoff=0.05, timeout=3.0, smtp_starttls=False)

NOTICE = AlarmNotice(
    tenant="hue",
    event="raised",
    alarm={
        "id": "urn:ngsi-ld:Alert:hue:alm-1",
        "type": "Alert",
        "severity": "critical",
        "alarmStatus": "active-unacknowledged",
        "alertSource": "urn:ngsi-ld:FloodMonitoring:hue:fl-01",
        "description": {
            "vi": "Mực nước sông Hương vượt báo động 3",
            "en": "Huong river above alert 3",
        },
        "category": "flood",
    },
    rule_id="flood-alert3",
    rule_name="Báo động 3 sông Hương",
    at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
)


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class ScriptedHTTP:
    """Answers POSTs with ``script`` statuses in turn (then 204); records every one."""

    port: int
    script: list[int] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        me = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = me.script.pop(0) if me.script else 204
                me.hits.append(
                    Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, raw, status)
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def http() -> Iterator[ScriptedHTTP]:
    srv = ScriptedHTTP(free_port())
    srv.start()
    yield srv
    srv.stop()


# -- webhook -----------------------------------------------------------------------------------
def test_webhook_signed_json(http: ScriptedHTTP) -> None:
    ch = {"type": "webhook", "url": http.url(), "secret": "s3cret", "headers": {"X-City": "hue"}}
    asyncio.run(send(ch, NOTICE, settings=QUICK))
    assert len(http.hits) == 1
    hit = http.hits[0]
    doc = json.loads(hit.body)
    assert doc["event"] == "raised" and doc["tenant"] == "hue"
    assert doc["rule"] == {"id": "flood-alert3", "name": "Báo động 3 sông Hương"}
    assert doc["alarm"]["severity"] == "critical" and doc["at"] == "2026-03-01T12:00:00Z"
    assert hit.headers["content-type"].startswith("application/json")
    assert hit.headers["x-city"] == "hue" and hit.headers["x-sencity-event"] == "raised"
    sig = hit.headers[SIGNATURE_HEADER.lower()]
    # the receiver's check: HMAC-SHA256 over "<t>." + the raw body, with the shared secret
    assert verify_signature("s3cret", sig, hit.body)
    assert not verify_signature("wrong", sig, hit.body)
    assert not verify_signature("s3cret", sig, hit.body + b" ")
    t = int(sig.split(",")[0][2:])
    assert abs(t - time.time()) < 60
    assert not verify_signature("s3cret", sig, hit.body, now=t + 301)  # too old: a replay


def test_webhook_without_secret_is_unsigned(http: ScriptedHTTP) -> None:
    asyncio.run(send({"type": "webhook", "url": http.url()}, NOTICE, settings=QUICK))
    assert SIGNATURE_HEADER.lower() not in http.hits[0].headers
    assert http.hits[0].body == payload(NOTICE)


def test_webhook_retries_5xx_then_succeeds(http: ScriptedHTTP) -> None:
    http.script = [503, 500]
    asyncio.run(send({"type": "webhook", "url": http.url()}, NOTICE, settings=QUICK))
    assert [h.status for h in http.hits] == [503, 500, 204]
    # the same notice each time
    assert len({h.body for h in http.hits}) == 1


def test_webhook_gives_up_after_its_retries(http: ScriptedHTTP) -> None:
    http.script = [502] * 10
    with pytest.raises(ChannelError, match="gave up after 4 attempts"):
        asyncio.run(send({"type": "webhook", "url": http.url()}, NOTICE, settings=QUICK))
    assert len(http.hits) == 4  # 1 + notify_retries


def test_webhook_4xx_is_not_retried(http: ScriptedHTTP) -> None:
    http.script = [400, 204]
    with pytest.raises(ChannelError, match="answered 400"):
        asyncio.run(send({"type": "webhook", "url": http.url()}, NOTICE, settings=QUICK))
    assert [h.status for h in http.hits] == [400]


def test_webhook_429_is_retried(http: ScriptedHTTP) -> None:
    http.script = [429]
    asyncio.run(send({"type": "webhook", "url": http.url()}, NOTICE, settings=QUICK))
    assert [h.status for h in http.hits] == [429, 204]


def test_webhook_connection_refused_is_retried_then_fails() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens there
    started = time.monotonic()
    with pytest.raises(ChannelError, match="gave up after 4 attempts"):
        asyncio.run(send({"type": "webhook", "url": url}, NOTICE, settings=QUICK))
    # back-off 0.05 + 0.1 + 0.2 s between the 4 attempts
    assert time.monotonic() - started >= 0.35


# -- MQTT --------------------------------------------------------------------------------------
def test_mqtt_qos1_topic_template() -> None:
    base = f"sencity-test/{uuid.uuid4().hex[:8]}"

    async def main() -> aiomqtt.Message:
        async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"t-{uuid.uuid4().hex[:8]}") as sub:
            await sub.subscribe(f"{base}/#", qos=1)
            ch = {"type": "mqtt", "topic": base + "/{tenant}/alarms/{severity}"}
            await send(ch, NOTICE, settings=QUICK)  # the default broker: 127.0.0.1:1883
            async with asyncio.timeout(10):
                async for msg in sub.messages:
                    return msg
        raise AssertionError("no message")

    msg = asyncio.run(main())
    assert str(msg.topic) == f"{base}/hue/alarms/critical"
    assert msg.qos == 1
    assert isinstance(msg.payload, bytes)
    doc = json.loads(msg.payload)
    assert doc["alarm"]["id"] == "urn:ngsi-ld:Alert:hue:alm-1" and doc["event"] == "raised"


def test_mqtt_default_broker_is_the_platforms() -> None:
    s = load_settings(None, {"ingest": {"mqtt_url": "mqtt://broker.example:1884"}}, environ={})
    assert ChannelSettings.of(s).mqtt_url == "mqtt://broker.example:1884"
    s = load_settings(None, {"ingest": {"embedded_port": 1999}}, environ={})
    assert ChannelSettings.of(s).mqtt_url == "mqtt://127.0.0.1:1999"


def test_mqtt_unreachable_broker_fails_after_retries() -> None:
    ch = {"type": "mqtt", "url": f"mqtt://127.0.0.1:{free_port()}", "topic": "x/{tenant}"}
    with pytest.raises(ChannelError, match="gave up after 4 attempts"):
        asyncio.run(send(ch, NOTICE, settings=QUICK))


def test_mqtt_bad_placeholder() -> None:
    with pytest.raises(ChannelError, match="unknown placeholder"):
        asyncio.run(send({"type": "mqtt", "topic": "a/{city}"}, NOTICE, settings=QUICK))


# -- e-mail ------------------------------------------------------------------------------------
class Mailbox:
    """An SMTP handler: answers DATA with ``script`` replies in turn (then 250)."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.attempts = 0
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.script:
            return self.script.pop(0)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, ChannelSettings]]:
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    cs = ChannelSettings(
        retries=3,
        backoff=0.05,
        timeout=3.0,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_from="Trung tâm IOC Huế <ioc@hue.gov.vn>",
    )
    yield box, cs
    ctl.stop()


def test_email_bilingual(smtp: tuple[Mailbox, ChannelSettings]) -> None:
    box, cs = smtp
    ch = {"type": "email", "to": ["lan@hue.gov.vn", "ops@hue.gov.vn"]}
    asyncio.run(send(ch, NOTICE, settings=cs))
    wait_for(lambda: box.messages, what="the e-mail")
    mail_from, rcpts, raw = box.messages[0]
    assert mail_from == "ioc@hue.gov.vn"
    assert rcpts == ["lan@hue.gov.vn", "ops@hue.gov.vn"]
    msg = message_from_bytes(raw, policy=policy.default)
    subject = str(msg["Subject"])
    assert "Cảnh báo mới" in subject and "New alarm" in subject
    assert "Báo động 3 sông Hương" in subject and "Nghiêm trọng" in subject
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Mực nước sông Hương vượt báo động 3" in text
    assert "Huong river above alert 3" in text
    assert text.index("Mức độ: Nghiêm trọng") < text.index("Severity: Critical")
    assert "urn:ngsi-ld:FloodMonitoring:hue:fl-01" in text


def test_email_own_subject(smtp: tuple[Mailbox, ChannelSettings]) -> None:
    box, cs = smtp
    asyncio.run(
        send({"type": "email", "to": "lan@hue.gov.vn", "subject": "Lũ!"}, NOTICE, settings=cs)
    )
    msg = message_from_bytes(box.messages[0][2], policy=policy.default)
    assert msg["Subject"] == "Lũ!"


def test_email_4xx_retried_5xx_not(smtp: tuple[Mailbox, ChannelSettings]) -> None:
    box, cs = smtp
    box.script = ["451 try again later"]
    asyncio.run(send({"type": "email", "to": ["lan@hue.gov.vn"]}, NOTICE, settings=cs))
    assert box.attempts == 2 and len(box.messages) == 1
    box.script = ["554 rejected"]
    with pytest.raises(ChannelError, match="554"):
        asyncio.run(send({"type": "email", "to": ["lan@hue.gov.vn"]}, NOTICE, settings=cs))
    assert box.attempts == 3  # not retried
    with pytest.raises(ChannelError, match="recipients refused"):
        asyncio.run(send({"type": "email", "to": ["nobody@hue.gov.vn"]}, NOTICE, settings=cs))


def test_email_needs_a_server_and_starttls_when_asked(
    smtp: tuple[Mailbox, ChannelSettings],
) -> None:
    _, cs = smtp
    with pytest.raises(ChannelError, match=r"rules\.smtp_host"):
        asyncio.run(send({"type": "email", "to": ["a@b.vn"]}, NOTICE, settings=QUICK))
    strict = ChannelSettings(**{**cs.__dict__, "smtp_starttls": True})
    with pytest.raises(ChannelError, match="no STARTTLS"):
        asyncio.run(send({"type": "email", "to": ["a@b.vn"]}, NOTICE, settings=strict))


def test_unknown_channel_type() -> None:
    with pytest.raises(ChannelError, match="unknown channel type"):
        asyncio.run(send({"type": "pigeon"}, NOTICE, settings=QUICK))
