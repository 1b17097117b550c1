"""Cell values of department files → JSON values for NGSI-LD attributes.

Cells come as text (CSV), as native Python values (XLSX: int, float, bool, datetime) or
as JSON values (GeoJSON properties).  Each converter takes a raw cell and returns the
attribute value, or raises :class:`ValueProblem` with a sentence a spreadsheet user can
act on ("'mười' is not a number").  Date-times without a zone are read in the mapping's
time zone and written as ISO 8601 UTC (``2025-03-01T01:30:00Z``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any

#: the value types a column can be declared as (mapping ``type``)
TYPES = ("auto", "text", "number", "integer", "boolean", "date", "datetime", "relationship")

_INT = re.compile(r"^[+-]?(0|[1-9]\d*)$")
_FLOAT = re.compile(r"^[+-]?((0|[1-9]\d*)(\.\d+)?|\.\d+)([eE][+-]?\d+)?$")
#: what a declared number column accepts (leading zeros too)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
#: day-first formats, as Vietnamese spreadsheets write them (ISO is tried first)
DATETIME_FORMATS = (
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%d/%m/%Y",
    "%d-%m-%Y",
)
DATE_FORMATS = ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y")
TRUE = {"true", "yes", "y", "1", "x", "có", "co", "đúng"}
FALSE = {"false", "no", "n", "0", "không", "khong", "sai"}


class ValueProblem(ValueError):
    """A cell that cannot be converted; the message says why, in the user's terms."""


def is_empty(raw: Any) -> bool:
    """An empty cell (no attribute is written for it)."""
    return raw is None or (isinstance(raw, str) and not raw.strip())


def show(raw: Any) -> str:
    """A cell as quoted in an error message (shortened)."""
    text = raw if isinstance(raw, str) else str(raw)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def to_text(raw: Any) -> str:
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))  # XLSX stores 12 as 12.0
    if isinstance(raw, datetime | date | time):
        return raw.isoformat()
    return raw.strip() if isinstance(raw, str) else str(raw)


def to_number(raw: Any) -> int | float:
    """A number; text may use a decimal comma when it has no dot ("12,5")."""
    if isinstance(raw, bool):
        raise ValueProblem(f"{show(raw)} is not a number")
    if isinstance(raw, int | float):
        return raw
    text = str(raw).strip().replace("\u00a0", "").replace(" ", "")
    if "," in text and "." not in text and text.count(",") == 1:
        text = text.replace(",", ".")
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if _NUMBER.match(text):
        return float(text)
    raise ValueProblem(f"{show(raw)} is not a number")


def to_integer(raw: Any) -> int:
    try:
        num = to_number(raw)
    except ValueProblem:
        raise ValueProblem(f"{show(raw)} is not an integer") from None
    if isinstance(num, float):
        if not num.is_integer():
            raise ValueProblem(f"{show(raw)} is not an integer")
        return int(num)
    return num


def to_boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    text = to_text(raw).lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueProblem(f"{show(raw)} is not a boolean (true/false, yes/no, có/không, 1/0)")


def to_datetime(raw: Any, tz: tzinfo, fmt: str | None = None) -> str:
    """ISO 8601 UTC of a date-time cell; one without a zone is in ``tz``."""
    dt: datetime | None = None
    if isinstance(raw, datetime):
        dt = raw
    elif isinstance(raw, date):
        dt = datetime.combine(raw, time())
    else:
        text = to_text(raw)
        formats = (fmt,) if fmt else DATETIME_FORMATS
        if not fmt and (_ISO_DATETIME.match(text) or _ISO_DATE.match(text)):
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                dt = None
        if dt is None:
            for f in formats:
                try:
                    dt = datetime.strptime(text, f)
                    break
                except ValueError:
                    continue
        if dt is None:
            want = (
                f"expected {fmt}" if fmt else "expected e.g. 2025-03-01 08:30 or 01/03/2025 08:30"
            )
            raise ValueProblem(f"{show(raw)} is not a date-time ({want})")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    dt = dt.astimezone(UTC)
    spec = "milliseconds" if dt.microsecond else "seconds"
    return dt.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def to_date(raw: Any, fmt: str | None = None) -> str:
    """ISO 8601 date (``2025-03-01``) of a date cell (a calendar date has no zone)."""
    if isinstance(raw, datetime):
        return raw.date().isoformat()
    if isinstance(raw, date):
        return raw.isoformat()
    text = to_text(raw)
    if not fmt and _ISO_DATE.match(text):
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass
    for f in (fmt,) if fmt else DATE_FORMATS:
        try:
            return datetime.strptime(text, f).date().isoformat()
        except ValueError:
            continue
    want = f"expected {fmt}" if fmt else "expected e.g. 2025-03-01 or 01/03/2025"
    raise ValueProblem(f"{show(raw)} is not a date ({want})")


def classify(raw: Any) -> str:
    """The narrowest type a single non-empty cell fits (for columns without a declared
    type): integer, number, boolean, date, datetime, json or text."""
    if isinstance(raw, bool):
        return "boolean"
    if isinstance(raw, int):
        return "integer"
    if isinstance(raw, float):
        return "integer" if raw.is_integer() else "number"
    if isinstance(raw, datetime):
        return "datetime"
    if isinstance(raw, date):
        return "date"
    if isinstance(raw, dict | list):
        return "json"
    text = str(raw).strip()
    if _INT.match(text):
        return "integer"  # no leading zeros: "0905123456" and "001" stay text
    if _FLOAT.match(text):
        return "number"  # the pattern has no leading zeros either ("01.5" stays text)
    if text.lower() in ("true", "false"):
        return "boolean"
    if _ISO_DATE.match(text):
        return "date"
    if _ISO_DATETIME.match(text):
        return "datetime"
    return "text"


def infer(kinds: set[str]) -> str:
    """A column's type from the kinds of its cells: the narrowest that fits them all."""
    if not kinds:
        return "text"
    if kinds == {"integer"}:
        return "integer"
    if kinds <= {"integer", "number"}:
        return "number"
    if len(kinds) == 1 and next(iter(kinds)) in ("boolean", "date", "datetime", "json"):
        return next(iter(kinds))
    if kinds <= {"date", "datetime"}:
        return "datetime"
    return "json" if "json" in kinds else "text"


def slug(raw: Any) -> str:
    """A value as part of a URI: accents folded, spaces and punctuation as ``-``
    ("Trường THPT Phan Châu Trinh" → "Truong-THPT-Phan-Chau-Trinh")."""
    text = to_text(raw).replace("đ", "d").replace("Đ", "D")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9._~]+", "-", text).strip("-")


def converter(kind: str, tz: tzinfo, fmt: str | None) -> Callable[[Any], Any]:
    """The conversion of one declared (or inferred) type."""
    if kind == "number":
        return to_number
    if kind == "integer":
        return to_integer
    if kind == "boolean":
        return to_boolean
    if kind == "datetime":
        return lambda raw: to_datetime(raw, tz, fmt)
    if kind == "date":
        return lambda raw: to_date(raw, fmt)
    if kind == "json":
        return lambda raw: raw if isinstance(raw, dict | list) else to_text(raw)
    return to_text
