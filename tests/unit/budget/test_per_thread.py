"""Per-thread, per-process resources: made once per thread, closed with the backend
(and, when asked, with their thread); a slot busy in another thread holds close back."""

from __future__ import annotations

import gc
import itertools
import threading

from fleetpool.budget._per_thread import PerThread


class Resource:
    ids = itertools.count()

    def __init__(self) -> None:
        self.id = next(self.ids)
        self.closed = False


def close(r: Resource) -> None:
    r.closed = True


def in_thread(pool: PerThread[Resource]) -> Resource:
    box: list[Resource] = []
    t = threading.Thread(target=lambda: box.append(pool.get().value))
    t.start()
    t.join(5)
    return box[0]


def test_one_resource_per_thread_made_on_first_use() -> None:
    pool = PerThread(Resource, close)
    assert pool.peek() is None
    mine = pool.get().value
    assert pool.get().value is mine and pool.peek() is not None
    assert in_thread(pool) is not mine


def test_a_thread_that_ends_closes_its_resource_when_asked() -> None:
    pool = PerThread(Resource, close)
    other = in_thread(pool)
    gc.collect()
    assert other.closed


def test_kept_resources_stay_open_until_close_all() -> None:
    pool = PerThread(Resource, close, close_with_thread=False)
    other = in_thread(pool)
    mine = pool.get().value
    gc.collect()
    assert not other.closed
    assert pool.close_all(timeout=1.0) == 0
    assert other.closed and mine.closed
    assert pool.get().value is not mine  # a later call makes a new one


def test_close_all_waits_for_a_slot_in_use_then_leaves_it() -> None:
    pool = PerThread(Resource, close)
    slot = pool.get()
    with slot.lock:  # a call in flight on this resource
        assert pool.close_all(timeout=0.05) == 1
    assert not slot.value.closed and not slot.closed


def test_a_forked_child_makes_its_own_and_never_closes_the_parents() -> None:
    import os

    pool = PerThread(Resource, close)
    parent = pool.get().value
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        ok = pool.get().value is not parent and pool.close_all(timeout=1.0) == 0
        os._exit(0 if ok and not parent.closed else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not parent.closed and pool.get().value is parent
