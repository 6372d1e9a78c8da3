"""The limits on everything a caller sends, in one place (the README's "Limits" table).

They keep every event small enough for both stores and for a projection to apply: one
event of a queue, a job or a task stays under about 400 KB (a failure text of control
characters, six bytes each as JSON escapes, is the largest), except the job's list of the tasks
one call adds, about 145 bytes a task: 1.45 MB for MAX_TASKS_PER_CALL.
"""

from __future__ import annotations

# Strings, in characters.
MAX_QUEUE_CODE = 100
MAX_JOB_CODE = 255
MAX_NAME = 255  # worker names, actors, queue references (a code or an id)
MAX_PATH = 4096  # a job's or a task's source and destination, and a location's `path`
MAX_DESCRIPTION = 10_000
MAX_ERROR_TEXT = 65_536  # a worker's failure text; longer text is cut, with a note saying so
MAX_USER_NAME = 100  # a user's name, recorded as the actor of what they do (within MAX_NAME)
MAX_GROUP_CODE = 100
MAX_TOKEN_LABEL = 200  # what a token is for ("render farm, rack 3")
MAX_TOKEN_TEXT = 200  # what `authenticate` reads of a presented token; a real one is ~60

# JSON documents: metadata, results, tags and a task's source or destination object.
MAX_JSON_BYTES = 65_536  # encoded as compact UTF-8 JSON, as the store keeps it
MAX_JSON_DEPTH = 32  # nested objects and arrays

# Tags of a queue.
MAX_TAGS = 100
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 1024

# Lists and numbers.
MAX_TASKS_PER_CALL = 10_000  # createJob, addTasks, updateTasks
MAX_CLAIM = 500  # tasks per claimTasks, leases per completeTasks
MAX_PAGE = 500  # `first` of every list (enforced by the read side's queries)
MIN_LEASE_SECONDS, MAX_LEASE_SECONDS = 1, 24 * 3600
MIN_PRIORITY, MAX_PRIORITY = 0, 1000
MAX_ATTEMPTS = 1000  # a job's or a queue's maxAttempts
MAX_CONCURRENCY = 1_000_000  # a queue's maxConcurrency
MAX_IDLE_TIMEOUT_S = 366 * 24 * 3600
MAX_BYTES = 2**63 - 1  # a task's size, a heartbeat's bytesDone: what a 64-bit column holds
MAX_SPEED = 1_000_000_000_000  # MB/s in a heartbeat
MIN_TOKEN_LIFETIME_S, MAX_TOKEN_LIFETIME_S = 60, 5 * 366 * 24 * 3600  # a token's expiry, from its issue
