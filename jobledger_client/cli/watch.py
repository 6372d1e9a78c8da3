"""`jobledger job watch ID ...`: jobs' progress, live, until every one has finished.

On a terminal, a rich progress bar per job with its status, speed, time left and size;
in a pipe, a plain line each time what it says changes; with --json, every report as one
JSON object per line. Exits 0 when every job is DONE, 1 otherwise."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

from jobledger_client import AsyncClient, Client, Job, JobProgress
from jobledger_client.cli import lookup, output
from jobledger_client.cli.output import SHORT

CODE_WIDTH = 24


def job_watch(client: Client, args: argparse.Namespace) -> int:
    jobs: list[Job] = []
    for ref in args.jobs:
        job = lookup.job(client, ref)
        if all(j.id != job.id for j in jobs):
            jobs.append(job)
    view = ProgressView(jobs, args.json)
    with view:
        asyncio.run(_watch(client.url, client.user, getattr(args, "token", None), jobs, view))
    final = [view.latest[j.id] for j in jobs]
    return 0 if all(p is not None and p.status == "DONE" for p in final) else 1


async def _watch(url: str, user: str | None, token: str | None, jobs: Sequence[Job], view: ProgressView) -> None:
    async with AsyncClient(url, user, token=token) as client:

        async def follow(job: Job) -> None:
            async for progress in client.watch(job.id):
                view.report(progress)

        try:
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    group.create_task(follow(job))
        except ExceptionGroup as group_error:  # the first failure is the one to tell
            raise group_error.exceptions[0] from None


class ProgressView:
    """What `job watch` prints, as the reports come in."""

    def __init__(self, jobs: Sequence[Job], as_json: bool) -> None:
        self.jobs = {j.id: j for j in jobs}
        self.as_json = as_json
        self.latest: dict[str, JobProgress | None] = {j.id: None for j in jobs}
        self.printed: dict[str, str] = {}
        self.width = min(max((len(j.code) for j in jobs), default=0), CODE_WIDTH)
        self.bars: Progress | None = None
        self.rows: dict[str, TaskID] = {}
        if not as_json and output.stdout().is_terminal:
            self.bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[status]:<8}"),
                TextColumn("{task.fields[speed]:>10}"),
                TextColumn("{task.fields[left]:>14}"),
                TextColumn("{task.fields[size]:>9}"),
                console=output.stdout(),
            )
            for job in jobs:
                self.rows[job.id] = self.bars.add_task(self._name(job), total=100, **self._columns(None))

    def __enter__(self) -> ProgressView:
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.stop()

    def report(self, progress: JobProgress) -> None:
        self.latest[progress.job_id] = progress
        if self.as_json:
            record = {**progress.to_dict(), "etr_seconds": progress.etr_seconds, "finished": progress.finished}
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
        elif self.bars is not None:
            self.bars.update(self.rows[progress.job_id], completed=progress.progress, **self._columns(progress))
        else:
            line = self._line(progress)
            if self.printed.get(progress.job_id) != line:
                self.printed[progress.job_id] = line
                sys.stdout.write(line + "\n")
                sys.stdout.flush()

    def _name(self, job: Job) -> str:
        code = job.code if len(job.code) <= self.width else job.code[: self.width - 1] + "…"
        return f"{job.id[:SHORT]}  {code:<{self.width}}"

    @staticmethod
    def _columns(p: JobProgress | None) -> dict[str, str]:
        if p is None:
            return {"status": "waiting for the first report...", "speed": "", "left": "", "size": ""}
        running = p.status == "RUNNING"
        return {
            "status": p.status.lower(),
            "speed": output.speed(p.speed) if running and p.speed > 0 else "",
            "left": f"{output.duration(p.etr_seconds)} left" if running and p.etr_seconds is not None else "",
            "size": output.size(p.size) if p.size >= 0 else "",
        }

    def _line(self, p: JobProgress) -> str:
        """The plain line of a report: the same columns as the bars, without the bar."""
        c = self._columns(p)
        tail = f"{c['status']:<8}  {c['speed']:>10}  {c['left']:>14}  {c['size']:>9}".rstrip()
        return f"{self._name(self.jobs[p.job_id])}  {p.progress:>3}%  {tail}"
