"""The Python client of jobledger: sync and async, over HTTP and websockets (built on gql).

    from jobledger_client import Client, NotFound

    client = Client("http://127.0.0.1:8000/graphql", user="ann@example.com")
    queue = client.create_queue("ingest", priority=700)
    job = client.create_job(queue="ingest", tasks=["/media/a.mov"], destination="/out")
    for progress in client.watch(job.id):       # live, ends when the job finishes
        print(progress.status, progress.progress, progress.etr)

    client.find("Job where status=aborted")     # accsyn's session verbs
    client.job_queue.list(sorting_directives=["-created"], page_size=20)   # Anyscale's
    client.queues_collection.create("cpu", "CPU workers")                  # Dioptra's

See the README's "Python client" section for each style.
"""

from jobledger_client._plans import UNSET
from jobledger_client.client import (
    DEFAULT_URL,
    AsyncClient,
    AsyncResultIterator,
    Client,
    JobQueues,
    QueuesCollection,
    ResultIterator,
)
from jobledger_client.errors import (
    Conflict,
    Forbidden,
    Internal,
    InvalidTransition,
    JobledgerError,
    NotFound,
    Unauthenticated,
    Unavailable,
    Validation,
    error_from,
)
from jobledger_client.models import Event, Job, JobProgress, Queue, Task, TaskLease

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
    "Queue",
    "QueuesCollection",
    "ResultIterator",
    "Task",
    "TaskLease",
    "Unauthenticated",
    "Unavailable",
    "Validation",
    "error_from",
]
