"""Overlap I/O with compute: load work items in a background thread, hand them over in order.

File reads (os.preadv) and writes release the GIL, so on a 2-core machine one thread can move bytes while the
main thread computes: a streaming merge then runs close to the speed of its I/O.
"""
from __future__ import annotations

import queue
import sys
import threading
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_DONE = object()


def unwinding_an_interrupt() -> bool:
    """Whether an interrupt (Ctrl-C, or SIGTERM as lines.errors.Interrupted: a BaseException that is no Exception) is
    unwinding this thread. Raised by a signal handler at any bytecode, it can leave a queue's lock held (a signal
    inside Queue.get), so nothing may then wait on a queue or on its thread: the threads here are daemons, and the
    interrupted process is ending."""
    exc = sys.exc_info()[1]
    return exc is not None and not isinstance(exc, (Exception, GeneratorExit))


def prefetched(items: Iterable[T], load: Callable[[T], R], depth: int = 8) -> Iterator[tuple[T, R]]:
    """Yield (item, load(item)) in order while up to `depth` later items are loaded in the background.
    An exception raised by `load` is re-raised here, at the item that failed."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((item, load(item), None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put((None, None, exc))
        q.put(_DONE)

    thread = threading.Thread(target=worker, daemon=True, name="lines-prefetch")
    thread.start()
    try:
        while True:
            entry = q.get()
            if entry is _DONE:
                return
            item, result, exc = entry
            if exc is not None:
                raise exc
            yield item, result
    finally:
        stop.set()
        while thread.is_alive() and not unwinding_an_interrupt():  # unblock a worker waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)


class BackgroundCalls:
    """Run calls of `fn` in order on one background thread (e.g. file writes), bounded to `depth` pending."""

    def __init__(self, fn: Callable[..., None], depth: int = 8):
        self._fn = fn
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="lines-writer")
        self._thread.start()

    def _run(self):
        while True:
            args = self._q.get()
            if args is _DONE:
                return
            if self._error is None:
                try:
                    self._fn(*args)
                except BaseException as exc:
                    self._error = exc

    def __call__(self, *args) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(args)

    def close(self) -> None:
        """Wait for every pending call; re-raise the first error. While an interrupt unwinds, nothing is waited for
        (see `unwinding_an_interrupt`)."""
        if unwinding_an_interrupt():
            return
        self._q.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error
