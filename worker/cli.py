"""`jobledger worker`: the built-in worker's sub-command. The worker loop (worker.runner)
and the client are loaded when it runs, so that the `jobledger` program's other commands
do not pay for them."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def add_commands(commands: Any) -> None:
    """Add `worker` to the `jobledger` command's subparsers."""
    worker = commands.add_parser("worker", help="claim and run tasks (transfers and commands)")
    worker.add_argument("--url", default="http://127.0.0.1:8000/graphql", help="the service's /graphql URL")
    worker.add_argument("--queue", action="append", dest="queues", metavar="Q", help="only this queue (repeatable)")
    worker.add_argument("--concurrency", type=int, default=1, metavar="N", help="tasks run at once (default 1)")
    worker.add_argument("--name", help="worker name shown on tasks (default host-pid)")
    worker.add_argument("--lease-seconds", type=int, default=60, help="lease length; heartbeats renew it")
    worker.set_defaults(run=run_worker)


def run_worker(settings: object, args: argparse.Namespace) -> int:
    """Run the worker until SIGINT or SIGTERM (exit status 0; 2 for a bad option). The
    worker's configuration is its options: `settings`, the server's, goes unused."""
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
