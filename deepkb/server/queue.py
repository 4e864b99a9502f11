"""GenerationQueue: a fixed number of generation slots and a bounded, time-limited wait for one.

A local llama.cpp context serves one generation at a time (one slot); an upstream server (--llm-url) may batch
several (--parallel). Requests beyond the slots wait in FIFO order, at most `size` of them and at most `wait`
seconds each; anything beyond is refused at once, so a burst of clients never piles up unbounded work.
A slot is released by whoever finishes the generation (its worker thread), not by the client that asked for it:
a client that disconnects frees the slot only once the model has actually stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class QueueFull(Exception):
    """No slot and no room to wait (or the wait ran out): the request is refused with 429."""

    def __init__(self, message: str, retry_after: int, reason: str = "full") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason  # "full" or "timeout"


class Slot:
    """A held generation slot; release() is idempotent and may be called from any thread."""

    def __init__(self, queue: GenerationQueue, waited: float) -> None:
        self._queue = queue
        self.waited = waited  # seconds spent waiting for it
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._queue._loop.call_soon_threadsafe(self._queue._release)


class GenerationQueue:
    """Admission control for generations; every method but Slot.release runs on the event loop."""

    def __init__(
        self,
        slots: int,
        size: int,
        wait: float,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        self.slots = slots  # generations allowed at once
        self.size = size  # requests allowed to wait
        self.wait = wait  # seconds one may wait
        self.busy = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._on_change = on_change or (lambda busy, waiting: None)
        self._loop = asyncio.get_running_loop()  # created in the server's lifespan, on its loop
        self._recent_s = 30.0  # a running estimate of one generation's length, for Retry-After

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def check(self) -> None:
        """Refuse at once when neither a slot nor a place in the queue is free."""
        if self.busy >= self.slots and self.waiting >= self.size:
            raise QueueFull(
                f"the server is busy: {self.busy} generation(s) running and {self.waiting} waiting (the queue holds "
                f"{self.size}); retry later.",
                self.retry_after(),
            )

    async def acquire(self) -> Slot:
        """A slot, after waiting if needed; QueueFull when the queue is full or the wait runs out."""
        self.check()
        started = time.perf_counter()
        if self.busy < self.slots and not self._waiters:
            self.busy += 1
            self._notify()
            return Slot(self, 0.0)
        future: asyncio.Future = self._loop.create_future()
        self._waiters.append(future)
        self._notify()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=self.wait)
        except asyncio.TimeoutError:
            if not self._abandon(future):  # granted in the same instant: keep it
                return Slot(self, time.perf_counter() - started)
            raise QueueFull(
                f"no generation slot became free within {self.wait:g} s; retry later.", self.retry_after(), "timeout"
            ) from None
        except asyncio.CancelledError:  # the client left while waiting
            if not self._abandon(future):
                Slot(self, 0.0).release()
            raise
        return Slot(self, time.perf_counter() - started)

    def note_duration(self, seconds: float) -> None:
        """Remember how long a generation took, so Retry-After is a useful hint."""
        self._recent_s = 0.7 * self._recent_s + 0.3 * seconds

    def retry_after(self) -> int:
        """Seconds until a retry has a fair chance: the queue ahead of it, shared by the slots."""
        ahead = self.waiting + 1
        return max(1, min(600, round(self._recent_s * ahead / self.slots)))

    def _abandon(self, future: asyncio.Future) -> bool:
        """Leave the queue; False when the slot was already granted to this waiter."""
        if future.done():
            return False
        future.cancel()
        try:
            self._waiters.remove(future)
        except ValueError:
            pass
        self._notify()
        return True

    def _release(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)  # the slot passes straight to the next waiter
                self._notify()
                return
        self.busy -= 1
        self._notify()

    def _notify(self) -> None:
        self._on_change(self.busy, self.waiting)
