"""The bounded, expiring map behind every cache in polar-mcp."""

from __future__ import annotations

from polar_mcp.cache import BoundedCache
from tests.helpers.clock import FakeTime


def cache(time: FakeTime, *, max_entries: int = 3, ttl: float = 60.0) -> BoundedCache[str, int]:
    return BoundedCache(max_entries=max_entries, ttl=ttl, clock=time.clock)


def contents(store: BoundedCache[str, int], keys: str) -> dict[str, int | None]:
    return {key: store.get(key) for key in keys}


def test_a_stored_value_is_returned_and_an_unknown_key_is_none() -> None:
    store = cache(FakeTime())
    store.put("a", 1)

    assert contents(store, "ab") == {"a": 1, "b": None}
    assert len(store) == 1


def test_an_entry_lives_exactly_its_ttl() -> None:
    time = FakeTime()
    store = cache(time, ttl=60.0)
    store.put("a", 1)

    time.advance(60.0)
    assert store.get("a") == 1

    time.advance(0.001)
    assert store.get("a") is None
    assert len(store) == 0, "an expired entry is dropped when found"


def test_storing_again_restarts_the_ttl() -> None:
    time = FakeTime()
    store = cache(time, ttl=60.0)
    store.put("a", 1)
    time.advance(50.0)
    store.put("a", 2)
    time.advance(50.0)

    assert store.get("a") == 2


def test_reading_does_not_extend_the_ttl() -> None:
    time = FakeTime()
    store = cache(time, ttl=60.0)
    store.put("a", 1)
    time.advance(50.0)
    assert store.get("a") == 1
    time.advance(11.0)

    assert store.get("a") is None


def test_the_least_recently_used_entry_is_evicted_first() -> None:
    store = cache(FakeTime(), max_entries=3)
    for value, key in enumerate("abc"):
        store.put(key, value)
    store.get("a")  # now b is the least recently used
    store.put("d", 3)

    assert len(store) == 3
    assert contents(store, "abcd") == {"a": 0, "b": None, "c": 2, "d": 3}


def test_storing_an_existing_key_counts_as_use_and_does_not_grow_the_map() -> None:
    store = cache(FakeTime(), max_entries=2)
    store.put("a", 1)
    store.put("b", 2)
    store.put("a", 10)
    store.put("c", 3)

    assert contents(store, "abc") == {"a": 10, "b": None, "c": 3}


def test_a_single_entry_cache_keeps_only_the_newest() -> None:
    store = cache(FakeTime(), max_entries=1)
    store.put("a", 1)
    store.put("b", 2)

    assert contents(store, "ab") == {"a": None, "b": 2}
