"""The Python client of jobledger: sync and async, over HTTP and websockets (built on gql).

    from jobledger_client import Client, NotFound

    client = Client("http://127.0.0.1:8000/graphql")   # token: $JOBLEDGER_TOKEN or the token file
    queue = client.create_queue("ingest", priority=700)
    job = client.create_job(queue="ingest", tasks=["/media/a.mov"], destination="/out")
    for progress in client.watch(job.id):       # live, ends when the job finishes
        print(progress.status, progress.progress, progress.etr)

    client.find("Job where status=aborted")     # accsyn's session verbs
    client.job_queue.list(sorting_directives=["-created"], page_size=20)   # Anyscale's
    client.queues_collection.create("cpu", "CPU workers")                  # Dioptra's

See the README's "Python client" section for each style, and `jobledger_client.credentials`
for where the token comes from.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jobledger_client._inputs import UNSET
from jobledger_client.errors import (
    Conflict,
    Forbidden,
    Internal,
    InvalidTransition,
    JobledgerError,
    NotFound,
    OutcomeUnknown,
    Unauthenticated,
    Unavailable,
    Validation,
    error_from,
)
from jobledger_client.models import Event, Job, JobProgress, Queue, QueueSettings, Task, TaskLease

# The clients (gql, httpx, tenacity) load on first use: a program that only builds its
# command line, like `jobledger serve` with the client's commands in its parser, does
# not pay for them.
_LAZY = {
    "DEFAULT_URL": "jobledger_client._transport",
    "AsyncClient": "jobledger_client.client",
    "AsyncResultIterator": "jobledger_client._results",
    "Client": "jobledger_client.client",
    "JobQueues": "jobledger_client._anyscale",
    "QueuesCollection": "jobledger_client._dioptra",
    "ResultIterator": "jobledger_client._results",
    "RetryPolicy": "jobledger_client.retry",
}

if TYPE_CHECKING:
    from jobledger_client._anyscale import JobQueues
    from jobledger_client._dioptra import QueuesCollection
    from jobledger_client._results import AsyncResultIterator, ResultIterator
    from jobledger_client._transport import DEFAULT_URL
    from jobledger_client.client import AsyncClient, Client
    from jobledger_client.retry import RetryPolicy


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DEFAULT_URL",
    "UNSET",
    "AsyncClient",
    "AsyncResultIterator",
    "Client",
    "Conflict",
    "Event",
    "Forbidden",
    "Internal",
    "InvalidTransition",
    "Job",
    "JobProgress",
    "JobQueues",
    "JobledgerError",
    "NotFound",
    "OutcomeUnknown",
    "Queue",
    "QueueSettings",
    "QueuesCollection",
    "ResultIterator",
    "RetryPolicy",
    "Task",
    "TaskLease",
    "Unauthenticated",
    "Unavailable",
    "Validation",
    "error_from",
]
