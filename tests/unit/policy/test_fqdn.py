"""Azure Firewall's FQDN wildcard table (firewall FAQ), one pattern against one name, and the
index that answers the same question for many patterns at once."""

from __future__ import annotations

import random

import pytest

from harness.policy.fqdn import FqdnIndex, matches, normalize, pattern_covers, pattern_problem

# (pattern, name, matches?) — the FAQ's rows first, then case, trailing dots and near misses.
WILDCARD_TABLE = [
    # `*.x`: any depth of subdomain, never the apex
    ("*.contoso.com", "a.contoso.com", True),
    ("*.contoso.com", "a.b.contoso.com", True),
    ("*.contoso.com", "contoso.com", False),
    ("*.contoso.com", "th3re4lcontoso.com", False),
    ("*.contoso.com", "contoso.com.evil.test", False),
    ("*.contoso.com", "acontoso.com", False),
    # `*x`: a plain string suffix
    ("*contoso.com", "contoso.com", True),
    ("*contoso.com", "th3re4lcontoso.com", True),
    ("*contoso.com", "a.contoso.com", True),
    ("*contoso.com", "a.b.contoso.com", True),
    ("*contoso.com", "contoso.co", False),
    ("*contoso.com", "contoso.com.test", False),
    ("*-cdn.example.test", "files-cdn.example.test", True),
    ("*-cdn.example.test", "cdn.example.test", False),
    # `*`: everything
    ("*", "contoso.com", True),
    ("*", "a.b.c.example.test", True),
    ("*", "localhost", True),
    # exact
    ("contoso.com", "contoso.com", True),
    ("contoso.com", "a.contoso.com", False),
    ("contoso.com", "xcontoso.com", False),
    ("a.contoso.com", "contoso.com", False),
    # case-insensitive, on both sides
    ("Contoso.COM", "contoso.com", True),
    ("contoso.com", "CONTOSO.com", True),
    ("*.Contoso.com", "WWW.contoso.COM", True),
    ("*CONTOSO.com", "th3re4lContoso.Com", True),
    # a trailing dot is ignored, on both sides
    ("contoso.com.", "contoso.com", True),
    ("contoso.com", "contoso.com.", True),
    ("*.contoso.com.", "a.contoso.com", True),
    ("*.contoso.com", "a.contoso.com.", True),
    ("*.contoso.com", "contoso.com.", False),
    ("*contoso.com", "xcontoso.com.", True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), WILDCARD_TABLE)
def test_wildcard_table(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


def test_star_dot_does_not_match_apex() -> None:
    assert not matches("*.contoso.com", "contoso.com")


def test_star_without_dot_is_a_plain_suffix_match() -> None:
    assert matches("*contoso.com", "th3re4lcontoso.com")


@pytest.mark.parametrize(("pattern", "name", "expected"), WILDCARD_TABLE)
def test_index_follows_the_wildcard_table(pattern: str, name: str, expected: bool) -> None:
    index = FqdnIndex([(pattern, "payload")])
    assert index.matching(name) == (["payload"] if expected else [])


def test_index_returns_every_match_in_insertion_order() -> None:
    index = FqdnIndex(
        [
            ("*", "everything"),
            ("a.b.example.test", "exact"),
            ("*.example.test", "subdomain"),
            ("*b.example.test", "suffix"),
            ("other.test", "miss"),
            ("*.b.example.test", "deeper subdomain"),
        ]
    )
    assert index.matching("A.B.Example.Test.") == [
        "everything",
        "exact",
        "subdomain",
        "suffix",
        "deeper subdomain",
    ]
    assert index.first("a.b.example.test") == "everything"
    assert index.first("nothing.test") == "everything"


def test_index_without_match_returns_empty_and_first_none() -> None:
    index = FqdnIndex([("a.test", 1), ("*.b.test", 2), ("*c.test", 3)])
    assert index.matching("b.test") == []
    assert index.first("b.test") is None
    assert len(index) == 3


_LABELS = ["a", "b", "ab", "ba", "x-a", "test", "cdn"]


def _random_name(rng: random.Random) -> str:
    name = ".".join(rng.choice(_LABELS) for _ in range(rng.randint(1, 4)))
    return name.upper() if rng.random() < 0.1 else name


def _random_pattern(rng: random.Random) -> str:
    name = _random_name(rng)
    shape = rng.random()
    if shape < 0.05:
        return "*"
    if shape < 0.35:
        return "*." + name
    if shape < 0.65:
        # Plain suffixes that start inside a label, so th3re4l-style matches occur.
        return "*" + name[rng.randint(0, min(2, len(name) - 1)) :]
    return name + ("." if rng.random() < 0.1 else "")


@pytest.mark.parametrize("seed", range(20))
def test_index_equals_brute_force_matches(seed: int) -> None:
    rng = random.Random(seed)
    pairs = [(_random_pattern(rng), number) for number in range(rng.randint(1, 60))]
    index = FqdnIndex(pairs)
    names = [_random_name(rng) for _ in range(200)]
    hits = 0
    for name in names:
        expected = [payload for pattern, payload in pairs if matches(pattern, name)]
        assert index.matching(name) == expected, (name, pairs)
        hits += bool(expected)
    assert hits > 0  # the generator must exercise matches, not only misses


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Contoso.COM.", "contoso.com"), (" a.test ", "a.test"), ("a.test", "a.test")],
)
def test_normalize_lowers_and_drops_trailing_dot(name: str, expected: str) -> None:
    assert normalize(name) == expected


