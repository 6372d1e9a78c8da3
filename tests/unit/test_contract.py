"""The served schema keeps every name, type and default of the public contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
    print_ast,
)
from graphql.pyutils import Undefined
from graphql.utilities import ast_from_value

from api.schema import build_schema as build_served

CONTRACT = Path(__file__).resolve().parents[2] / "api" / "contract.graphql"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "contract.graphql"


@pytest.fixture(scope="module")
def contract() -> GraphQLSchema:
    return build_schema(CONTRACT.read_text())


@pytest.fixture(scope="module")
def served() -> GraphQLSchema:
    return build_served()._schema


def default_of(arg) -> str | None:  # type: ignore[no-untyped-def]
    """The default as SDL text; graphql-core keeps SDL defaults as literals, code ones as values."""
    default = getattr(arg, "default", None)
    if default is not None and default.literal is not None:
        return print_ast(default.literal)
    if default is not None and default.value is not Undefined:
        node = ast_from_value(default.value, arg.type)
        return print_ast(node) if node else None
    if arg.default_value is Undefined:
        return None
    node = ast_from_value(arg.default_value, arg.type)
    return print_ast(node) if node else None


def test_the_repo_copy_of_the_contract_is_the_shared_one():
    if not SHARED.exists():
        pytest.skip("../shared/contract.graphql is not beside this checkout")
    assert CONTRACT.read_text() == SHARED.read_text()


def test_every_contract_type_exists_with_the_same_kind(contract, served):
    for name, wanted in contract.type_map.items():
        if name.startswith("__"):
            continue
        assert name in served.type_map, f"type {name} is missing"
        kinds = (GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType, GraphQLScalarType)
        kind = next(k for k in kinds if isinstance(wanted, k))
        assert isinstance(served.type_map[name], kind), f"{name} is not a {kind.__name__}"


def test_every_enum_value_exists(contract, served):
    for name, wanted in contract.type_map.items():
        if isinstance(wanted, GraphQLEnumType):
            assert set(wanted.values) <= set(served.type_map[name].values), name


def test_every_field_and_argument_has_the_same_type_and_default(contract, served):
    problems = []
    for name, wanted in contract.type_map.items():
        if name.startswith("__") or not isinstance(wanted, (GraphQLObjectType, GraphQLInputObjectType)):
            continue
        have = served.type_map[name]
        for field_name, field in wanted.fields.items():
            mine = have.fields.get(field_name)  # type: ignore[union-attr]
            if mine is None:
                problems.append(f"{name}.{field_name} is missing")
                continue
            if str(mine.type) != str(field.type):
                problems.append(f"{name}.{field_name}: {mine.type} instead of {field.type}")
            if isinstance(wanted, GraphQLInputObjectType) and default_of(mine) != default_of(field):
                problems.append(f"{name}.{field_name}: default {default_of(mine)} instead of {default_of(field)}")
            for arg_name, arg in getattr(field, "args", {}).items():
                my_arg = mine.args.get(arg_name)
                if my_arg is None:
                    problems.append(f"{name}.{field_name}({arg_name}) is missing")
                elif str(my_arg.type) != str(arg.type) or default_of(my_arg) != default_of(arg):
                    problems.append(
                        f"{name}.{field_name}({arg_name}): {my_arg.type} = {default_of(my_arg)}"
                        f" instead of {arg.type} = {default_of(arg)}"
                    )
            for arg_name, my_arg in getattr(mine, "args", {}).items():
                if arg_name not in getattr(field, "args", {}) and str(my_arg.type).endswith("!"):
                    problems.append(f"{name}.{field_name}({arg_name}) is an added argument and must be optional")
    assert problems == []


def test_scalars_are_named_as_in_the_contract(contract, served):
    for name in ("DateTime", "JSON", "Long"):
        assert isinstance(served.type_map[name], GraphQLScalarType)
