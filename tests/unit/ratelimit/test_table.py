"""The shared table: atomic across real forked processes, bounded, and never wedged by a
worker killed while it holds a lock."""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable

import pytest

from apiward.ratelimit.table import CACHE, LOCK_TIMEOUT, SETTLE, SharedTable

NOW = 1000.0
FAR = 1e12  # an expiry that never comes


def inc(values: list[float]) -> tuple[float, list[tuple[float, float]]]:
    return values[0], [(values[0] + 1.0, FAR)]


def inc_all(values: list[float]) -> tuple[None, list[tuple[float, float]]]:
    return None, [(value + 1.0, FAR) for value in values]


def fork(work: Callable[[], object]) -> int:
    """Run ``work`` in a child process; its exit code says whether it raised."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def exit_code(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def run_together(works: list[Callable[[], object]]) -> None:
    """Fork one child per work, release them at once through a pipe, and wait for all."""
    gate_r, gate_w = os.pipe()

    def gated(work: Callable[[], object]) -> Callable[[], object]:
        def run() -> None:
            os.close(gate_w)
            assert os.read(gate_r, 1) == b"g"
            work()
        return run

    pids = [fork(gated(work)) for work in works]
    os.close(gate_r)
    os.write(gate_w, b"g" * len(pids))
    os.close(gate_w)
    assert [exit_code(pid) for pid in pids] == [0] * len(pids)


def test_increments_from_forked_workers_add_up_exactly() -> None:
    table = SharedTable()  # each child hashes the key itself: hashes agree across processes
    workers, rounds = 4, 20_000

    def work() -> None:
        for _ in range(rounds):
            table.update(("203.0.113.7",), NOW, inc)

    run_together([work] * workers)
    assert table.get("203.0.113.7", NOW) == workers * rounds


def test_two_key_updates_in_either_order_are_atomic_and_never_deadlock() -> None:
    table = SharedTable()
    keys = [f"client-{i}" for i in range(6)]  # pairs over several stripes, both orders
    pairs = [(a, b) for a in keys for b in keys if a != b]
    rounds = 20

    def work(forward: bool) -> Callable[[], None]:
        def run() -> None:
            for _ in range(rounds):
                for a, b in pairs:
                    table.update((a, b) if forward else (b, a), NOW, inc_all)
        return run

    run_together([work(True), work(False), work(True), work(False)])
    each = 4 * rounds * 2 * (len(keys) - 1)  # every pair names each key 2*(n-1) times a round
    assert [table.get(key, NOW) for key in keys] == [each] * len(keys)


def test_an_expired_entry_reads_as_zero_and_is_not_live() -> None:
    table = SharedTable(64)
    table.put("a", 5.0, NOW + 1.0, NOW)
    assert table.get("a", NOW + 0.5) == 5.0
    assert table.live(NOW + 0.5) == 1
    assert table.get("a", NOW + 1.0) == 0.0  # expires <= now: gone
    assert table.live(NOW + 1.0) == 0
    assert table.update(("a",), NOW + 2.0, inc) == 0.0  # counting starts again from 0
    assert table.get("a", NOW + 2.0) == 1.0


def test_update_writes_nothing_for_none_and_returns_fn_result() -> None:
    table = SharedTable(64)
    table.put("a", 3.0, FAR, NOW)
    assert table.update(("a", "b"), NOW, lambda v: (tuple(v), None)) == (3.0, 0.0)
    assert (table.get("a", NOW), table.get("b", NOW)) == (3.0, 0.0)
    assert table.live(NOW) == 1


def test_a_bad_fn_writes_nothing_and_leaves_the_locks_free() -> None:
    table = SharedTable(64)
    table.put("a", 1.0, FAR, NOW)
    with pytest.raises(ValueError):
        table.update(("a", "b"), NOW, lambda v: (None, [(9.0, FAR)]))  # one write, two keys
    with pytest.raises(ValueError):
        table.update(("a",), NOW, lambda v: (None, []))

    def boom(values: list[float]) -> tuple[None, None]:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        table.update(("a", "b"), NOW, boom)
    started = time.monotonic()
    assert table.update(("a", "b"), NOW, inc_all) is None  # no lock was left taken
    assert time.monotonic() - started < LOCK_TIMEOUT
    assert (table.get("a", NOW), table.get("b", NOW)) == (2.0, 1.0)


def test_a_full_bucket_evicts_the_entry_that_expires_soonest() -> None:
    table = SharedTable(8)  # one bucket: every key competes for the same 8 slots
    for i in range(8):
        table.put(f"k{i}", float(i), NOW + 10 + i, NOW)
    table.put("new", 99.0, NOW + 50, NOW)
    assert table.get("k0", NOW) == 0.0  # expired soonest: evicted
    assert [table.get(f"k{i}", NOW) for i in range(1, 8)] == [float(i) for i in range(1, 8)]
    assert table.get("new", NOW) == 99.0
    assert table.live(NOW) == 8


def test_an_expired_slot_is_reused_before_a_live_one_is_evicted() -> None:
    table = SharedTable(8)
    for i in range(8):
        table.put(f"k{i}", 1.0, FAR if i != 5 else NOW + 1, NOW)
    table.put("new", 2.0, FAR, NOW + 1)  # k5 expired at NOW + 1: its slot is free
    assert [table.get(f"k{i}", NOW + 1) for i in range(8) if i != 5] == [1.0] * 7
    assert table.get("new", NOW + 1) == 2.0


def test_deleting_frees_the_slot_and_an_absent_key_evicts_nothing() -> None:
    table = SharedTable(8)
    for i in range(8):
        table.put(f"k{i}", 1.0, NOW + 10 + i, NOW)
    table.delete("absent")
    table.update(("absent",), NOW, lambda v: (None, [(1.0, NOW)]))  # already expired
    assert table.live(NOW) == 8
    table.delete("k3")
    assert table.get("k3", NOW) == 0.0
    assert table.live(NOW) == 7
    table.put("new", 2.0, NOW + 1, NOW)  # takes k3's slot though it expires soonest
    assert table.live(NOW) == 8
    assert table.get("k0", NOW) == 1.0


def test_keys_of_one_update_in_one_bucket_get_their_own_slots() -> None:
    table = SharedTable(8)
    assert table.update(("a", "b", "a"), NOW, lambda v: (v, [(1.0, FAR), (2.0, FAR),
                                                             (3.0, FAR)])) == [0.0] * 3
    assert (table.get("a", NOW), table.get("b", NOW)) == (3.0, 2.0)  # the later write wins
    assert table.live(NOW) == 2


def test_a_flood_of_a_million_keys_stays_in_its_slots_and_spares_a_hot_key() -> None:
    """Memory: the table's size never changes and at most ``slots`` entries live.

    Hot key: all entries expire 60 s after their write and the clock only moves on, so a
    bucket evicts its oldest write. The hot key, written after every 16 cold keys, is
    evicted only if 8 of those 16 land in its bucket (7 to replace the older entries, the
    8th to replace it): with 128 buckets, P <= C(16, 8) / 128**8 < 2e-13 for each of the
    62,500 gaps, so the hot key fails to survive with probability below 1e-8.
    """
    table = SharedTable(1024)
    size = len(table._mm)
    now = NOW
    put = table.put
    for i in range(1_000_000):
        now += 1e-6
        put(f"cold-{i}", 1.0, now + 60, now)
        if i % 16 == 15:
            hot = table.update(("hot",), now, lambda v, e=now + 60: (v[0], [(v[0] + 1, e)]))
            assert hot == i // 16
    assert table.get("hot", now) == 1_000_000 // 16
    assert table.live(now) <= table.slots == 1024
    assert table.get("cold-0", now) == 0.0  # long since evicted
    assert len(table._mm) == size
    assert len(table._cache) <= CACHE


def test_a_worker_killed_holding_a_lock_does_not_wedge_the_others() -> None:
    table = SharedTable()
    table.put("k", 1.0, FAR, NOW)

    def die_inside(values: list[float]) -> tuple[None, None]:
        os.kill(os.getpid(), signal.SIGKILL)  # holding k's stripe, pid recorded
        raise AssertionError("unreachable")

    pid = fork(lambda: table.update(("k",), NOW, die_inside))
    assert os.waitpid(pid, 0)[1] == signal.SIGKILL
    started = time.monotonic()
    assert table.update(("k",), NOW, inc) == 1.0  # the dead child wrote nothing
    assert time.monotonic() - started < LOCK_TIMEOUT + SETTLE + 1.0
    started = time.monotonic()
    for _ in range(100):
        table.update(("k",), NOW, inc)
    assert time.monotonic() - started < LOCK_TIMEOUT  # the stripe is healthy again
    assert table.get("k", NOW) == 102.0


def test_workers_waiting_on_a_dead_holder_take_over_one_at_a_time() -> None:
    """The child stays a zombie (not reaped) while the others recover: it counts as dead."""
    table = SharedTable()

    def die_inside(values: list[float]) -> tuple[None, None]:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    dead = fork(lambda: table.update(("k",), NOW, die_inside))
    os.waitid(os.P_PID, dead, os.WEXITED | os.WNOWAIT)  # dead, and left a zombie
    rounds = 500

    def work() -> None:
        for _ in range(rounds):
            table.update(("k",), NOW, inc)

    started = time.monotonic()
    run_together([work] * 3)
    assert time.monotonic() - started < 3 * (LOCK_TIMEOUT + SETTLE) + 2.0
    assert table.get("k", NOW) == 3 * rounds  # exactly one took over at a time
    assert os.waitpid(dead, 0)[1] == signal.SIGKILL


def test_a_holder_killed_before_it_recorded_its_pid_is_taken_over_too() -> None:
    table = SharedTable()
    stripe = table._entry("k")[2]

    def die_holding() -> None:
        table._sems[stripe].acquire()  # the semaphore taken, the pid not yet written
        os.kill(os.getpid(), signal.SIGKILL)

    assert os.waitpid(fork(die_holding), 0)[1] == signal.SIGKILL
    started = time.monotonic()
    assert table.update(("k",), NOW, inc) == 0.0
    assert time.monotonic() - started < 2 * (LOCK_TIMEOUT + SETTLE) + 1.0
    assert table.get("k", NOW) == 1.0


def test_update_called_again_from_its_fn_raises_instead_of_hanging() -> None:
    table = SharedTable()
    with pytest.raises(RuntimeError, match="re-entered"):
        table.update(("k",), NOW, lambda v: table.update(("k",), NOW, inc))
    assert table.update(("k",), NOW, inc) == 0.0  # the outer lock was released


def test_a_private_table_works_and_is_not_shared_with_a_child() -> None:
    table = SharedTable(64, shared=False)
    table.put("a", 1.0, FAR, NOW)
    assert table.update(("a", "b"), NOW, inc_all) is None
    assert (table.get("a", NOW), table.get("b", NOW)) == (2.0, 1.0)
    assert exit_code(fork(lambda: table.put("a", 50.0, FAR, NOW))) == 0
    assert table.get("a", NOW) == 2.0  # the child's write stayed in the child
    table.delete("a")
    assert table.get("a", NOW) == 0.0
    assert table.live(NOW) == 1


def test_a_table_needs_one_bucket() -> None:
    with pytest.raises(ValueError):
        SharedTable(7)
    assert SharedTable(20, shared=False).slots == 16  # whole buckets, never more than asked
