"""Prometheus metrics at /metrics: what operators graph and alert on.

Two kinds. What this process did (GraphQL operations by type, root field and error code,
their latency, events appended, leases expired, retries, subscriptions running) is counted
in prometheus_client's metrics; under `jobledger serve --workers N` every process writes
them to files in PROMETHEUS_MULTIPROC_DIR (`multiprocess_metrics` sets it up) and the one
answering a scrape adds them all up. What describes the store (work by queue and status,
leases, projection lag) is read from the read models when the scrape comes (one query
each, `projections.gauges`), so every process and instance gives the same answer.

No label carries a user, a token, a client-chosen operation name or anything else a
caller could multiply: operations are named by the schema's root field.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import functools
import hmac
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
)
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from api.http_edge import error_response
from api.settings import Settings, is_loopback
from domain.errors import LedgerError
from domain.ledger import Ledger
from domain.task import Task, TaskStatus
from persistence.faults import OutcomeUnknownError, StoreUnavailableError, is_unavailable
from projections.gauges import Gauges, ProjectionLag, projection_lag
from projections.service import ReadSide

log = logging.getLogger("jobledger.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FOLDER_PREFIX = "jobledger-metrics-"  # then the serving parent's pid: `jobledger-metrics-1234-x8f2`
READ_TIMEOUT_S = 10.0  # a scrape waits this long for the store's readings, then answers without them
INVALID = "(invalid)"  # the root field of a document that does not parse or names no field of the schema
SEVERAL = "(several)"  # the root field of an operation that asks for more than one

disable_created_metrics()  # `_created` series double the output and tell nothing an alert uses

# -- what this process did ----------------------------------------------------------------------

REQUESTS = Counter(
    "jobledger_graphql_requests",
    "GraphQL operations answered (over HTTP or a websocket), by operation type, root field and the "
    "first error's code (OK: no error)",
    ["operation", "field", "code"],
)
LATENCY = Histogram(
    "jobledger_graphql_request_duration_seconds",
    "Time to answer a GraphQL operation (parse, validate, execute; a subscription: until its first result)",
    ["operation", "field"],
)
EVENTS = Counter(
    "jobledger_events_appended",
    "Events this process appended to the store, by aggregate and event type",
    ["aggregate", "event"],
)
LEASES_EXPIRED = Counter(
    "jobledger_leases_expired",
    "Leases ended by the clock because their worker stopped renewing them",
)
RETRIES = Counter(
    "jobledger_task_retries",
    "Tasks queued again after a failed attempt (cause=failed) or an expired lease (cause=expired)",
    ["cause"],
)
for cause in ("failed", "expired"):
    RETRIES.labels(cause)  # both series from the start, so that rate() and alerts see 0, not nothing
SUBSCRIPTIONS = Gauge(
    "jobledger_subscriptions",
    "Subscriptions running now, by root field",
    ["field"],
    multiprocess_mode="livesum",
)


def count_recorded(recordings: Sequence[Any]) -> None:
    """After a save: count its events by type, and the lease expiries and retries among them
    (a lease given back unworked is neither). One increment per type, not per event: a job
    of 10,000 tasks is one save."""
    by_type: collections.Counter[tuple[str, str]] = collections.Counter()
    for recording in recordings:
        event = recording.domain_event
        aggregate, _, name = type(event).__qualname__.partition(".")
        by_type[(aggregate, name or aggregate)] += 1
        if isinstance(event, Task.AttemptFailed) and not isinstance(event, Task.LeaseReleased):
            expired = isinstance(event, Task.LeaseExpired)
            if expired:
                LEASES_EXPIRED.inc()
            if event.status != TaskStatus.FAILED:
                RETRIES.labels("expired" if expired else "failed").inc()
    for (aggregate, name), count in by_type.items():
        EVENTS.labels(aggregate, name).inc(count)


def count_appended_events(ledger: Ledger) -> None:
    """Count the events of every save `ledger` makes from now on."""
    ledger.after_record.append(count_recorded)


class RequestMetrics(SchemaExtension):
    """Counts each operation once with its error code, and times it: over HTTP when it is
    answered, over a websocket at its first result. A subscription is counted as running
    from its execution until it ends, however it ends (completed, failed, the socket gone).

    Listed first among the schema's extensions, so that its time includes theirs and its
    code is read after `ErrorCodes` has given every error one."""

    def __init__(self, *, execution_context: Any = None) -> None:
        self._started = time.perf_counter()
        self._counted = False
        self._running: str | None = None  # the root field of the subscription it counts as running
        self._named: tuple[str, str] | None = None  # (operation type, root field)

    def on_operation(self) -> Iterator[None]:
        self._started = time.perf_counter()
        code = None
        try:
            yield
        except GraphQLError:  # raised by a parsing extension: the document's fault
            code = "VALIDATION"
            raise
        except (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError):
            code = "VALIDATION"  # no query, no such operation name, a mutation sent with GET
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            if self._running is not None:
                SUBSCRIPTIONS.labels(self._running).dec()
            if not self._counted:
                result = self.execution_context.result
                errors = getattr(result, "errors", None) or self.execution_context.pre_execution_errors
                self._count(code or first_code(errors))

    def on_execute(self) -> Iterator[None]:
        operation, field = self._operation()
        if operation == OperationType.SUBSCRIPTION.value:
            self._running = field
            SUBSCRIPTIONS.labels(field).inc()
        yield

    def on_stream_result(self, result: Any) -> Iterator[None]:
        if not self._counted:
            self._count(first_code(getattr(result, "errors", None)))
        yield

    def _count(self, code: str) -> None:
        self._counted = True
        operation, field = self._operation()
        _child(REQUESTS, operation, field, code).inc()
        _child(LATENCY, operation, field).observe(time.perf_counter() - self._started)

    def _operation(self) -> tuple[str, str]:
        """(operation type, root field), worked out once: `unknown` and `(invalid)` for a
        document that does not parse or has no operation of the name asked for."""
        if self._named is None:
            self._named = _named(self.execution_context)
        return self._named


def _named(context: Any) -> tuple[str, str]:
    document = context.graphql_document
    wanted = context.operation_name
    definition = next(
        (
            d
            for d in getattr(document, "definitions", ())
            if isinstance(d, OperationDefinitionNode)
            and (wanted is None or (d.name is not None and d.name.value == wanted))
        ),
        None,
    )
    if definition is None:
        return "unknown", INVALID
    kind = definition.operation.value
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    names = _root_fields(definition.selection_set.selections, fragments)
    known = _root_field_names(context.schema._schema).get(kind, frozenset())
    meaningful = names - {"__typename"} or names
    if not meaningful or not names <= known:
        return kind, INVALID
    return kind, meaningful.pop() if len(meaningful) == 1 else SEVERAL


@functools.cache
def _root_field_names(schema: GraphQLSchema) -> dict[str, frozenset[str]]:
    """The fields each root type of the schema has (and the introspection ones), by operation type."""
    roots = {"query": schema.query_type, "mutation": schema.mutation_type, "subscription": schema.subscription_type}
    meta = frozenset({"__typename", "__schema", "__type"})
    return {kind: frozenset(getattr(root, "fields", {})) | meta for kind, root in roots.items()}


_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, remembered: prometheus_client checks and locks on every call,
    and the label sets are few (operation types x root fields x codes)."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def _root_fields(selections: Iterable[Any], fragments: dict[str, Any], depth: int = 0) -> set[str]:
    names: set[str] = set()
    for selection in selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif depth < 5 and isinstance(selection, InlineFragmentNode):
            names |= _root_fields(selection.selection_set.selections, fragments, depth + 1)
        elif depth < 5 and isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            names |= _root_fields(fragments[selection.name.value].selection_set.selections, fragments, depth + 1)
    return names


def first_code(errors: Sequence[GraphQLError] | None) -> str:
    """The code of the first error, as the answer carries it (OK: no error). An error not
    coded yet gets the one `api.errors.ErrorCodes` will give it, without logging it again."""
    if not errors:
        return "OK"
    error = errors[0]
    code = (error.extensions or {}).get("code")
    if isinstance(code, str) and code:
        return code
    original = error.original_error
    if isinstance(original, LedgerError | StoreUnavailableError | OutcomeUnknownError):
        return str(original.code)
    if original is not None and is_unavailable(original):
        return "UNAVAILABLE"
    if original is None or isinstance(original, GraphQLError) or error.path is None:
        return "VALIDATION"
    return "INTERNAL"


# -- what the store holds, read at each scrape --------------------------------------------------


async def store_metrics(read_side: ReadSide) -> list[Metric]:
    """The store's readings as metric families; `jobledger_store_reachable` 0 (and nothing
    else) when they cannot be read in time, so that the process's own counts still arrive."""
    reachable = GaugeMetricFamily(
        "jobledger_store_reachable", "1 when this scrape could read the read models and the store, else 0"
    )
    try:
        families = await asyncio.wait_for(_read_store(read_side), READ_TIMEOUT_S)
    except Exception as exc:
        log.warning("metrics: the store could not be read (%s: %s)", type(exc).__name__, exc)
        reachable.add_metric([], 0)
        return [reachable]
    reachable.add_metric([], 1)
    return [reachable, *families]


