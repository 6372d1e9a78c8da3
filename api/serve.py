"""`jobledger serve`: the service under uvicorn, in one process or several behind one port."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import uvicorn
from starlette.applications import Starlette

from api.app import create_app
from api.http_edge import http_protocol
from api.logs import configure_logging, log_format_from_env, logging_config
from api.metrics import forget_this_process_at_exit, multiprocess_metrics
from api.settings import Settings
from domain.ledger import open_store  # ValidationError for a bad URL

SETTINGS_ENV = "JOBLEDGER_SERVE_SETTINGS"  # the settings, handed to the processes uvicorn starts


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.max_body_bytes is not None and args.max_body_bytes < 1:
        raise SystemExit("jobledger: --max-body-bytes must be 1 or more")
    settings = settings.with_overrides(max_body_bytes=args.max_body_bytes)
    settings.check_auth()
    log_format = log_format_from_env()
    store = open_store(settings.database_url)  # a bad URL fails here, with what to write instead
    workers = serving_processes(getattr(args, "workers", None), store.backend)
    configure_logging(log_format)
    many = f", {workers} processes" if workers > 1 else ""
    print(f"jobledger: serving on http://{settings.host}:{settings.port}/ (store: {settings.database_url}{many})")
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        # One configuration for this process and each one uvicorn starts; one line per
        # request, written by api.http_edge.RequestLog (uvicorn's access log would be a second).
        "log_config": logging_config(log_format),
        "access_log": False,
        "http": http_protocol(),  # requests uvicorn cannot parse are answered in JSON too
        # The app refuses messages over the limit in each protocol's own way; uvicorn's limit,
        # above it, is the backstop that keeps a huge frame from being buffered at all.
        "ws_max_size": 2 * settings.max_ws_message_bytes,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    # Several processes: uvicorn starts each from an import string, and stops them all on
    # SIGTERM or SIGINT. Each opens the store; PostgreSQL's advisory locks let one of them
    # run the projections and the clock, and LISTEN/NOTIFY carries changes to all.
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    # Their metrics go to files in a folder of this run's own, which /metrics adds up.
    with multiprocess_metrics():
        # A child imports the whole service before its first health check: on a busy machine
        # that takes longer than uvicorn's 5 s, and it would be killed while starting.
        uvicorn.run(
            "api.serve:app_from_environment", factory=True, workers=workers, timeout_worker_healthcheck=60, **options
        )
    return 0


def serving_processes(wanted: int | None, backend: str) -> int:
    """How many processes serve: `--workers`, else $JOBLEDGER_WORKERS, else the cores on
    PostgreSQL; one on SQLite (one process owns the file's projections)."""
    if wanted is None:
        raw = os.environ.get("JOBLEDGER_WORKERS") or ""
        if raw:
            try:
                wanted = int(raw)
            except ValueError:
                raise SystemExit(f"JOBLEDGER_WORKERS must be a whole number, not {raw!r}") from None
    if wanted is not None and wanted < 1:
        raise SystemExit("jobledger: --workers must be 1 or more")
    if backend != "postgres":
        if wanted is not None and wanted > 1:
            raise SystemExit(
                "jobledger: --workers above 1 needs PostgreSQL (JOBLEDGER_DATABASE_URL=postgresql://...); "
                "an SQLite store is served by one process"
            )
        return 1
    return wanted if wanted is not None else max(1, os.cpu_count() or 1)


def app_from_environment() -> Starlette:
    """The app of one of several processes, from the settings `run_serve` handed down (uvicorn
    has set up its logging already, from `log_config`)."""
    raw = json.loads(os.environ[SETTINGS_ENV])
    forget_this_process_at_exit()
    return create_app(Settings(**raw))
