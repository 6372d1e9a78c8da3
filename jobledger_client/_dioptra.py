"""Dioptra's queues on `client.queues_collection` (`create`, `get`, `get_by_id`,
`modify_by_id`, `delete_by_id`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobledger_client._anyscale import resolve_queue
from jobledger_client._inputs import UNSET
from jobledger_client._results import ResultIterator
from jobledger_client.models import Queue

if TYPE_CHECKING:
    from jobledger_client._verbs import Verbs


class QueuesCollection:
    """Dioptra's queues: ``client.queues_collection.create(name, description)`` and friends."""

    def __init__(self, client: Verbs) -> None:
        self._client = client

    def create(self, name: str, description: str = "", **fields: Any) -> Queue:
        """Create a queue called `name` (its code) with a description (and any create_queue field)."""
        return self._client.create_queue(name, description=description, **fields)

    def get(self, search: str | None = None, page_size: int = 50) -> ResultIterator[Queue]:
        """The queues, optionally those whose `where` expression matches `search`."""
        return self._client.queues(where=search, first=page_size)

    def get_by_id(self, queue_id: str) -> Queue:
        """A queue by id; raises NotFound."""
        return self._client._run(resolve_queue(queue_id, None))  # type: ignore[no-any-return]

    def modify_by_id(self, queue_id: str, description: str = UNSET, **changes: Any) -> Queue:
        """Change a queue's description (or any update_queue field)."""
        return self._client.update_queue(queue_id, description=description, **changes)

    def delete_by_id(self, queue_id: str) -> str:
        """Delete a queue; returns its id."""
        return self._client.delete_queue(queue_id)