async def _read_store(read_side: ReadSide) -> list[Metric]:
    gauges = Gauges(read_side.store)
    now = datetime.now(UTC)
    tasks, jobs, leases, lag = await asyncio.gather(
        gauges.tasks_by_queue(),
        gauges.jobs_by_queue(),
        gauges.leases_by_queue(now),
        asyncio.to_thread(projection_lag, read_side.runner, now),
    )
    queue_tasks = GaugeMetricFamily(
        "jobledger_queue_tasks",
        "Tasks of the jobs in the ACTIVE list, by queue and task status",
        labels=["queue", "status"],
    )
    for row in tasks:
        queue_tasks.add_metric([row.queue, row.status], row.count)
    queue_jobs = GaugeMetricFamily(
        "jobledger_queue_jobs", "Jobs in the ACTIVE list, by queue and job status", labels=["queue", "status"]
    )
    for row in jobs:
        queue_jobs.add_metric([row.queue, row.status], row.count)
    held = {(row.queue, row.status): row.count for row in leases}
    active = GaugeMetricFamily("jobledger_leases_active", "Tasks a worker holds a lease on, by queue", labels=["queue"])
    overdue = GaugeMetricFamily(
        "jobledger_leases_overdue",
        "Leases past their deadline that the clock has not ended yet, by queue (they pile up when the clock stops)",
        labels=["queue"],
    )
    for queue in sorted({row.queue for row in tasks} | {q for q, _ in held}):
        active.add_metric([queue], held.get((queue, "active"), 0))
        overdue.add_metric([queue], held.get((queue, "overdue"), 0))
    return [queue_tasks, queue_jobs, active, overdue, *_projection_families(lag)]


