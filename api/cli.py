"""The `jobledger` command: serve, worker, projections, events; queue, job and task (jobledger_client/cli/)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from api.settings import Settings
from domain.errors import LedgerError
from jobledger_client.cli import add_commands


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env().with_overrides(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        database_url=getattr(args, "database_url", None),
    )
    try:
        result: int = args.run(settings, args)
        return result
    except LedgerError as exc:
        print(f"jobledger: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobledger", description="An event-sourced job queue.")
    parser.add_argument(
        "--database-url", help="store to use (default: $JOBLEDGER_DATABASE_URL or sqlite:///jobledger.db)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--database-url", default=argparse.SUPPRESS, help="overrides JOBLEDGER_DATABASE_URL")
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        metavar="N",
        help="largest request body accepted, larger ones get HTTP 413 (default $JOBLEDGER_MAX_BODY_BYTES or 1 MiB)",
    )
    serve.set_defaults(run=run_serve)

    projections = commands.add_parser("projections", help="inspect or rebuild the read models")
    actions = projections.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "status", help="position, lag, and what keeps the read models from being complete (exit 1 if anything)"
    ).set_defaults(run=run_status)
    actions.add_parser("rebuild", help="drop the read models and replay every event").set_defaults(run=run_rebuild)
    actions.add_parser(
        "skipped", help="the events the read models set aside because they could not apply them"
    ).set_defaults(run=run_skipped)
    acknowledge = actions.add_parser(
        "acknowledge", help="accept events set aside: the read models stop saying they are degraded"
    )
    acknowledge.add_argument("positions", nargs="*", type=int, metavar="POSITION", help="these (default: all)")
    acknowledge.set_defaults(run=run_acknowledge)
    actions.add_parser(
        "retry", help="after a fix: rebuild the read models, retrying the events set aside in their place"
    ).set_defaults(run=run_retry)

    worker = commands.add_parser("worker", help="claim and run tasks (transfers and commands)")
    worker.add_argument("--url", default="http://127.0.0.1:8000/graphql", help="the service's /graphql URL")
    worker.add_argument("--queue", action="append", dest="queues", metavar="Q", help="only this queue (repeatable)")
    worker.add_argument("--concurrency", type=int, default=1, metavar="N", help="tasks run at once (default 1)")
    worker.add_argument("--name", help="worker name shown on tasks (default host-pid)")
    worker.add_argument("--lease-seconds", type=int, default=60, help="lease length; heartbeats renew it")
    worker.set_defaults(run=run_worker)

    events = commands.add_parser("events", help="the event history")
    event_actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = event_actions.add_parser("export", help="write the history as JSON lines")
    export.add_argument("--after", type=int, default=0, metavar="POSITION", help="only events after this position")
    export.add_argument("--aggregate", metavar="ID", help="only this aggregate's events")
    export.add_argument("--follow", action="store_true", help="keep writing new events as they happen")
    export.set_defaults(run=run_export)

    add_commands(commands)  # queue, job, task: through the Python client against --url
    return parser


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app, http_protocol
    from domain.ledger import open_store  # ValidationError for a bad URL

    if args.max_body_bytes is not None and args.max_body_bytes < 1:
        raise SystemExit("jobledger: --max-body-bytes must be 1 or more")
    settings = settings.with_overrides(max_body_bytes=args.max_body_bytes)
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


def _open(settings: Settings):  # type: ignore[no-untyped-def]
    from domain.ledger import Ledger
    from projections.service import ReadSide

    ledger = Ledger(settings.database_url)
    return ledger, ReadSide(ledger, settings.finished_grace_s, settings.archive_after_s)


def run_status(settings: Settings, args: argparse.Namespace) -> int:
    """The position and lag; then, if the runner is stuck on an event or set events aside,
    which and why (exit status 1, so that scripts notice)."""
    ledger, read_side = _open(settings)
    try:
        read_side.runner.setup()
        status = read_side.runner.status()
    finally:
        read_side.stop()
        ledger.close()
    print(f"{'projection':<14}{'position':>12}{'head':>12}{'lag':>10}")
    print(f"{'read models':<14}{status.position:>12,}{status.head:>12,}{status.lag:>10,}")
    failing = status.failing
    if failing is not None:
        print(
            f"stalled: event {failing.position} ({failing.event_type} of {failing.aggregate_id}) has failed "
            f"{failing.attempts} time(s) since {failing.first_failed}, last at {failing.last_failed}:\n"
            f"  {failing.error}"
        )
    if status.set_aside:
        newest = status.newest_set_aside
        about = f"; newest: event {newest.position} ({newest.event_type}): {newest.reason}" if newest else ""
        print(
            f"degraded: {status.set_aside} event(s) set aside and not acknowledged{about}\n"
            "  list them with `jobledger projections skipped`; after a fix `jobledger projections retry` applies "
            "them, or `jobledger projections acknowledge` accepts the gap"
        )
    if status.acknowledged:
        print(f"{status.acknowledged} event(s) set aside earlier were acknowledged")
    return 1 if failing is not None or status.set_aside else 0


def run_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    ledger, read_side = _open(settings)
    try:
        started = time.monotonic()
        applied = read_side.runner.rebuild(progress=progress_bar("replaying", sys.stderr.isatty()))
        elapsed = time.monotonic() - started
        rate = applied / elapsed if elapsed > 0 else 0.0
        print(f"\nrebuilt the read models from {applied:,} events in {elapsed:.1f} s ({rate:,.0f} events/s)")
        set_aside = read_side.runner.failures()
    finally:
        read_side.stop()
        ledger.close()
    if set_aside:
        print(f"{len(set_aside)} event(s) could not be applied and were set aside:", file=sys.stderr)
        _print_failures(set_aside, sys.stderr)
    return 0


def run_retry(settings: Settings, args: argparse.Namespace) -> int:
    """A rebuild: replaying the whole log applies each event set aside in its place, in
    order, which re-applying it alone after its aggregate's later events could not."""
    ledger, read_side = _open(settings)
    try:
        read_side.runner.setup()
        before = len(read_side.runner.failures())
    finally:
        read_side.stop()
        ledger.close()
    print(f"{before} event(s) set aside; replaying the log to retry them in their place")
    run_rebuild(settings, args)
    ledger, read_side = _open(settings)
    try:
        after = len(read_side.runner.failures())
    finally:
        read_side.stop()
        ledger.close()
    print(f"{before - after if before >= after else 0} applied now, {after} still set aside")
    return 1 if after else 0


