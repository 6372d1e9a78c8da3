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
    worker = commands.add_parser(
        "worker",
        help="claim and run tasks (transfers and commands)",
        description="Claim and run tasks. By default a worker runs no command and touches no file: "
        "--allow-commands and --root say what it may do. SIGTERM or SIGINT stops it within seconds: "
        "the commands it runs are stopped and their leases given back; a second signal exits at once.",
    )
    worker.add_argument("--url", default="http://127.0.0.1:8000/graphql", help="the service's /graphql URL")
    worker.add_argument(
        "--token",
        help="the worker's access token (default: $JOBLEDGER_TOKEN, else the token file: $JOBLEDGER_TOKEN_FILE, "
        "$XDG_CONFIG_HOME/jobledger/token or ~/.config/jobledger/token)",
    )
    worker.add_argument("--queue", action="append", dest="queues", metavar="Q", help="only this queue (repeatable)")
    worker.add_argument("--concurrency", type=int, default=1, metavar="N", help="tasks run at once (default 1)")
    worker.add_argument("--name", help="worker name shown on tasks (default host-pid)")
    worker.add_argument("--lease-seconds", type=int, default=60, help="lease length; heartbeats renew it")
    worker.add_argument(
        "--allow-commands",
        action="store_true",
        help="run command tasks (of queues whose group allows them); without it they are refused",
    )
    worker.add_argument(
        "--root",
        action="append",
        dest="roots",
        default=[],
        metavar="DIR",
        help="a folder transfers may read from and write to (repeatable); without one every transfer is refused",
    )
    worker.add_argument(
        "--max-rate",
        type=float,
        metavar="MBPS",
        help="move at most this many MB/s per transfer (default: as fast as the disks and network go)",
    )
    worker.set_defaults(run=run_worker)


def run_worker(settings: object, args: argparse.Namespace) -> int:
    """Run the worker until SIGINT or SIGTERM (exit status 0; 2 for a bad option, or when the
    service refuses the worker; a second signal exits at once with 128 + the signal). The
    worker's configuration is its options: `settings`, the server's, goes unused."""
    import asyncio

    from worker.policy import BadRoot, Policy
    from worker.runner import Worker

    if args.concurrency < 1:
        return refuse("--concurrency must be 1 or more")
    if args.max_rate is not None and not 0 < args.max_rate < float("inf"):
        return refuse("--max-rate must be a number of MB/s above 0")
    try:
        policy = Policy.of(args.allow_commands, args.roots)
    except BadRoot as exc:
        return refuse(f"{exc}: give folders that exist")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        worker = Worker(
            args.url,
            args.name,
            args.queues,
            args.concurrency,
            args.lease_seconds,
            policy=policy,
            token=args.token,
            max_rate=args.max_rate,
        )
    except PermissionError as exc:  # a token file that is not ours to read
        return refuse(str(exc))
    asyncio.run(worker.run())
    return worker.exit_status


def refuse(message: str) -> int:
    """Say what is wrong, `jobledger: <message>` on stderr; exit status 2."""
    print(f"jobledger: {message}", file=sys.stderr)
    return 2
