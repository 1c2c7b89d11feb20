from __future__ import annotations

import pytest

from kanade.core.releases import is_version, platform_tag, release_object_name


@pytest.mark.parametrize(
    ("system", "machine", "tag"),
    [
        ("linux", "x86_64", "linux-x86_64-cp311"),
        ("linux2", "aarch64", "linux-aarch64-cp311"),
        ("win32", "AMD64", "win32-x86_64-cp311"),
        ("darwin", "arm64", "darwin-aarch64-cp311"),
        ("darwin", "x86_64", "darwin-x86_64-cp311"),
    ],
)
def test_platform_tags_name_the_architecture_not_its_spelling(
    system: str, machine: str, tag: str
) -> None:
    assert platform_tag(system, machine, (3, 11)) == tag


@pytest.mark.parametrize("good", ["1.2.3", "0.1.0", "2.0.0rc1", "1.0+local.7", "v2"])
def test_versions(good: str) -> None:
    assert is_version(good)


@pytest.mark.parametrize("bad", ["", "-1", "1/2", "a b", "..", "1..2", "x" * 65, ".1"])
def test_bad_versions(bad: str) -> None:
    assert not is_version(bad)


def test_object_name() -> None:
    assert release_object_name("1.2.3", "linux-x86_64-cp311") == "1.2.3/linux-x86_64-cp311"


def _doc(**kw: object) -> dict[str, object]:
    from kanade.core.releases import manifest_document

    base: dict[str, object] = {"version": "1.2.3", "platform": "linux-x86_64-cp311",
                               "sha256": "a" * 64, "size": 10, "build_id": "abc123"}
    base.update(kw)
    return manifest_document(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [("version", "../x"), ("platform", "linux"), ("sha256", "A" * 64), ("size", 0),
     ("build_id", "not hex")],
)
def test_a_bad_manifest_names_its_field(field: str, value: object) -> None:
    from kanade.core.releases import ReleaseError

    with pytest.raises(ReleaseError, match=f"^{field}: "):
        _doc(**{field: value})


def test_the_signed_bytes_do_not_depend_on_key_order() -> None:
    from kanade.core.releases import canonical_manifest

    doc = _doc()
    assert canonical_manifest(doc) == canonical_manifest(dict(reversed(list(doc.items()))))


def test_update_wanted() -> None:
    from kanade.core.releases import update_wanted

    assert update_wanted("2.0", "1.0", frozenset()) == "2.0"
    assert update_wanted("1.0", "1.0", frozenset()) is None
    assert update_wanted("2.0", "1.0", frozenset({"2.0"})) is None
    assert update_wanted(None, "1.0", frozenset()) is None
    assert update_wanted(2.0, "1.0", frozenset()) is None
    assert update_wanted("a/b", "1.0", frozenset()) is None