@pytest.mark.parametrize(
    "pattern", ["*", "*.contoso.com", "*contoso.com", "contoso.com", "*-cdn.example.test"]
)
def test_valid_patterns_have_no_problem(pattern: str) -> None:
    assert pattern_problem(pattern) is None


@pytest.mark.parametrize("pattern", ["www.contoso.*", "a.*.b", "**", "", "*.a..b", "a..b"])
def test_invalid_patterns_have_a_problem(pattern: str) -> None:
    assert pattern_problem(pattern) is not None


# --- one pattern covering another (harness.policy.coverage) ----------------------------------

COVER_PATTERNS = ["*", "*.a.test", "a.test", "*a.test", "x.a.test", "*.x.a.test", "*xa.test",
                  "b.test", "*.test", "*test", "*-a.test", "A.Test."]  # fmt: skip
# Each pattern with its `*` filled in several ways: a witness for every name a pattern matches.
COVER_NAMES = sorted({p.replace("*", fill).strip(".").lower() for p in COVER_PATTERNS
                      for fill in ("", "q", "q.", "qx.", "x", "q.x", "-", "q-")} - {""})  # fmt: skip


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("*", "*.a.test", True),
        ("*.a.test", "*", False),
        ("*.a.test", "*.x.a.test", True),
        ("*.a.test", "x.a.test", True),
        ("*.a.test", "a.test", False),  # `*.x` never matches the apex
        ("*.a.test", "*xa.test", False),  # `*xa.test` matches `xa.test`, no subdomain of a.test
        ("*.a.test", "*.a.test", True),
        ("*a.test", "a.test", True),
        ("*a.test", "*.a.test", True),
        ("*a.test", "*xa.test", True),
        ("*xa.test", "*a.test", False),
        ("a.test", "A.Test.", True),
        ("a.test", "*.a.test", False),
        ("*.test", "*-a.test", True),
    ],
)  # fmt: skip
def test_pattern_covers(outer: str, inner: str, expected: bool) -> None:
    assert pattern_covers(outer, inner) is expected


@pytest.mark.parametrize("outer", COVER_PATTERNS)
@pytest.mark.parametrize("inner", COVER_PATTERNS)
def test_pattern_covers_exactly_when_every_name_the_inner_matches_the_outer_matches(
    outer: str, inner: str
) -> None:
    witnesses = [name for name in COVER_NAMES if matches(inner, name)]
    assert witnesses  # each pattern matches some name of the set
    assert pattern_covers(outer, inner) is all(matches(outer, name) for name in witnesses)
