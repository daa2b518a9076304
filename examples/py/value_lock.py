"""Baseline for examples/counter.rs: Python's multiprocessing.Value under its lock.

Two processes each add 1 to a shared ``multiprocessing.Value('L', 0)`` N times under
``with v.get_lock(): v.value += 1``. Both wait on a barrier first, so the timed window is
contended; each measures its own elapsed time and the throughput is 2N / the slower one.

Usage: python3 value_lock.py [N]   (default N = 100000 per process)
Prints ``ops_per_sec=<float>`` and ``total=<int>``; exits 1 if the total is not 2N.
"""

import multiprocessing as mp
import sys
import time


def worker(v, barrier, elapsed, slot, n):
    barrier.wait()
    start = time.perf_counter()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    elapsed[slot] = time.perf_counter() - start


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    v = mp.Value("L", 0)
    barrier = mp.Barrier(2)
    elapsed = mp.Array("d", 2)
    procs = [mp.Process(target=worker, args=(v, barrier, elapsed, i, n)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        print("a worker failed", file=sys.stderr)
        return 1
    total = v.value
    print(f"ops_per_sec={2 * n / max(elapsed[:]):.1f}")
    print(f"total={total}")
    if total != 2 * n:
        print(f"lost updates: total {total}, expected {2 * n}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
