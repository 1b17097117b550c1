"""Notification channels: tell people and systems that an alarm changed.

``await send(channel, notice)`` delivers one :class:`~sencity.rules.notice.AlarmNotice`
to one channel of a rule's ``notify`` list, retrying a transient failure up to
``rules.notify_retries`` times (waits of ``rules.notify_backoff`` seconds, doubled each
time), and raises :class:`ChannelError` when it gives up or the failure is permanent.

* ``webhook`` ``{url, secret?, headers?}`` — an HTTP POST of the notice as JSON.  With a
  ``secret`` the request is signed: ``X-SenCity-Signature: t=<unix time>,v1=<hex>``,
  where ``<hex>`` is HMAC-SHA256(secret, ``"<unix time>." + body``) (see
  :func:`verify_signature`).  5xx answers, 408, 429 and connection errors are retried;
  other 4xx answers are not (the receiver refused the notice).
* ``mqtt`` ``{url?, topic}`` — the same JSON published with QoS 1; ``topic`` may hold
  ``{tenant}``, ``{severity}``, ``{event}`` and ``{rule}``; the broker is ``url``
  (``mqtt://[user:pass@]host:port``, ``mqtts://``) or else the platform's
  ``ingest.mqtt_url`` (the embedded broker when that is empty).
* ``email`` ``{to: [...], subject?}`` — a plain-text message in Vietnamese then English
  over SMTP (``rules.smtp_*``); SMTP 4xx answers and connection errors are retried,
  5xx ones are not.

The platform calls :func:`configure` at start-up with its settings; a test or another
program may pass ``settings=`` to :func:`send` instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aiohttp

from sencity.rules.notice import AlarmNotice

if TYPE_CHECKING:
    from sencity.config import Settings

log = logging.getLogger("sencity.rules.channels")

SIGNATURE_HEADER = "X-SenCity-Signature"
USER_AGENT = "SenCity-Notifier/1"
#: how old a signed request may be when a receiver checks it (seconds)
SIGNATURE_TOLERANCE = 300


class ChannelError(Exception):
    """A notification could not be delivered (after its retries, or refused for good)."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class ChannelSettings:
    """What channels need of the platform's settings."""

    retries: int = 3
    backoff: float = 1.0
    timeout: float = 10.0
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    smtp_from: str = "SenCity <sencity@localhost>"

    @classmethod
    def of(cls, settings: Settings) -> ChannelSettings:
        r, ing = settings.rules, settings.ingest
        mqtt_url = ing.mqtt_url or f"mqtt://127.0.0.1:{ing.embedded_port}"
        return cls(
            retries=r.notify_retries,
            backoff=r.notify_backoff,
            timeout=r.notify_timeout,
            mqtt_url=mqtt_url,
            smtp_host=r.smtp_host,
            smtp_port=r.smtp_port,
            smtp_user=r.smtp_user,
            smtp_password=r.smtp_password,
            smtp_starttls=r.smtp_starttls,
            smtp_ssl=r.smtp_ssl,
            smtp_from=r.smtp_from,
        )


_configured = ChannelSettings()


def configure(settings: Settings | ChannelSettings) -> None:
    """Set what :func:`send` uses when it is not given ``settings`` (the platform's)."""
    global _configured
    _configured = (
        settings if isinstance(settings, ChannelSettings) else ChannelSettings.of(settings)
    )


async def send(
    channel: Mapping[str, Any], notice: AlarmNotice, *, settings: ChannelSettings | None = None
) -> None:
    """Deliver ``notice`` to ``channel`` (a rule's ``notify`` item), with retries."""
    cs = settings or _configured
    kind = channel.get("type")
    attempt: Callable[[], Awaitable[None]]
    if kind == "webhook":
        body = payload(notice)

        async def attempt() -> None:
            await _webhook(channel, notice, body, cs)
    elif kind == "mqtt":
        body = payload(notice)

        async def attempt() -> None:
            await _mqtt(channel, notice, body, cs)
    elif kind == "email":
        msg = email_message(channel, notice, cs)

        async def attempt() -> None:
            await asyncio.to_thread(_smtp, msg, cs)
    else:
        raise ChannelError(f"unknown channel type {kind!r}")
    wait = cs.backoff
    for n in range(cs.retries + 1):
        try:
            await attempt()
            return
        except ChannelError as exc:
            if not exc.retry:
                raise
            if n == cs.retries:
                raise ChannelError(f"{exc} (gave up after {n + 1} attempts)") from exc
            log.info("%s notice failed (%s); retry in %.1f s", kind, exc, wait)
        await asyncio.sleep(wait)
        wait *= 2


