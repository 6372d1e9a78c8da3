"""The service answers over real HTTP."""

import httpx


def test_health_readiness_and_a_first_query(server):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"
    data = server.data("{ queues { nodes { code default } } }")
    assert data["queues"]["nodes"] == [{"code": "default", "default": True}]
