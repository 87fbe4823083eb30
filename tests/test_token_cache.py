"""The token cache stores examples exactly, and a changed input is a different entry."""

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecomp.data import token_cache

examples = st.lists(
    st.lists(st.integers(-100, 2**31 - 1), max_size=12).map(lambda ids: (ids, [-100] + ids[1:] if ids else [])),
    max_size=6,
)


@settings(max_examples=25, deadline=None)
@given(examples)
def test_examples_round_trip(tmp_path_factory, stored):
    folder = tmp_path_factory.mktemp("entry")
    info = token_cache._write(folder, stored)
    assert info == {"examples": len(stored), "tokens": sum(len(ids) for ids, _ in stored)}
    assert token_cache._read(folder) == stored


def test_second_call_reads_what_the_first_built(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOMP_HOME", str(tmp_path))
    stored = [([2, 5, 6], [-100, 5, 6]), ([2, 7], [-100, 7])]
    key = token_cache.cache_key(data="abc", seq_len=3)
    assert token_cache.cached_examples(key, lambda: stored) == (stored, False)
    assert token_cache.cached_examples(key, lambda: 1 / 0) == (stored, True)
    assert token_cache.cache_key(data="abc", seq_len=4) != key
    assert token_cache.cache_key(data="abd", seq_len=3) != key
