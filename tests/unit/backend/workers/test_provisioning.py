"""The pc of a consumer request comes from its subject, and only a valid slug counts."""

from __future__ import annotations

import pytest

from kanade.backend.workers.provisioning import pc_of_request
from kanade.core import subjects


def test_pc_of_a_request_subject() -> None:
    assert pc_of_request(subjects.consumer_request_subject("web-1")) == "web-1"


@pytest.mark.parametrize(
    "subject",
    [
        "kanade.agent.-x.consumer",
        "kanade.agent.a$b.consumer",
        "kanade.agent..consumer",
        "kanade.agent.pc.other",
        "kanade.result.pc",
        "kanade.agent.a.b.consumer",
        "kanade.agent." + "x" * 129 + ".consumer",
    ],
)
def test_anything_else_is_not_a_request(subject: str) -> None:
    assert pc_of_request(subject) is None
