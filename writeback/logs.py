"""How `serve` logs: text for people, or one JSON object per line for log pipelines, and in both
emails, credentials and URL user info redacted before anything is written.

Modules log with the standard library and pass what SREs filter on as fields (`extra=`):
`connection`, `kind`, `writeback_id`, `error_code`. The JSON lines carry them as keys; the text
format shows the message alone. Redaction is the last line of defence, applied to every record
at the handler: code should not log values in the first place.
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FIELDS = ("connection", "kind", "writeback_id", "error_code")

_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
_URL_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
_BEARER = re.compile(r"(?i)\bbearer\s+[\w.~+/=-]+")
_SECRET_PAIR = re.compile(
    r"(?i)\b([\w-]*(?:password|passwd|secret|token|api[_-]?key|authorization|credential)s?)"
    r"(\s*[=:]\s*|\"\s*:\s*\"|'\s*:\s*')([^\s\"',;&]+)"
)
# attributes every LogRecord has: their values are not ours to redact (names, paths, levels)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def redact(text: str) -> str:
    text = _URL_USERINFO.sub("<redacted>@", text)
    text = _EMAIL.sub("<email>", text)
    text = _BEARER.sub("Bearer <redacted>", text)
    return _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", text)


class Redact(logging.Filter):
    """Renders the message (and any traceback) once, redacted, so no formatter sees the raw values."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def configure(fmt: LogFormat = LogFormat.TEXT, *, verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(Redact())
    if fmt is LogFormat.JSON:
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # request lines carry query strings (SOQL can name a recipient): never at INFO
    for noisy in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call, with only the known fields (so a typo is caught, not logged)."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"not a log field: {', '.join(sorted(unknown))}")
    return {k: v for k, v in values.items() if v is not None}
