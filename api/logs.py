"""The service's logging, set up in one place: lines of text (the default) or one JSON object
per line (JOBLEDGER_LOG_FORMAT=json), on standard error. `jobledger serve` hands the same
configuration to uvicorn, which applies it in each process it starts (`--workers N`)."""

from __future__ import annotations

import json
import logging
import logging.config
import os
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

LOG_FORMAT_ENV = "JOBLEDGER_LOG_FORMAT"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The id of the HTTP request being served (set by api.http_edge.RequestLog): JSON lines logged
# while serving it carry it, so that a warning can be read beside its request's line.
current_request_id: ContextVar[str | None] = ContextVar("jobledger_request_id", default=None)


def log_format_from_env() -> str:
    """JOBLEDGER_LOG_FORMAT: `text` (the default) or `json`."""
    raw = (os.environ.get(LOG_FORMAT_ENV) or "text").strip().lower()
    if raw not in FORMATS:
        raise SystemExit(f"{LOG_FORMAT_ENV} must be text or json, not {raw!r}")
    return raw


class JsonLines(logging.Formatter):
    """A record as one JSON object: `time` (UTC, ISO 8601), `level`, `logger`, `message`; on a
    request's line its fields (`request_id`, `method`, `path`, `operation`, `status`, `code`,
    `duration_ms`, `user`); on other lines logged while serving a request, its `request_id`;
    `exception` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "request", None)
        if isinstance(fields, dict):
            entry.update(fields)
        elif (request_id := current_request_id.get()) is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(log_format: str) -> dict[str, Any]:
    """The `logging.config.dictConfig` of the service, for uvicorn's `log_config`: every
    logger (uvicorn's own too) writes through one handler in `log_format`; uvicorn's access
    log is off, as RequestLog writes the one line per request."""
    formatter = {"()": f"{__name__}.JsonLines"} if log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"jobledger": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "jobledger", "stream": "ext://sys.stderr"}
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
        },
    }


def configure_logging(log_format: str) -> None:
    """Applies `logging_config(log_format)` to this process."""
    logging.config.dictConfig(logging_config(log_format))