def run_skipped(settings: Settings, args: argparse.Namespace) -> int:
    ledger, read_side = _open(settings)
    try:
        read_side.runner.setup()
        failures = read_side.runner.failures()
    finally:
        read_side.stop()
        ledger.close()
    if not failures:
        print("no events set aside")
        return 0
    _print_failures(failures, sys.stdout)
    return 0


def _print_failures(failures: list[Any], out: Any) -> None:
    print(f"{'position':>10}  {'type':<24}{'aggregate':<38}{'attempts':>8}  {'set aside':<27}acknowledged", file=out)
    for f in failures:
        acknowledged = "yes" if f.status == "acknowledged" else "no"
        print(
            f"{f.position:>10}  {f.event_type:<24}{f.aggregate_id:<38}{f.attempts:>8}  {f.last_failed:<27}"
            f"{acknowledged}\n{'':>12}{f.error}",
            file=out,
        )


def run_acknowledge(settings: Settings, args: argparse.Namespace) -> int:
    ledger, read_side = _open(settings)
    try:
        read_side.runner.setup()
        done = read_side.runner.acknowledge(args.positions or None)
    finally:
        read_side.stop()
        ledger.close()
    print(f"acknowledged {done} event(s) set aside")
    return 0 if done or not args.positions else 1


def progress_bar(label: str, live: bool) -> Callable[[int, int], None]:
    """A progress line on stderr: redrawn in place on a terminal, every 10% otherwise."""
    last_tenth = -1

    def show(done: int, total: int) -> None:
        nonlocal last_tenth
        fraction = done / total if total else 1.0
        tenth = int(fraction * 10)
        if not live and tenth == last_tenth:
            return
        last_tenth = tenth
        bar = "#" * int(fraction * 30)
        line = f"{label} [{bar:<30}] {fraction:6.1%} {done:,}/{total:,} events"
        print(f"\r{line}" if live else line, end="" if live else "\n", file=sys.stderr, flush=True)

    return show


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from worker.runner import Worker

    if args.concurrency < 1:
        print("jobledger: --concurrency must be 1 or more", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    worker = Worker(args.url, args.name, args.queues, args.concurrency, args.lease_seconds)
    asyncio.run(worker.run())
    return 0


def run_export(settings: Settings, args: argparse.Namespace) -> int:
    from domain.history import History
    from domain.ledger import Ledger

    ledger = Ledger(settings.database_url)
    history = History(ledger)
    after = args.after
    try:
        while True:
            if args.aggregate:
                records = [r for r in history.of_aggregate(args.aggregate) if r.position > after]
            else:
                records = history.read(after, 1000)
            for record in records:
                sys.stdout.write(record.to_json_line() + "\n")
                after = record.position
            sys.stdout.flush()
            if len(records) == 1000 and not args.aggregate:
                continue
            if not args.follow:
                return 0
            time.sleep(0.2)
    except BrokenPipeError:  # the reader (e.g. `head`) has had enough
        return 0
    finally:
        ledger.close()


if __name__ == "__main__":
    sys.exit(main())
