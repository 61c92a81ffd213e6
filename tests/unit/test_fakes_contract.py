"""The in-memory store the unit tests use (tests/unit/fakes.DictStore) keeps the
same contract as the real handlers: a fake that drifted would let a test pass
against behaviour no store has."""
from __future__ import annotations

from typing import Any

import pytest

from tests.support.store_contract import StoreContract
from tests.unit.fakes import DictStore


class TestDictStoreContract(StoreContract):
    @pytest.fixture
    def make_store(self) -> Any:
        shared = DictStore()

        def make(prefix: str) -> DictStore:
            return DictStore(prefix=prefix, shared=shared)
        return make
