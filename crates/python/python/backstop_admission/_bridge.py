"""One ``Completions`` per running asyncio loop: how Redis results reach their awaiters
(see ``crates/python/src/bridge.rs``)."""

from __future__ import annotations

import asyncio
import os
import weakref

from . import _native

_by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _native.Completions]" = (
    weakref.WeakKeyDictionary()
)


def completions() -> _native.Completions:
    """The running loop's ``Completions``, made and watched on first use."""
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        found = _native.Completions(loop)
        loop.add_reader(found.fileno(), found.drain)
        _by_loop[loop] = found
    return found


def _forget_after_fork() -> None:
    # A child does not run its parent's loops; its own loops get their own eventfds.
    _by_loop.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
