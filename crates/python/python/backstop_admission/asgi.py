"""A pure ASGI middleware that admits the routes that create work (not ``BaseHTTPMiddleware``:
no extra task, no body buffering, streaming untouched).

In ``main.py``::

    app.add_middleware(AdmissionMiddleware, admission=admission,
                       routes=[("POST", "/make-video")], key=header_key("x-api-key"))

Only the listed routes are judged, so a 404, a 405 (another method on the same path),
``/health`` and ``/metrics`` spend no budget. A refused request gets the answer the Rust
tower layer gives, byte for byte (429/503, ``Retry-After`` rounded up, ``RateLimit-Policy``
and ``RateLimit``, an ``application/problem+json`` body). An admitted request's ticket is
in ``scope["state"]["backstop_ticket"]`` (FastAPI: ``request.state.backstop_ticket``) and
is released when the response is done, unless the app started or detached it first.
"""

from __future__ import annotations

import inspect
from typing import Any, Awaitable, Callable, Collection, Dict, List, MutableMapping, Optional, Tuple

from .errors import Refused

__all__ = ["AdmissionMiddleware", "TICKET_STATE_KEY", "header_key", "send_refusal"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where the middleware leaves an admitted request's ticket in ``scope["state"]``.
TICKET_STATE_KEY = "backstop_ticket"


def header_key(name: str) -> Callable[[Scope], Optional[str]]:
    """A client key read from request header ``name`` (``None`` when absent)."""
    wanted = name.lower().encode("latin-1")

    def key(scope: Scope) -> Optional[str]:
        for header, value in scope.get("headers", ()):
            if header == wanted:
                return bytes(value).decode("latin-1")
        return None

    return key


async def admit(admission: Any, key: Optional[str], priority: str) -> Any:
    """A ticket from ``admission``: in process (sync, nanoseconds) or shared (awaited)."""
    result = admission.try_admit(key, priority)
    if inspect.isawaitable(result):
        return await result
    return result


def refusal_answer(admission: Any, refused: Refused, key: Optional[str]) -> Tuple[int, List[Tuple[str, str]], str]:
    """The tower layer's status, headers and body for ``refused``."""
    status, headers, body = admission.refusal_response(refused, key)
    return int(status), list(headers), str(body)


async def send_refusal(send: Send, answer: Tuple[int, List[Tuple[str, str]], str]) -> None:
    status, headers, body = answer
    payload = body.encode()
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    raw.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class AdmissionMiddleware:
    """Admits the requests of ``routes`` (method, path) through ``admission``.

    Args:
        app: the ASGI app.
        admission: an ``Admission`` (in process) or a ``RedisAdmission`` (shared).
        routes: the ``(method, path)`` pairs that create work; others pass untouched.
        match: instead of ``routes``, a predicate on the ASGI scope.
        key: the client key of a request (see ``header_key``), for per-client limits.
        priority: ``"normal"`` or ``"critical"``, or a function of the scope.
    """

    def __init__(
        self,
        app: ASGIApp,
        admission: Any,
        *,
        routes: Collection[Tuple[str, str]] = (),
        match: Optional[Callable[[Scope], bool]] = None,
        key: Optional[Callable[[Scope], Optional[str]]] = None,
        priority: Any = "normal",
    ) -> None:
        self.app = app
        self.admission = admission
        self.routes = {(m.upper(), p) for m, p in routes}
        self.match = match
        self.key = key
        self.priority = priority

    def judged(self, scope: Scope) -> bool:
        if scope["type"] != "http":
            return False
        if self.match is not None:
            return self.match(scope)
        return (scope["method"], scope["path"]) in self.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.judged(scope):
            await self.app(scope, receive, send)
            return
        key = self.key(scope) if self.key is not None else None
        priority = self.priority(scope) if callable(self.priority) else self.priority
        try:
            ticket = await admit(self.admission, key, priority)
        except Refused as refused:
            await send_refusal(send, refusal_answer(self.admission, refused, key))
            return
        state: Dict[str, Any] = scope.setdefault("state", {})
        state[TICKET_STATE_KEY] = ticket
        try:
            await self.app(scope, receive, send)
        finally:
            ticket.release()
