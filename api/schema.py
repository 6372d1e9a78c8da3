"""The GraphQL schema: the contract's operations, with caching and abuse limits."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from api.errors import ErrorCodes
from api.metrics import RequestMetrics
from api.mutations import Mutation
from api.queries import Query
from api.subscriptions import PerEventExecution, Subscription
from api.types import LONG_SCALAR, Long

MAX_DEPTH = 10
MAX_TOKENS = 4000
MAX_ALIASES = 30

# The depth and alias limiters each build a new rule class when constructed, and the
# validation cache is keyed by the rules: built once here, so that a query validated
# once is never validated again (per request they made every validation a cache miss).
LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
]


class LedgerSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Users' mistakes are answered, not logged as errors; ErrorCodes logs the internal ones."""


def build_schema() -> strawberry.Schema:
    return LedgerSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map={Long: LONG_SCALAR}),
        execution_context_class=PerEventExecution,
        extensions=[
            RequestMetrics,  # first: it times the others, and reads the codes ErrorCodes gives
            ErrorCodes,
            # Factories: a fresh extension per request; the parse and validation
            # caches themselves live at module level and are shared.
            lambda: ParserCache(maxsize=1000),
            lambda: ValidationCache(maxsize=1000),
            lambda: AddValidationRules(LIMIT_RULES),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        ],
    )
