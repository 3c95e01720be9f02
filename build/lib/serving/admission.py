"""What a request may cost before it is parsed, and how many may work or wait at once.

``check_shape`` bounds a JSON body by counting its structure in the raw bytes (C-speed
``bytes.count``, ~1 ms for 4 MiB) against what the served model could accept: a body with more
objects, arrays or separators than the largest valid request is refused before ``json.loads`` or
pydantic see it (a 4 MiB body of 419k tiny candidates cost 4.5–5.7 s of validation on the event
loop). Counting braces and commas inside strings over-counts, so a legal request is never refused
unless its strings are full of them.

:class:`Admission` runs the parsing and scoring of a request in a worker thread: at most ``slots`` at
once, at most ``queue`` more waiting (beyond: 503 with Retry-After), each with a deadline (504).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio

from serving.service import BadRequest

T = TypeVar("T")

# top-level members of the largest request body (user, context, timestamp, history, candidates, ...)
TOP_LEVEL = 8


def check_shape(body: bytes, *, objects: int, separators: int) -> None:
    """Raise :class:`BadRequest` (400) when ``body`` holds more JSON containers or commas than allowed.

    Args:
        body: the raw request body.
        objects: most objects and arrays (``{``, ``[``) a valid request can hold: its items, its top-level
            mappings and lists (a few more still parse, to be refused by the schema with its reason).
        separators: most ``,`` a valid request can hold (one per item and per field beyond the first).
    """
    counts = {"objects and arrays": (body.count(b"{") + body.count(b"["), objects),
              "separators": (body.count(b","), separators)}
    for what, (have, most) in counts.items():
        if have > most:
            raise BadRequest("body_too_complex", f"the body holds {have} JSON {what}; a valid request for this model "
                                                 f"within the service's limits holds at most {most} (lower the count "
                                                 "of candidates or history entries, or split the request)")


class Admission:
    """A bounded worker pool with a bounded queue and a per-request deadline.

    Args:
        slots: requests worked on at once (threads).
        queue: requests allowed to wait for a slot; one more is refused with 503.
        deadline: seconds a request may take from admission to answer (504 after it).
    """

    def __init__(self, slots: int, queue: int, deadline: float) -> None:
        self.slots, self.queue, self.deadline = slots, queue, deadline
        self.limiter = anyio.CapacityLimiter(slots)
        self.admitted = 0

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread, or a 503/504 :class:`BadRequest`."""
        if self.admitted >= self.slots + self.queue:
            raise Overloaded(f"the service is at capacity ({self.slots} working, {self.queue} waiting); retry shortly")
        self.admitted += 1
        try:
            with anyio.fail_after(self.deadline):
                # a thread cannot be stopped: after the deadline it finishes in the background, holding its slot
                return await anyio.to_thread.run_sync(fn, limiter=self.limiter, abandon_on_cancel=True)
        except TimeoutError:
            raise BadRequest("deadline", f"the request was not answered within its deadline of {self.deadline:g} s "
                                         "(--request-timeout)", status=504) from None
        finally:
            self.admitted -= 1


class Overloaded(BadRequest):
    """503 with ``Retry-After``: the queue is full."""

    def __init__(self, message: str) -> None:
        super().__init__("overloaded", message, status=503)
        self.headers = {"Retry-After": "1"}
