"""Queue commands: create, change, seal, terminate and delete queues, and their tags."""

from __future__ import annotations

from typing import Any

from domain.access import ADMINS_GROUP, Principal, Right, check_right, current_principal, guard_queue
from domain.catalogue import QUEUE
from domain.commands import Service, Written, command
from domain.errors import ConflictError, LedgerError, ValidationError
from domain.groups import check_group_code, check_group_exists
from domain.idempotency import Idempotency
from domain.job import Job, JobStatus
from domain.lifecycle import find_queue, queue_members
from domain.limits import MAX_TAGS
from domain.queue import REGISTRY_ID, Queue, QueueRegistry, QueueState
from domain.rules import check_tags
from domain.unit_of_work import UnitOfWork

DEFAULT_QUEUE_CODE = "default"


class QueueCommands(Service):
    """The commands on queues (`ledger.queues`). Each takes `actor=` and answers with
    `Written`, whose ids are the queue's."""

    name = "queues"

    @command
    def ensure_default(self, uow: UnitOfWork) -> list[str]:
        """Create the registry and the `default` queue on the first start; else nothing."""
        registry = uow.find(QueueRegistry, REGISTRY_ID)
        if registry is not None and registry.default_queue_id:
            return [registry.default_queue_id]
        registry = registry or uow.add(QueueRegistry())
        queue = uow.add(_new_queue(DEFAULT_QUEUE_CODE, default=True, description="The default queue"))
        registry.reserve(DEFAULT_QUEUE_CODE, str(queue.id))
        registry.change_default(str(queue.id))
        return [str(queue.id)]

    @command
    def create(
        self, uow: UnitOfWork, code: str, *, parent: str | None = None, group: str | None = None, **settings: Any
    ) -> list[str]:
        """A new queue with a code no other queue has, owned by `group` (default: the
        parent's group, else the caller's only group); nested in `parent` (a code or an id)
        if given. `settings` are the other creatable fields of `domain.catalogue.QUEUE`
        (priority, status, default, description, metadata, tags, max_concurrency, ...);
        those left out take their default there."""
        registry = uow.get(QueueRegistry, REGISTRY_ID)
        QUEUE["code"].checked(code)
        parent_queue = find_queue(uow, parent) if parent is not None else None
        if parent_queue is not None:
            guard_queue(parent_queue, Right.READ, parent)
        owner = _owner(uow, group, parent_queue)
        registry.check_code_free(code)
        fields = QUEUE.new({**settings, "code": code})
        default = fields.pop("default")
        if default:
            check_right(Right.MANAGE_QUEUES, ADMINS_GROUP, "the default queue")
        queue = uow.add(
            Queue(
                **fields,
                uri=f"{parent_queue.uri}/{code}" if parent_queue else code,
                parent_id=str(parent_queue.id) if parent_queue else None,
                default=False,
                group=owner,
            )
        )
        registry.reserve(code, str(queue.id))
        if parent_queue is not None:
            parent_queue.add_child(str(queue.id))
        if default:
            _make_default(uow, registry, queue)
        return [str(queue.id)]

    @command
    def update(self, uow: UnitOfWork, queue_id: str, **changes: Any) -> list[str]:
        """Change any updatable field of `domain.catalogue.QUEUE` (priority, status, default,
        description, metadata, max_concurrency, ...). Only the fields given change."""
        queue = uow.get(Queue, queue_id)
        guard_queue(queue, Right.MANAGE_QUEUES)
        if "default" in changes and changes["default"] is None:
            del changes["default"]  # a null `default` changes nothing; only true or false do
        checked = QUEUE.changes(changes)
        wanted_default = checked.pop("default", None)
        different = {k: v for k, v in checked.items() if getattr(queue, k) != v}
        if different:
            queue.update(different)
        if wanted_default and not queue.default:
            check_right(Right.MANAGE_QUEUES, ADMINS_GROUP, "the default queue")
            _make_default(uow, uow.get(QueueRegistry, REGISTRY_ID), queue)
        elif wanted_default is False and queue.default:
            raise ValidationError(
                "default", "there is always exactly one default queue; make another queue the default instead"
            )
        return [str(queue.id)]

    @command
    def seal(self, uow: UnitOfWork, queue_id: str) -> list[str]:
        """Archive: the queue takes no new jobs; the jobs it has go on."""
        queue = uow.get(Queue, queue_id)
        guard_queue(queue, Right.MANAGE_QUEUES)
        if queue.default:
            raise ConflictError(
                f"queue {queue.code!r} is the default queue and cannot be sealed; make another queue the default first"
            )
        if queue.state != QueueState.SEALED:
            queue.seal()
        return [str(queue.id)]

    @command
    def terminate(self, uow: UnitOfWork, queue_id: str) -> list[str]:
        """Abort every unfinished job of the queue."""
        queue = uow.get(Queue, queue_id)
        guard_queue(queue, Right.MANAGE_QUEUES)
        aborted, running = queue_members(uow, queue)
        for job_id in aborted:
            uow.get(Job, job_id).change_status(JobStatus.ABORTED, by_user=False)
        queue.terminate(aborted, [j for j in running if j in set(aborted)])
        return [str(queue.id)]

    def delete(
        self,
        queue_id: str,
        *,
        actor: str | None = None,
        principal: Principal | None = None,
        idempotency: Idempotency | None = None,
    ) -> Written:
        """Delete the queue; its unfinished jobs move to the default queue, in one save.

        A queue still taking jobs is sealed first (its own small save), so that clients
        submitting to it all the while cannot keep the move from ever committing."""
        if (replay := self.runner.replayed(idempotency)) is not None:
            return replay
        sealed = self._seal_for_delete(queue_id, actor=actor, principal=principal)
        try:
            return self._delete(queue_id, actor=actor, principal=principal, idempotency=idempotency)
        except LedgerError:
            if sealed.ids:  # the seal was ours: take it back, so the failed delete changes nothing
                self._unseal_after_failed_delete(queue_id, actor=actor, principal=principal)
            raise

    @command
    def _seal_for_delete(self, uow: UnitOfWork, queue_id: str) -> list[str]:
        """Seal the queue if it is not yet; returns its id only if this sealed it."""
        queue = uow.get(Queue, queue_id)
        guard_queue(queue, Right.MANAGE_QUEUES)
        queue.check_deletable()
        if queue.state == QueueState.SEALED:
            return []
        queue.seal()
        return [str(queue.id)]

    @command
    def _unseal_after_failed_delete(self, uow: UnitOfWork, queue_id: str) -> list[str]:
        queue = uow.find(Queue, queue_id)
        if queue is not None and queue.state == QueueState.SEALED:
            queue.unseal()
        return [str(queue_id)]

    @command
    def _delete(self, uow: UnitOfWork, queue_id: str) -> list[str]:
        queue = uow.get(Queue, queue_id)
        guard_queue(queue, Right.MANAGE_QUEUES)
        queue.check_deletable()
        registry = uow.get(QueueRegistry, REGISTRY_ID)
        default = uow.get(Queue, registry.default_queue_id)
        moved = queue_members(uow, queue)[0]
        for job_id in moved:
            job = uow.get(Job, job_id)
            job.move(str(queue.id), str(default.id))
            default.add_job(job_id, f"moved from deleted queue {queue.code}")
            if job.status == JobStatus.RUNNING:
                default.start_job(job_id)  # it keeps running, even beyond the default's limit
        queue.delete(moved, str(default.id))
        registry.release(queue.code)
        if queue.parent_id:
            uow.get(Queue, queue.parent_id).remove_child(str(queue.id))
        return [str(queue.id)]

    @command
    def add_tags(self, uow: UnitOfWork, queue_id: str, tags: dict[str, str]) -> list[str]:
        """Add or change tags; the others stay."""
        queue = uow.get(Queue, queue_id)
        guard_queue(queue, Right.MANAGE_QUEUES)
        checked = check_tags("tags", tags)
        queue.check_room_for_tags(checked)
        if any(queue.tags.get(k) != v for k, v in checked.items()):
            queue.add_tags(checked)
        return [str(queue.id)]

    @command
    def remove_tags(self, uow: UnitOfWork, queue_id: str, keys: list[str]) -> list[str]:
        """Remove the tags of these keys; keys it does not have are ignored."""
        queue = uow.get(Queue, queue_id)
        guard_queue(queue, Right.MANAGE_QUEUES)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValidationError("keys", "must be a list of tag keys")
        if len(keys) > MAX_TAGS:
            raise ValidationError("keys", f"at most {MAX_TAGS} tag keys (got {len(keys)})")
        present = [k for k in keys if k in queue.tags]
        if present:
            queue.remove_tags(present)
        return [str(queue.id)]


