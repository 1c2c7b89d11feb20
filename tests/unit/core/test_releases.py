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
