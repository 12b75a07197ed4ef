"""FastAPI: admission as a dependency.

In ``main.py``::

    from backstop_admission import Admission, Limits, Ticket
    from backstop_admission.fastapi import Admit, install

    admission = Admission(Limits.from_file("limits.toml"))
    install(app)                      # refusals answered as the tower layer answers them

    @app.post("/make-video", status_code=202)
    async def make_video(ticket: Ticket = Depends(Admit(admission))) -> dict: ...

Only routes that depend on ``Admit`` spend budget: 404s, 405s, ``/health`` and
``/metrics`` do not.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Optional

from starlette.requests import Request
from starlette.responses import Response

from .asgi import admit, refusal_answer
from .errors import Refused

__all__ = ["Admit", "install", "refusal_handler"]


class Admit:
    """A dependency that admits the request and yields its ticket (released after the
    response unless the route started or detached it).

    Args:
        admission: an ``Admission`` or a ``RedisAdmission``.
        key: the client key of a request (e.g. ``lambda r: r.headers.get("x-api-key")``).
        priority: ``"normal"`` or ``"critical"``.
    """

    def __init__(
        self,
        admission: Any,
        *,
        key: Optional[Callable[[Request], Optional[str]]] = None,
        priority: str = "normal",
    ) -> None:
        self.admission = admission
        self.key = key
        self.priority = priority

    async def __call__(self, request: Request) -> AsyncIterator[Any]:
        key = self.key(request) if self.key is not None else None
        try:
            ticket = await admit(self.admission, key, self.priority)
        except Refused as refused:
            refused.http_answer = refusal_answer(self.admission, refused, key)  # type: ignore[attr-defined]
            raise
        try:
            yield ticket
        finally:
            ticket.release()


async def refusal_handler(request: Request, exc: Exception) -> Response:
    """Answers a ``Refused`` raised by ``Admit`` as the tower layer does."""
    answer = getattr(exc, "http_answer", None)
    if answer is None:
        raise exc
    status, headers, body = answer
    content_type = dict(headers).get("content-type", "application/problem+json")
    extra = {n: v for n, v in headers if n != "content-type"}
    return Response(body, status_code=status, headers=extra, media_type=content_type)


def install(app: Any) -> None:
    """Registers ``refusal_handler`` for ``Refused`` on a FastAPI/Starlette app."""
    app.add_exception_handler(Refused, refusal_handler)
