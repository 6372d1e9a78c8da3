"""How the verbs reach a client: the `Runner` base the blocking and the asyncio client
implement, and the iterators that hand out a listing's results as they arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from jobledger_client._plans import Listing, Plan
from jobledger_client.credentials import token_prefix

if TYPE_CHECKING:
    from jobledger_client._transport import Settings

T = TypeVar("T")


class Runner:
    """Drives plans: `_run` to their result and `_iter` to their results. The verbs are
    written on top of it, once; `Client` and `AsyncClient` implement it."""

    _settings: Settings

    def _run(self, plan: Plan[Any], idempotency_key: str | None = None) -> Any:  # pragma: no cover
        """The plan's result; its mutations sent with `idempotency_key` (see `idempotency.Keys`)."""
        raise NotImplementedError

    def _iter(self, plan: Plan[Any], listing: Listing) -> Any:  # pragma: no cover
        raise NotImplementedError

    @property
    def url(self) -> str:
        """The /graphql URL this client talks to."""
        return self._settings.url

    @property
    def user(self) -> str | None:
        """Who the client says it is to a server without authentication (X-Jobledger-User)."""
        return self._settings.user

    @property
    def token_prefix(self) -> str | None:
        """The public part of the token the client sends (`jl_0123456789ab`), safe to show;
        None when it sends none."""
        return token_prefix(self._settings.token)


class ResultIterator(Iterator[T]):
    """The results of a listing, fetched a page at a time as you iterate (and, for
    `watch` and `events(follow=True)`, as they happen).

    `total_count` is the size of the whole list once the first page has arrived
    (None for lists that do not count); `pages` is how many requests were made.
    Use `close()` (or a `with` block) to stop early and free a subscription."""

    def __init__(self, results: Generator[T, None, None], listing: Listing) -> None:
        self._results = results
        self._listing = listing

    @property
    def total_count(self) -> int | None:
        """How many items the whole list holds (known once the first page has arrived)."""
        return self._listing.total_count

    @property
    def pages(self) -> int:
        """How many requests (pages) have been made so far."""
        return self._listing.pages

    def __iter__(self) -> ResultIterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._results)

    def close(self) -> None:
        """Stop: no more requests; an open subscription is closed."""
        self._results.close()

    def __enter__(self) -> ResultIterator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncResultIterator(AsyncIterator[T]):
    """`ResultIterator` for `AsyncClient`: `async for item in ...`; `await it.aclose()` to stop."""

    def __init__(self, results: Any, listing: Listing) -> None:
        self._results = results
        self._listing = listing

    @property
    def total_count(self) -> int | None:
        """How many items the whole list holds (known once the first page has arrived)."""
        return self._listing.total_count

    @property
    def pages(self) -> int:
        """How many requests (pages) have been made so far."""
        return self._listing.pages

    def __aiter__(self) -> AsyncResultIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._results.__anext__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Stop: no more requests; an open subscription is closed."""
        await self._results.aclose()

    async def __aenter__(self) -> AsyncResultIterator[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
