"""The GraphQL documents the client sends (parsed once, by gql)."""

from __future__ import annotations

from functools import cache

from gql import gql
from gql.graphql_request import GraphQLRequest
from graphql import OperationDefinitionNode, OperationType

from jobledger_client.models import Event, Job, JobProgress, Queue, Task, selection

# Each fragment selects the fields of its model (`jobledger_client.models`), no more, no less.
QUEUE = f"\nfragment QueueFields on Queue {{ {selection(Queue)} }}"
JOB = f"\nfragment JobFields on Job {{ {selection(Job)} }}"
TASK = f"\nfragment TaskFields on Task {{ {selection(Task)} }}"
EVENT = f"\nfragment EventFields on Event {{ {selection(Event)} }}"
LEASE = "fragment LeaseFields on TaskLease { id worker expires task { ...TaskFields } }" + TASK
PAGE = "pageInfo { hasNextPage endCursor }"

QUEUE_BY = "query QueueBy($id: ID, $code: String) { queue(id: $id, code: $code) { ...QueueFields } }" + QUEUE
QUEUES = (
    """query Queues($where: String, $includeArchived: Boolean, $orderBy: [SortDirective!], $first: Int,
                    $after: String) {
  page: queues(where: $where, includeArchived: $includeArchived, orderBy: $orderBy, first: $first, after: $after) {
    totalCount nodes { ...QueueFields } """
    + PAGE
    + "} }"
    + QUEUE
)
CREATE_QUEUE = (
    "mutation CreateQueue($input: CreateQueueInput!) { createQueue(input: $input) { ...QueueFields } }" + QUEUE
)
UPDATE_QUEUE = (
    "mutation UpdateQueue($id: ID!, $input: UpdateQueueInput!) {"
    " updateQueue(id: $id, input: $input) { ...QueueFields } }" + QUEUE
)
ARCHIVE_QUEUE = "mutation ArchiveQueue($id: ID!) { archiveQueue(id: $id) { ...QueueFields } }" + QUEUE
TERMINATE_QUEUE = "mutation TerminateQueue($id: ID!) { terminateQueue(id: $id) { ...QueueFields } }" + QUEUE
DELETE_QUEUE = "mutation DeleteQueue($id: ID!) { deleteQueue(id: $id) }"
ADD_QUEUE_TAGS = (
    "mutation AddTags($id: ID!, $tags: JSON!) { addQueueTags(id: $id, tags: $tags) { ...QueueFields } }" + QUEUE
)
REMOVE_QUEUE_TAGS = (
    "mutation RemoveTags($id: ID!, $keys: [String!]!) { removeQueueTags(id: $id, keys: $keys) { ...QueueFields } }"
    + QUEUE
)

JOB_BY = "query JobBy($id: ID!) { job(id: $id) { ...JobFields } }" + JOB
JOBS = (
    """query Jobs($where: String, $phase: JobPhase, $queue: String, $orderBy: [SortDirective!], $first: Int,
                  $after: String) {
  page: jobs(where: $where, phase: $phase, queue: $queue, orderBy: $orderBy, first: $first, after: $after) {
    totalCount nodes { ...JobFields } """
    + PAGE
    + "} }"
    + JOB
)
QUEUE_JOBS = (
    """query QueueJobs($id: ID, $code: String, $status: [JobStatus!], $first: Int, $after: String) {
  queue(id: $id, code: $code) { id page: jobs(status: $status, first: $first, after: $after) {
    totalCount nodes { ...JobFields } """
    + PAGE
    + "} } }"
    + JOB
)
CREATE_JOB = "mutation CreateJob($input: CreateJobInput!) { createJob(input: $input) { ...JobFields } }" + JOB
UPDATE_JOB = (
    "mutation UpdateJob($id: ID!, $input: UpdateJobInput!) { updateJob(id: $id, input: $input) { ...JobFields } }" + JOB
)
DELETE_JOB = "mutation DeleteJob($id: ID!) { deleteJob(id: $id) }"

