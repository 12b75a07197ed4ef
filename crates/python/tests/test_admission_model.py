"""Hypothesis stateful tests: the in-process Admission against the Python model, on an
injected clock, with the clock stopped at every window edge -1 ns, at it, and +1 ns."""

from __future__ import annotations

import math
from typing import List

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from backstop_admission import (
    Admission,
    JobMustWait,
    Limits,
    ManualClock,
    Overloaded,
    Permit,
    RateLimited,
    Ticket,
)
from model import Model


class AdmissionMatchesTheModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tickets: List[Ticket] = []
        self.permits: List[Permit] = []

    @initialize(
        limit=st.integers(1, 5),
        window_ms=st.integers(1, 5000),
        queue_max=st.integers(1, 4),
        jobs_max=st.integers(1, 3),
        start_ns=st.integers(0, 10**12),
    )
    def setup(self, limit: int, window_ms: int, queue_max: int, jobs_max: int, start_ns: int) -> None:
        self.clock = ManualClock()
        self.clock.set_ns(start_ns)
        limits = Limits(rate_limit=limit, rate_window=f"{window_ms}ms", queue_max=queue_max,
                        jobs_max=jobs_max, resources_enabled=False)
        self.admission = Admission(limits, clock=self.clock)
        self.model = Model(limit, window_ms * 1_000_000, queue_max, jobs_max, now_ns=start_ns)

    @rule()
    def admit(self) -> None:
        expected, wait_ns = self.model.admit()
        try:
            ticket = self.admission.try_admit()
        except RateLimited as refused:
            assert expected == "rate_limited", (expected, refused)
            assert wait_ns is not None
            assert refused.status_code == 429 and refused.scope == "global"
            assert math.isclose(refused.retry_after, wait_ns / 1e9, rel_tol=0, abs_tol=1e-9)
            assert refused.retry_after_secs == math.ceil(wait_ns / 1e9)
            return
        except Overloaded as refused:
            assert expected == "queue_full", (expected, refused)
            assert (refused.status_code, refused.reason) == (503, "queue_full")
            return
        assert expected == "admitted", expected
        assert ticket.held
        self.tickets.append(ticket)

    @precondition(lambda self: self.tickets)
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        ticket = data.draw(st.sampled_from(self.tickets))
        expected = self.model.start()
        try:
            permit = ticket.start()
        except JobMustWait as wait:
            assert not expected and wait.reason == "no_free_slot"
            assert ticket.held, "a ticket that must wait keeps its place"
            return
        assert expected
        assert not ticket.held
        self.tickets.remove(ticket)
        self.permits.append(permit)

    @precondition(lambda self: self.tickets)
    @rule(data=st.data(), twice=st.booleans())
    def release_ticket(self, data: st.DataObject, twice: bool) -> None:
        ticket = data.draw(st.sampled_from(self.tickets))
        with ticket:
            pass
        assert not ticket.held
        assert ticket.release() is False, "released exactly once"
        self.tickets.remove(ticket)
        self.model.tickets -= 1

    @precondition(lambda self: self.permits)
    @rule(data=st.data())
    def finish_job(self, data: st.DataObject) -> None:
        permit = data.draw(st.sampled_from(self.permits))
        assert permit.release() is True
        with permit:
            pass
        assert permit.release() is False, "released exactly once"
        self.permits.remove(permit)
        self.model.permits -= 1

    @rule(ns=st.integers(0, 3 * 10**9))
    def advance(self, ns: int) -> None:
        self.clock.advance_ns(ns)
        self.model.now_ns += ns

    @precondition(lambda self: self.model.next_edge_ns() is not None)
    @rule(offset=st.sampled_from([-1, 0, 1]))
    def to_the_window_edge(self, offset: int) -> None:
        edge = self.model.next_edge_ns()
        assert edge is not None
        target = edge + offset
        if target > self.model.now_ns:
            self.clock.set_ns(target)
            self.model.now_ns = target

    @invariant()
    def counts_match(self) -> None:
        if not hasattr(self, "admission"):
            return
        snap = self.admission.snapshot()
        assert snap["queue_depth"] == self.model.tickets
        assert snap["jobs_active"] == self.model.permits


AdmissionMatchesTheModel.TestCase.settings = settings(
    max_examples=80, stateful_step_count=50, deadline=None
)
TestAdmissionMatchesTheModel = AdmissionMatchesTheModel.TestCase
