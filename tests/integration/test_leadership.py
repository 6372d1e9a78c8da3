"""With several instances on one store, one runs the projection runner and the clock;
another takes over when it goes away."""

from __future__ import annotations

import pytest

from projections.stores import open_read_store


def test_exactly_one_instance_leads_and_another_takes_over_when_it_dies(ledger, new_ledger, store_url):
    if not store_url.startswith("postgres"):
        pytest.skip("one process owns an SQLite file: it always leads")
    first, second = open_read_store(ledger.store), open_read_store(new_ledger().store)
    try:
        assert first.try_lead("clock") is True
        assert second.try_lead("clock") is False
        assert first.try_lead("clock") is True  # the leader keeps leading
        assert second.try_lead("projections") is True  # roles are led independently
        first.close()  # the leader dies: its session and its lock go with it
        assert second.try_lead("clock") is True
    finally:
        first.close()
        second.close()