# -- the message --------------------------------------------------------------------------
def payload(notice: AlarmNotice) -> bytes:
    """The JSON body of webhook and MQTT notices."""
    doc = {
        "event": notice.event,
        "tenant": notice.tenant,
        "rule": {"id": notice.rule_id, "name": notice.rule_name},
        "alarm": notice.alarm,
        "at": notice.at.isoformat().replace("+00:00", "Z"),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-SenCity-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    now: float | None = None,
    tolerance: float = SIGNATURE_TOLERANCE,
) -> bool:
    """What a receiver does: recompute the HMAC of ``"<t>." + raw body`` with the shared
    secret, compare it in constant time, and refuse a timestamp older than ``tolerance``
    seconds (a replayed request)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    expected = sign(secret, ts, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


# -- webhook ---------------------------------------------------------------------------------
async def _webhook(
    channel: Mapping[str, Any], notice: AlarmNotice, body: bytes, cs: ChannelSettings
) -> None:
    url = str(channel["url"])
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-SenCity-Event": notice.event,
        "X-SenCity-Delivery": uuid.uuid4().hex,
    }
    extra = channel.get("headers") or {}
    if isinstance(extra, Mapping):
        headers.update({str(k): str(v) for k, v in extra.items()})
    secret = channel.get("secret")
    if secret:
        headers[SIGNATURE_HEADER] = sign(str(secret), int(time.time()), body)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cs.timeout)) as http,
            http.post(url, data=body, headers=headers, allow_redirects=False) as r,
        ):
            status = r.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ChannelError(f"webhook {url}: {exc.__class__.__name__}: {exc}", retry=True) from exc
    if 200 <= status < 300:
        return
    retry = status >= 500 or status in (408, 429)
    raise ChannelError(f"webhook {url} answered {status}", retry=retry)


# -- MQTT ------------------------------------------------------------------------------------
def topic_of(template: str, notice: AlarmNotice) -> str:
    values = {
        "tenant": notice.tenant,
        "severity": str(notice.alarm.get("severity") or "unknown"),
        "event": notice.event,
        "rule": notice.rule_id,
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ChannelError(f"mqtt topic {template!r}: unknown placeholder {exc}") from exc


async def _mqtt(
    channel: Mapping[str, Any], notice: AlarmNotice, body: bytes, cs: ChannelSettings
) -> None:
    import aiomqtt

    url = str(channel.get("url") or cs.mqtt_url)
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ChannelError(f"mqtt channel: {url!r} is not an mqtt:// or mqtts:// URL")
    topic = topic_of(str(channel["topic"]), notice)
    try:
        async with aiomqtt.Client(
            parts.hostname,
            parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            identifier=f"sencity-notify-{uuid.uuid4().hex[:12]}",
            tls_context=ssl.create_default_context() if parts.scheme == "mqtts" else None,
            timeout=cs.timeout,
        ) as client:
            await client.publish(topic, body, qos=1, timeout=cs.timeout)
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        raise ChannelError(f"mqtt {parts.hostname}: {exc}", retry=True) from exc


# -- e-mail ----------------------------------------------------------------------------------
EVENT_NAMES = {
    "raised": ("Cảnh báo mới", "New alarm"),
    "updated": ("Cảnh báo cập nhật", "Alarm updated"),
    "escalated": ("Cảnh báo nâng cấp", "Alarm escalated"),
    "reminder": ("Nhắc lại cảnh báo", "Alarm reminder"),
    "cleared": ("Cảnh báo đã hết", "Alarm cleared"),
    "acknowledged": ("Cảnh báo đã được xác nhận", "Alarm acknowledged"),
}
SEVERITY_NAMES = {
    "critical": ("Nghiêm trọng", "Critical"),
    "major": ("Cao", "Major"),
    "minor": ("Thấp", "Minor"),
    "warning": ("Lưu ý", "Warning"),
}


def _text(value: Any, lang: str) -> str:
    """A text in ``lang`` from a plain string or a language map ({"vi": …, "en": …})."""
    if isinstance(value, Mapping):
        picked = value.get(lang) or next(iter(value.values()), "")
        return str(picked)
    return "" if value is None else str(value)


def _ref(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("object", ""))
    return "" if value is None else str(value)


def email_message(
    channel: Mapping[str, Any], notice: AlarmNotice, cs: ChannelSettings
) -> EmailMessage:
    """The e-mail of ``notice``: Vietnamese first, then English."""
    to = channel.get("to")
    rcpts = [to] if isinstance(to, str) else [str(t) for t in (to or [])]
    if not rcpts:
        raise ChannelError("email channel: 'to' is empty")
    a = notice.alarm
    sev = str(a.get("severity") or "")
    ev_vi, ev_en = EVENT_NAMES.get(notice.event, (notice.event, notice.event))
    sev_vi, sev_en = SEVERITY_NAMES.get(sev, (sev, sev))
    subject = channel.get("subject") or (
        f"[SenCity] {ev_vi}: {notice.rule_name} ({sev_vi}) / {ev_en}: {notice.rule_name} ({sev_en})"
    )
    at = notice.at.isoformat().replace("+00:00", "Z")
    source = _ref(a.get("alertSource"))
    lines = [
        f"{ev_vi} — {notice.rule_name}",
        f"Mức độ: {sev_vi}",
        f"Mô tả: {_text(a.get('description'), 'vi')}",
        f"Nguồn: {source}",
        f"Trạng thái: {a.get('alarmStatus', '')}",
        f"Thời điểm: {at}",
        f"Đơn vị: {notice.tenant}",
        f"Mã cảnh báo: {a.get('id', '')}",
        "",
        "— English —",
        f"{ev_en} — {notice.rule_name}",
        f"Severity: {sev_en}",
        f"Description: {_text(a.get('description'), 'en')}",
        f"Source: {source}",
        f"Status: {a.get('alarmStatus', '')}",
        f"Time: {at}",
        f"City: {notice.tenant}",
        f"Alarm id: {a.get('id', '')}",
    ]
    msg = EmailMessage()
    msg["Subject"] = str(subject)
    msg["From"] = cs.smtp_from
    msg["To"] = ", ".join(rcpts)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain="sencity")
    msg["Content-Language"] = "vi, en"
    msg.set_content("\n".join(lines) + "\n")
    return msg


def _smtp(msg: EmailMessage, cs: ChannelSettings) -> None:
    if not cs.smtp_host:
        raise ChannelError("email channel: no SMTP server (set rules.smtp_host)")
    try:
        smtp: smtplib.SMTP
        if cs.smtp_ssl:
            smtp = smtplib.SMTP_SSL(
                cs.smtp_host, cs.smtp_port, timeout=cs.timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(cs.smtp_host, cs.smtp_port, timeout=cs.timeout)
        with smtp:
            smtp.ehlo()
            if cs.smtp_starttls and not cs.smtp_ssl:
                if not smtp.has_extn("starttls"):
                    raise ChannelError(
                        f"smtp {cs.smtp_host}: the server offers no STARTTLS "
                        "(set rules.smtp_starttls = false to send in clear)"
                    )
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if cs.smtp_user:
                smtp.login(cs.smtp_user, cs.smtp_password)
            smtp.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        code = exc.smtp_code
        raise ChannelError(
            f"smtp {cs.smtp_host}: {code} {exc.smtp_error!r}", retry=400 <= code < 500
        ) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [c for c, _ in exc.recipients.values()]
        raise ChannelError(
            f"smtp {cs.smtp_host}: recipients refused {exc.recipients}",
            retry=all(400 <= c < 500 for c in codes),
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelError(f"smtp {cs.smtp_host}: {exc}", retry=True) from exc
