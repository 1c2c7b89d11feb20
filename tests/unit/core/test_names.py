"""Unknown names and their close matches (typos refused with what was meant)."""

from __future__ import annotations

from kanade.core.names import close_matches, describe, either, unknown_name, unknown_names

PCS = {"local-1", "local-2", "local-3", "web-01"}


def test_close_matches_offer_what_was_meant_best_first() -> None:
    assert close_matches("locl-1", PCS)[0] == "local-1"
    assert close_matches("web01", PCS) == ["web-01"]
    assert close_matches("database", PCS) == []


def test_known_names_are_not_reported() -> None:
    assert unknown_name("pc", "pc_id", "local-2", PCS) is None
    assert unknown_names("pc", "target.pcs", ["local-1", "web-01"], PCS) == []


def test_each_unknown_name_keeps_its_place_in_the_request() -> None:
    (u,) = unknown_names("pc", "target.pcs", ["local-1", "web01"], PCS)
    assert u.error() == {
        "path": "target.pcs[1]",
        "reason": "no pc named 'web01' is known; did you mean web-01?",
    }


def test_without_a_close_match_few_known_names_are_listed() -> None:
    u = unknown_name("group", "target.groups[0]", "nosuch", {"canary", "local"})
    assert u is not None and u.reason == "no group named 'nosuch' is known (known: canary, local)"
    many = {f"g{i}" for i in range(20)}
    u = unknown_name("group", "x", "nothing-like-it", many)
    assert u is not None and u.reason == "no group named 'nothing-like-it' is known"


def test_one_line_names_every_unknown_name() -> None:
    found = [
        *unknown_names("pc", "target.pcs", ["locl-1"], PCS),
        *unknown_names("group", "target.groups", ["nope"], {"web"}),
    ]
    assert describe(found).startswith("unknown pc 'locl-1' (did you mean local-1")
    assert describe(found).endswith(", group 'nope'")
    assert either(["a"]) == "a" and either(["a", "b", "c"]) == "a, b or c"