TASK_BY = "query TaskBy($id: ID!) { task(id: $id) { ...TaskFields } }" + TASK
TASKS = (
    """query Tasks($jobId: ID!, $where: String, $first: Int, $after: String) {
  page: tasks(jobId: $jobId, where: $where, first: $first, after: $after) { totalCount nodes { ...TaskFields } """
    + PAGE
    + "} }"
    + TASK
)
ADD_TASKS = (
    """mutation AddTasks($jobId: ID!, $tasks: [TaskInput!]!, $allowDuplicates: Boolean) {
  addTasks(jobId: $jobId, tasks: $tasks, allowDuplicates: $allowDuplicates) { ...TaskFields } }"""
    + TASK
)
UPDATE_TASKS = (
    """mutation UpdateTasks($jobId: ID!, $tasks: [TaskUpdateInput!]!) {
  updateTasks(jobId: $jobId, tasks: $tasks) { ...TaskFields } }"""
    + TASK
)

EVENTS = (
    """query Events($after: Long, $aggregateId: ID, $types: [String!], $first: Int) {
  page: events(after: $after, aggregateId: $aggregateId, types: $types, first: $first) { nodes { ...EventFields } """
    + PAGE
    + "} }"
    + EVENT
)
JOB_EVENTS = (
    """query JobEvents($id: ID!, $after: Long, $first: Int) {
  job(id: $id) { id page: events(after: $after, first: $first) { nodes { ...EventFields } """
    + PAGE
    + "} } }"
    + EVENT
)

# A claim also brings the job's code and destination, what a worker names the task by and
# copies into, and whether its queue allows command tasks, which a worker runs only then.
CLAIM = (
    """mutation Claim($worker: String!, $queues: [String!], $limit: Int, $leaseSeconds: Int) {
  claimTasks(worker: $worker, queues: $queues, limit: $limit, leaseSeconds: $leaseSeconds) {
    ...LeaseFields task { job { code destination queue { code allowCommands } } } } }"""
    + LEASE
)
HEARTBEAT = (
    """mutation Heartbeat($leaseId: ID!, $progress: Int, $bytesDone: Long, $speed: Float, $size: Long) {
  heartbeat(leaseId: $leaseId, progress: $progress, bytesDone: $bytesDone, speed: $speed, size: $size) {
    ...LeaseFields } }"""
    + LEASE
)
COMPLETE = (
    "mutation Complete($leaseId: ID!, $result: JSON) { completeTask(leaseId: $leaseId, result: $result) "
    "{ ...TaskFields } }" + TASK
)
FAIL = (
    "mutation Fail($leaseId: ID!, $error: String!, $retry: Boolean) { failTask(leaseId: $leaseId, error: $error, "
    "retry: $retry) { ...TaskFields } }" + TASK
)
RELEASE = "mutation Release($leaseId: ID!) { releaseTask(leaseId: $leaseId) { ...TaskFields } }" + TASK

WATCH = f"subscription Watch($jobId: ID!) {{ jobProgress(jobId: $jobId) {{ {selection(JobProgress)} }} }}"
FOLLOW_EVENTS = (
    """subscription Follow($after: Long, $aggregateId: ID, $types: [String!]) {
  events(after: $after, aggregateId: $aggregateId, types: $types) { ...EventFields } }"""
    + EVENT
)


@cache
def parsed(document: str) -> GraphQLRequest:
    """The document parsed by gql, once per process."""
    return gql(document)


# Mutations sent without an Idempotency-Key: sending one twice does no harm (a heartbeat
# renews the lease again), and a key each second for each running task would only fill the
# service's record of keys.
UNKEYED = frozenset({HEARTBEAT})


@cache
def is_mutation(document: str) -> bool:
    """Whether the document's operation is a mutation (it may change something)."""
    return any(
        isinstance(node, OperationDefinitionNode) and node.operation is OperationType.MUTATION
        for node in parsed(document).document.definitions
    )


def needs_key(document: str) -> bool:
    """Whether the clients send the document with an Idempotency-Key: every mutation but
    those safe to send twice."""
    return document not in UNKEYED and is_mutation(document)