def _owner(uow: UnitOfWork, group: object, parent: Queue | None) -> str:
    """The group a new queue belongs to: the one given (where the caller manages queues),
    else its parent's, else the caller's only group (the admins' for the service itself)."""
    if group is None:
        if parent is not None:
            group = parent.group
        else:
            principal = current_principal()
            if principal is None:
                return ADMINS_GROUP
            if len(principal.groups) == 1:
                group = next(iter(principal.groups))
            elif principal.site_admin and not principal.groups:
                group = ADMINS_GROUP
            else:
                mine = ", ".join(sorted(principal.groups)) or "none"
                raise ValidationError("group", f"is required: say which group owns the queue (yours: {mine})")
    code = check_group_code("group", group)
    check_right(Right.MANAGE_QUEUES, code, f"group {code!r}")
    check_group_exists(uow, code)
    return code


def _make_default(uow: UnitOfWork, registry: QueueRegistry, queue: Queue) -> None:
    if queue.state == QueueState.SEALED:
        raise ConflictError(f"queue {queue.code!r} is sealed and cannot become the default queue")
    if registry.default_queue_id:
        uow.get(Queue, registry.default_queue_id).unset_default()
    registry.change_default(str(queue.id))
    queue.set_default()


def _new_queue(code: str, **settings: Any) -> Queue:
    """A top-level queue: `settings` as given, the other fields their catalogue default."""
    return Queue(**QUEUE.new({**settings, "code": code}), uri=code, parent_id=None)
