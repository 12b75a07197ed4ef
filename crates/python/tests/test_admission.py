"""The in-process front door from Python: Limits, Admission, Ticket, Permit, errors."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from backstop_admission import (
    Admission,
    ConfigError,
    JobMustWait,
    Limits,
    ManualClock,
    Overloaded,
    RateLimited,
)


def small(**extra: object) -> Limits:
    settings = dict(rate_limit=2, rate_window="60s", queue_max=1, jobs_max=1,
                    resources_enabled=False)
    settings.update(extra)
    return Limits(**settings)  # type: ignore[arg-type]


def test_limits_default_to_the_original_service() -> None:
    limits = Limits()
    assert limits.rate() == (30, 60.0)
    as_dict = json.loads(limits.to_json())
    assert as_dict["queue"]["max"] == 100 and as_dict["jobs"]["max"] == 5


def test_limits_from_toml_text_a_file_and_keywords_agree(tmp_path: Path) -> None:
    text = '[rate]\nlimit = 10\nwindow = "30s"\n[queue]\nmax = 7\n'
    path = tmp_path / "limits.toml"
    path.write_text(text)
    a = Limits.from_toml(text)
    b = Limits.from_file(path)
    c = Limits(rate_limit=10, rate_window=timedelta(seconds=30), queue_max=7)
    assert a.to_json() == b.to_json() == c.to_json()
    assert a.rate() == (10, 30.0)


def test_sizes_and_durations_read_alike_from_toml_and_keywords() -> None:
    text = ('[queue]\nmax_wait = "90s"\nretry_after_hint = "250ms"\n'
            '[resources]\nmin_available_memory = "1536MiB"\nmemory_margin = "128MiB"\n'
            'min_free_disk = "3GiB"\n')
    from_text = Limits.from_toml(text)
    from_keywords = Limits(queue_max_wait=timedelta(seconds=90), queue_retry_after_hint="250ms",
                           resources_min_available_memory="1.5GiB",
                           resources_memory_margin="128MiB", resources_min_free_disk="3072MiB")
    assert from_text.to_json() == from_keywords.to_json()
    resources = json.loads(from_text.to_json())["resources"]
    assert (resources["min_available_memory"], resources["min_free_disk"]) == ("1536MiB", "3GiB")


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Limits.from_toml("[rate]\nlimit = = 3\n"), "TOML syntax"),
        (lambda: Limits.from_toml('[rate]\nwindow = "sixty"\n'), "rate.window"),
        (lambda: Limits(queue_max=0), "queue.max"),
        (lambda: Limits(rate_limit=0), "rate.limit"),
        (lambda: Limits(rate_bogus=1), "bogus"),
        # Durations and sizes carry a unit, in keyword arguments as in the TOML.
        (lambda: Limits(rate_window=60), r"rate\.window.*\"60s\""),
        (lambda: Limits(resources_min_free_disk=1024), r"resources\.min_free_disk.*\"2GiB\""),
        (lambda: Limits.from_toml("[queue]\nmax_wait = 30\n"), r"queue\.max_wait"),
        (lambda: Limits.from_file("/nonexistent/limits.toml"), "cannot read"),
    ],
)
def test_bad_limits_are_config_errors_that_name_the_key(make, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=words):
        make()


def test_a_ticket_a_permit_and_the_refusals() -> None:
    clock = ManualClock()
    admission = Admission(small(), clock=clock)
    ticket = admission.try_admit()
    with pytest.raises(Overloaded) as full:
        admission.try_admit()
    assert (full.value.status_code, full.value.reason, full.value.retry_after) == (503, "queue_full", 1.0)
    assert str(full.value) == "overloaded (queue_full): retry after about 1.0s"
    with pytest.raises(RateLimited) as limited:
        admission.try_admit()
    assert (limited.value.status_code, limited.value.scope) == (429, "global")
    assert limited.value.retry_after == 60.0
    assert str(limited.value) == "rate limited (global): retry after 60.0s"
    clock.advance(59.999999999)
    with pytest.raises(RateLimited) as limited:
        admission.try_admit()
    assert limited.value.retry_after == pytest.approx(1e-9, abs=1e-12)
    assert limited.value.retry_after_secs == 1

    with ticket.start() as permit:
        assert permit.held and not ticket.held
        snap = admission.snapshot()
        assert (snap["jobs_active"], snap["queue_depth"]) == (1, 0)
    assert not permit.held
    assert admission.snapshot()["jobs_finished_total"] == 1


def test_a_job_must_wait_for_a_slot_and_keeps_its_place() -> None:
    admission = Admission(small(rate_limit=10, queue_max=5), clock=ManualClock())
    first, second = admission.try_admit(), admission.try_admit()
    running = first.start()
    with pytest.raises(JobMustWait) as wait:
        second.start()
    assert wait.value.reason == "no_free_slot"
    assert second.held and admission.snapshot()["queue_depth"] == 1
    running.release()
    assert second.start().held


def test_exempt_requests_hold_nothing_and_bad_priorities_are_refused() -> None:
    admission = Admission(small(), clock=ManualClock())
    for _ in range(10):
        assert not admission.try_admit(priority="exempt").held
    assert admission.snapshot()["exempt_total"] == 10
    with pytest.raises(ConfigError, match="priority"):
        admission.try_admit(priority="urgent")
    with pytest.raises(ConfigError, match="holds no place"):
        admission.try_admit(priority="exempt").start()


def test_per_client_windows_come_before_the_shared_one() -> None:
    admission = Admission(small(rate_limit=10, queue_max=10), clock=ManualClock(), per_client=(1, 60))
    admission.try_admit("alice")
    with pytest.raises(RateLimited) as limited:
        admission.try_admit("alice")
    assert limited.value.scope == "per_client"
    admission.try_admit("bob")


def test_reconfigure_applies_at_once_and_keeps_the_window() -> None:
    admission = Admission(small(rate_limit=1, queue_max=10), clock=ManualClock())
    admission.try_admit()
    with pytest.raises(RateLimited):
        admission.try_admit()
    admission.reconfigure(small(rate_limit=2, queue_max=10))
    admission.try_admit()
    with pytest.raises(RateLimited):
        admission.try_admit()
    assert admission.limits().rate() == (2, 60.0)
    with pytest.raises(ConfigError):
        admission.reconfigure(Limits(jobs_max=0))


def test_dropping_tickets_and_permits_releases_them() -> None:
    admission = Admission(small(rate_limit=10, queue_max=3), clock=ManualClock())
    for _ in range(5):
        admission.try_admit()  # dropped at once
    assert admission.snapshot()["queue_depth"] == 0


def gate_limits() -> Limits:
    """The resource gate on, with thresholds any test machine passes."""
    return Limits(resources_min_available_memory="2MiB", resources_memory_margin="1MiB",
                  resources_min_free_disk="2MiB", resources_disk_margin="1MiB")


def wait_for_a_reading(admission: Admission) -> int:
    """Readings so far, once the sampler thread has taken one (at most 10 s)."""
    import time

    deadline = time.monotonic() + 10
    while admission.snapshot()["resource_readings_total"] == 0:
        assert time.monotonic() < deadline, "the sampler took no reading in 10 s"
        time.sleep(0.01)
    return int(admission.snapshot()["resource_readings_total"])


def test_the_real_clock_with_the_resource_gate_on() -> None:
    admission = Admission(gate_limits())
    assert wait_for_a_reading(admission) >= 1
    with admission.try_admit(key="k") as ticket, ticket.start() as permit:
        assert permit.held
    assert admission.snapshot()["gate_state"] == "open"


def test_a_refusal_kept_by_the_caller_is_never_changed_by_later_ones() -> None:
    clock = ManualClock()
    admission = Admission(small(rate_limit=1, queue_max=5), clock=clock)
    ticket = admission.try_admit()
    kept = []
    for step in range(3):
        clock.advance(1.0)
        try:
            admission.try_admit()
        except RateLimited as refused:
            kept.append(refused)
    # Each kept refusal still says what it said when raised (59 s, 58 s, 57 s).
    assert [r.retry_after_ns for r in kept] == [59_000_000_000, 58_000_000_000, 57_000_000_000]
    assert [r.retry_after for r in kept] == [59.0, 58.0, 57.0]
    assert len({id(r.args) for r in kept}) == 3
    # Once no exception holds them, the arguments are lent to the next refusal; what
    # each refusal reads is its own.
    kept.clear()
    seen = []
    for _ in range(2):
        clock.advance(1.0)
        try:
            admission.try_admit()
        except RateLimited as refused:
            seen.append((id(refused.args), refused.retry_after_ns, str(refused)))
    assert seen[0][0] == seen[1][0]
    assert [s[1] for s in seen] == [56_000_000_000, 55_000_000_000]
    assert seen[1][2] == "rate limited (global): retry after 55.0s"
    ticket.release()


def test_refusal_classes_define_no_constructor_of_their_own() -> None:
    # backstop makes refusals with BaseException.__new__ alone; a constructor of their
    # own would make it fall back to calling the class (correct, but slower).
    for cls in (RateLimited, Overloaded):
        for base in cls.__mro__[: cls.__mro__.index(Exception)]:
            assert "__init__" not in vars(base) and "__new__" not in vars(base), base
