"""`jobledger serve`: the service under uvicorn."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from api.app import create_app
from api.http_edge import http_protocol
from api.settings import Settings
from domain.ledger import open_store  # ValidationError for a bad URL


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.max_body_bytes is not None and args.max_body_bytes < 1:
        raise SystemExit("jobledger: --max-body-bytes must be 1 or more")
    settings = settings.with_overrides(max_body_bytes=args.max_body_bytes)
    settings.check_auth()
    open_store(settings.database_url)  # a bad URL fails here, with what to write instead
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"jobledger: serving on http://{settings.host}:{settings.port}/ (store: {settings.database_url})")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        http=http_protocol(),  # requests uvicorn cannot parse are answered in JSON too
        # The app refuses messages over the limit in each protocol's own way; uvicorn's limit,
        # above it, is the backstop that keeps a huge frame from being buffered at all.
        ws_max_size=2 * settings.max_ws_message_bytes,
    )
    return 0
