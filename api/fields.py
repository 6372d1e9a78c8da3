"""The GraphQL side of `domain.catalogue`: a catalogue field's GraphQL type, the fields a
type takes from a catalogue and their values in a read-model row, and input types built
from a catalogue's fields (CreateQueueInput, UpdateQueueInput)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import strawberry
from strawberry.scalars import JSON

from domain.catalogue import Catalogue, Field, Json

T = TypeVar("T")
MISSING: Any = strawberry.UNSET


def graphql_type(f: Field) -> Any:
    """A field's GraphQL type: JSON for a document; else its own (an enum must be registered
    with strawberry, as `api.types` does; `catalogue.Long` is the Long scalar)."""
    return JSON if f.type is Json else f.type


def with_catalogue(fields: Catalogue, after: str) -> Callable[[type[T]], type[T]]:
    """Give a type a field for each of the catalogue's fields, placed after its own field
    `after`, typed from the catalogue (nullable where it is) and described by its `doc`."""

    def add(cls: type[T]) -> type[T]:
        derived = {f.name: graphql_type(f) | None if f.nullable else graphql_type(f) for f in fields}
        annotations: dict[str, Any] = {}
        for name, annotation in inspect.get_annotations(cls).items():
            annotations[name] = annotation
            if name == after:
                annotations.update(derived)
        cls.__annotations__ = annotations
        for f in fields:
            if f.doc:
                setattr(cls, f.name, strawberry.field(description=f.doc))
        return cls

    return add


def from_columns(fields: Catalogue, row: Mapping[str, Any]) -> dict[str, Any]:
    """The catalogue's fields' values in a read-model row: JSON parsed, enums as members."""
    values: dict[str, Any] = {}
    for f in fields:
        value = row[f.column]
        if value is None:
            pass
        elif f.type is Json:
            value = json.loads(value)
        elif f.is_enum:
            value = f.type(value)
        elif f.type is bool:
            value = bool(value)
        values[f.name] = value
    return values


def input_type(name: str, fields: tuple[Field, ...], *, defaults: bool, **extra: tuple[Any, Any]) -> type:
    """A GraphQL input of the catalogue's `fields`, then the `extra` ones (name: (type, default)).

    A field without a default is required. With `defaults`, the others show the domain's
    default, except null and the empty JSON document, which are left for the domain to fill;
    without, every field is optional and left out unless given (an update)."""
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    for f in fields:
        if f.required and defaults:
            annotations[f.name] = graphql_type(f)
            continue
        annotations[f.name] = graphql_type(f) | None
        shown = defaults and f.default is not None and f.type is not Json
        namespace[f.name] = strawberry.field(default=f.default if shown else MISSING, description=f.doc or None)
    for field_name, (annotation, default) in extra.items():
        annotations[field_name] = annotation
        namespace[field_name] = default
    return strawberry.input(type(name, (), {"__annotations__": annotations, "__module__": __name__, **namespace}))


def given_fields(input: Any, fields: tuple[Field, ...]) -> dict[str, Any]:
    """The catalogue fields given in `input`: left out stays out (the domain's default, or
    no change); an explicit null is None."""
    return {f.name: getattr(input, f.name) for f in fields if getattr(input, f.name) is not strawberry.UNSET}
