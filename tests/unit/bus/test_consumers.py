"""Recognising the broker's refusal to change a consumer's storage type."""

from __future__ import annotations

from nats.js.errors import APIError, BadRequestError, NotFoundError

from kanade.bus.consumers import STORAGE_TYPE_IMMUTABLE, is_storage_type_immutable


def test_the_storage_type_refusal_is_recognised() -> None:
    assert is_storage_type_immutable(BadRequestError(code=400, err_code=STORAGE_TYPE_IMMUTABLE))
    assert is_storage_type_immutable(APIError(err_code=10012))


def test_other_failures_are_not() -> None:
    assert not is_storage_type_immutable(BadRequestError(code=400, err_code=10013))
    assert not is_storage_type_immutable(NotFoundError(code=404, err_code=10014))
    assert not is_storage_type_immutable(APIError())
    assert not is_storage_type_immutable(TimeoutError())
