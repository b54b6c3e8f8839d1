"""The escalation runner (a background asyncio task in the server process, not the browser's Web
Worker): claim a case, ask the handler, record the answer or the failure."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from .handlers import EscalationHandler
from .queue import Case, EscalationQueue

log = logging.getLogger("edge_triage.escalations")


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class EscalationRunner:
    """
    >>> worker = EscalationRunner(queue, EngineHandler.from_settings(settings))   # doctest: +SKIP
    >>> await worker.process_once()          # one case, or None when nothing is due  # doctest: +SKIP
    """

    def __init__(
        self,
        queue: EscalationQueue,
        handler: EscalationHandler,
        name: str | None = None,
        lease_s: float = 120.0,
        poll_s: float = 1.0,
    ):
        self.queue = queue
        self.handler = handler
        self.name = name or worker_name()
        self.lease_s = lease_s
        self.poll_s = poll_s
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()

    async def process_once(self) -> Case | None:
        """Resolve the next due case; returns it as stored afterwards, or None if none was due."""
        case = await asyncio.to_thread(self.queue.claim, self.name, self.lease_s)
        if case is None:
            return None
        try:
            answer = await self.handler.resolve(case)
        except Exception as e:  # noqa: BLE001 - whatever a handler raises, the case must survive
            log.warning("escalation %s attempt %d failed: %s", case.id, case.attempts, e)
            return await asyncio.to_thread(self.queue.fail, case.id,
                                           f"{type(e).__name__}: {e}", self.name)
        return await asyncio.to_thread(self.queue.complete, case.id, answer)

    def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"escalation-runner {self.name}")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Finish the case in hand (up to ``grace_s``), then stop. A case cut off here stays
        ``processing`` and is claimed again once its lease runs out."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(self._task, grace_s)
        except TimeoutError:
            pass  # wait_for has cancelled the task
        self._task = None

    async def _run(self) -> None:
        errors = 0
        while not self._stopping.is_set():
            try:
                case = await self.process_once()
                errors = 0
            except Exception:  # noqa: BLE001 - the queue itself failed (Redis down, disk full)
                errors += 1
                log.exception("escalation queue error; retrying")
                case = None
            if case is None:
                # Nothing due (or the queue is failing: back off up to 30 s).
                wait = min(30.0, self.poll_s * 2 ** min(errors, 5)) if errors else self.poll_s
                try:
                    await asyncio.wait_for(self._stopping.wait(), wait)
                except TimeoutError:
                    pass
