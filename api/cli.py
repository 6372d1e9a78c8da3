"""The `jobledger` command."""

from __future__ import annotations

import argparse
import logging
import sys

from api.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobledger", description="An event-sourced job queue.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--database-url", help="overrides JOBLEDGER_DATABASE_URL")
    args = parser.parse_args(argv)
    settings = Settings.from_env().with_overrides(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        database_url=getattr(args, "database_url", None),
    )
    if args.command == "serve":
        return serve_forever(settings)
    return 2


def serve_forever(settings: Settings) -> int:
    import uvicorn

    from api.app import create_app
    from domain.errors import LedgerError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
        print(
            f"jobledger: serving on http://{settings.host}:{settings.port}/ (store: {settings.database_url})"
        )
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    except LedgerError as exc:
        print(f"jobledger: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
