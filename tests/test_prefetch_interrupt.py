"""An interrupt raised inside a queue operation (a signal handler raises at any bytecode: lines.errors) can leave
the queue's lock held; the background loaders and writers must then let the interrupt unwind, not wait on the queue
or their thread forever."""
from __future__ import annotations

import queue

import pytest

from lines import prefetch
from lines.errors import Interrupted


class LockLeakingQueue(queue.Queue):
    """A queue whose first `get` is interrupted while holding the queue's lock, as a signal can leave it."""

    interrupted = False

    def get(self, *args, **kwargs):
        if not LockLeakingQueue.interrupted:
            LockLeakingQueue.interrupted = True
            self.mutex.acquire()
            raise Interrupted(2)
        return super().get(*args, **kwargs)


@pytest.mark.timeout(30)
def test_a_prefetch_interrupted_inside_its_queue_unwinds(monkeypatch):
    LockLeakingQueue.interrupted = False
    monkeypatch.setattr(prefetch.queue, "Queue", LockLeakingQueue)
    with pytest.raises(Interrupted):
        for _ in prefetch.prefetched(range(100), lambda i: i, depth=2):
            pass
    assert LockLeakingQueue.interrupted


@pytest.mark.timeout(30)
def test_background_calls_closed_while_an_interrupt_unwinds_do_not_wait():
    calls = prefetch.BackgroundCalls(lambda x: None, depth=1)
    calls._q.mutex.acquire()  # the lock a signal inside `put` can leave held
    with pytest.raises(KeyboardInterrupt):
        try:
            raise KeyboardInterrupt
        finally:
            calls.close()


def test_background_calls_still_wait_for_their_calls_when_nothing_is_interrupted():
    done = []
    calls = prefetch.BackgroundCalls(done.append)
    for i in range(20):
        calls(i)
    calls.close()
    assert done == list(range(20))
