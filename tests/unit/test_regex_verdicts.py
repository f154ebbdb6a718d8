"""Remembered regex verdicts are RE2's own, and their memory stays bounded."""

from __future__ import annotations

import random

from proxy.config import regex


def test_remembered_verdicts_are_re2s_for_every_input_even_across_clears():
    pattern = regex.compile_re2("/api/v[0-9]+/users/[0-9]+")
    raw = regex.remembering(lambda text: pattern.fullmatch(text) is not None, {})
    matcher = regex.full_matcher(pattern)
    rng = random.Random(7)
    inputs = [f"/api/v{rng.randint(0, 9)}/users/{rng.choice(['12', 'x', ''])}" for _ in range(50)]
    inputs += [f"/unique/{n}" for n in range(3 * regex.VERDICT_CACHE_SIZE)]  # forces clears
    for text in inputs + inputs[:50]:
        expected = pattern.fullmatch(text) is not None
        assert matcher(text) is expected
        assert raw(text) is expected


def test_a_client_sending_new_inputs_never_grows_the_memory_past_its_bound():
    verdicts: dict[str, bool] = {}
    calls: list[str] = []
    matcher = regex.remembering(lambda text: calls.append(text) or True, verdicts)
    for n in range(10 * regex.VERDICT_CACHE_SIZE):
        matcher(f"/path/{n}")
        assert len(verdicts) <= regex.VERDICT_CACHE_SIZE
    long_input = "/" + "a" * regex.MAX_REMEMBERED_INPUT
    matcher(long_input)
    matcher(long_input)
    assert long_input not in verdicts and calls.count(long_input) == 2  # matched each time
    matcher("/again")
    matcher("/again")
    assert calls.count("/again") == 1  # the second answer was remembered
