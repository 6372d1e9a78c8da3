"""Schema-level rules that need no store: caching, and limits on abusive documents."""

from __future__ import annotations

from strawberry.extensions.parser_cache import _get_parse_cache

from api.schema import MAX_ALIASES, build_schema

SCHEMA = build_schema()


async def test_a_repeated_query_is_parsed_once():
    document = "query Repeated { __typename }"
    before = _get_parse_cache(1000).cache_info()
    for _ in range(3):
        result = await SCHEMA.execute(document)
        assert result.errors is None
    after = _get_parse_cache(1000).cache_info()
    assert after.misses - before.misses <= 1
    assert after.hits - before.hits >= 2


async def test_a_query_nested_too_deep_is_refused_before_anything_runs():
    deep = "queues { nodes { jobs { nodes { queue { jobs { nodes { queue { jobs { nodes { queue { code }"
    deep += " }" * 10
    result = await SCHEMA.execute("{ " + deep + " }")
    assert result.errors and "exceeds maximum operation depth" in result.errors[0].message


async def test_too_many_aliases_are_refused():
    fields = " ".join(f"a{i}: __typename" for i in range(MAX_ALIASES + 5))
    result = await SCHEMA.execute("{ " + fields + " }")
    assert result.errors and "aliases" in result.errors[0].message.lower()
