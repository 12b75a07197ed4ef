"""The exception hierarchy, and the panic boundary."""

from __future__ import annotations

import pytest

import backstop_admission
from backstop_admission import _native
from backstop_admission.errors import (
    BackstopError,
    InternalError,
    Overloaded,
    RateLimited,
    Refused,
)


def test_a_rust_panic_reaches_python_as_internal_error_never_panic_exception() -> None:
    with pytest.raises(InternalError) as caught:
        _native._panic_for_tests("boom at the boundary")
    message = str(caught.value)
    assert "boom at the boundary" in message
    assert "_panic_for_tests" in message
    assert "bug in backstop" in message
    # An ordinary `except Exception` catches it (PanicException is a BaseException).
    assert isinstance(caught.value, Exception)
    assert isinstance(caught.value, RuntimeError)
    assert type(caught.value).__name__ != "PanicException"


def test_refusals_carry_attributes_not_strings() -> None:
    limited = RateLimited("rate limited", 1.25, "rate_limited", "global")
    assert isinstance(limited, Refused) and isinstance(limited, BackstopError)
    assert (limited.status_code, limited.retry_after, limited.reason, limited.scope) == (
        429, 1.25, "rate_limited", "global")
    assert limited.retry_after_secs == 2
    full = Overloaded("queue full", 1.0, "queue_full")
    assert (full.status_code, full.retry_after_secs, full.scope) == (503, 1, None)


def test_the_package_exports_its_version_and_errors() -> None:
    assert backstop_admission.__version__ == _native.__version__
    assert issubclass(backstop_admission.ConfigError, ValueError)
    assert issubclass(backstop_admission.TokenError, ValueError)


def test_retry_after_comes_from_the_nanoseconds_when_not_given() -> None:
    limited = RateLimited("", None, "rate_limited", "global", 1_500_000_001)
    assert limited.retry_after == 1.500000001 and limited.retry_after_secs == 2
    assert Overloaded("", None, "queue_full").retry_after == 0.0
