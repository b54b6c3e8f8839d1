"""Running a coroutine that never waits, without an event loop.

The task and decode code is written once, as coroutines, because the browser's pieces answer
through JavaScript promises. Where every await is answered at once (CPython's model and cursor;
a browser classification whose encoder call the worker has already made), the same coroutine
runs to its end right here, in one ``send``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_to_end(coroutine: Coroutine[Any, Any, T], waited: str) -> T:
    """``coroutine``'s result; RuntimeError(``waited``) if it waits on anything after all.

    >>> async def double(x):
    ...     return 2 * x
    >>> run_to_end(double(21), "double waited")
    42
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError(waited)