def _projection_families(lag: ProjectionLag) -> list[Metric]:
    appended = CounterMetricFamily(
        "jobledger_store_events", "Events in the store: its newest position (positions have no gaps)"
    )
    appended.add_metric([], lag.head)
    families: list[Metric] = [appended]
    for name, text, value in (
        ("jobledger_projection_position", "The newest store position the read models include", lag.position),
        ("jobledger_projection_lag_events", "Events in the store the read models do not include yet", lag.lag),
        (
            "jobledger_projection_lag_seconds",
            "How long the oldest event the read models lack has been in the store (0 while they keep up)",
            lag.lag_seconds,
        ),
        ("jobledger_projection_stalled", "1 while the read models retry an event they cannot apply", int(lag.stalled)),
        (
            "jobledger_projection_events_set_aside",
            "Events the read models set aside and nobody acknowledged (`jobledger projections skipped`)",
            lag.set_aside,
        ),
    ):
        family = GaugeMetricFamily(name, text)
        family.add_metric([], value)
        families.append(family)
    return families


# -- this process's counts, or all processes' -----------------------------------------------------


class _Families:
    """A collector of metric families already gathered."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def process_metrics() -> list[Metric]:
    """This process's metrics; under `serve --workers N`, every process's, added up (and the
    running gauges of processes that died without saying so, left out)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return list(REGISTRY.collect())
    forget_dead_processes(directory)
    return list(MultiProcessCollector(None, path=directory).collect())


_LIVE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


def forget_dead_processes(directory: str) -> None:
    """A process killed outright never marks itself dead: its running gauges (subscriptions)
    would be added up for ever. Mark every process whose files are here and that is gone."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        match = _LIVE_FILE.match(path.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if not _alive(pid):
            mark_process_dead(pid, directory)


@contextlib.contextmanager
def multiprocess_metrics() -> Iterator[str]:
    """For `serve --workers N`: a fresh folder for the processes' metric files, named in
    PROMETHEUS_MULTIPROC_DIR for the processes started inside, removed when they have stopped."""
    _remove_orphaned_folders()
    directory = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
    before = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = directory
    log.info("the serving processes keep their metrics in %s (removed when they stop)", directory)
    try:
        yield directory
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
        shutil.rmtree(directory, ignore_errors=True)


def _remove_orphaned_folders() -> None:
    """The folders of earlier runs whose parent was killed outright (SIGKILL leaves no time
    to remove them): the parent's pid is in the name."""
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name[len(FOLDER_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def forget_this_process_at_exit() -> None:
    """In a process of `serve --workers N`: when it exits, its running gauges stop counting."""
    if os.environ.get(MULTIPROC_ENV):
        atexit.register(mark_process_dead, os.getpid())


# -- the endpoint ---------------------------------------------------------------------------------


def metrics_route(settings: Settings) -> Route:
    """GET /metrics, for operators: with JOBLEDGER_METRICS_TOKEN set, to whoever shows it as
    `Authorization: Bearer <token>` (from any address, loopback included, since a proxy on
    this machine would make every client look local); without it, to loopback callers only."""
    token = settings.metrics_token

    async def metrics(request: Request) -> Response:
        refusal = _refusal(request, token)
        if refusal is not None:
            return refusal
        families = process_metrics() + await store_metrics(request.app.state.read_side)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    return Route("/metrics", metrics, methods=["GET"])


def _refusal(request: Request, token: str | None) -> Response | None:
    if token is not None:
        scheme, _, shown = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(shown.strip().encode(), token.encode()):
            return None
        return error_response(
            401,
            "/metrics needs the metrics token: send `Authorization: Bearer <JOBLEDGER_METRICS_TOKEN>` "
            "(in Prometheus: `authorization: {credentials_file: ...}`); user tokens are not accepted here",
            headers={"WWW-Authenticate": 'Bearer realm="jobledger metrics"'},
        )
    client = request.client.host if request.client else ""
    if is_loopback(client):
        return None
    return error_response(
        403,
        f"/metrics is served to loopback addresses only, not to {client or 'an unknown address'}: "
        "set JOBLEDGER_METRICS_TOKEN on the server and scrape with `Authorization: Bearer <token>`",
    )
