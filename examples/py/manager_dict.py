"""Baseline for examples/dict_bench.rs: Python's multiprocessing.Manager().dict().

Two processes each run N rounds of ``d[k] = i`` then ``d[k]`` with k = i % 64 (small int
keys, shared by both) on one ``Manager().dict()``. Both wait on a barrier first, so the timed
window is contended; each measures its own elapsed time, and the throughput is the 4N
operations (sets and gets of both) over the slower one.

Usage: python3 manager_dict.py [N]   (default N = 5000 per process)
Prints ``ops_per_sec=<float>``; exits 1 if a worker failed or a value is missing.
"""

import multiprocessing as mp
import sys
import time

KEYS = 64


def worker(d, barrier, elapsed, slot, n):
    barrier.wait()
    start = time.perf_counter()
    for i in range(n):
        k = i % KEYS
        d[k] = i
        if d[k] is None:
            raise RuntimeError("lost a key")
    elapsed[slot] = time.perf_counter() - start


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with mp.Manager() as manager:
        d = manager.dict()
        barrier = mp.Barrier(2)
        elapsed = mp.Array("d", 2)
        procs = [
            mp.Process(target=worker, args=(d, barrier, elapsed, i, n)) for i in range(2)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            print("a worker failed", file=sys.stderr)
            return 1
        if len(d) != min(n, KEYS):
            print(f"the dict has {len(d)} keys, expected {min(n, KEYS)}", file=sys.stderr)
            return 1
    print(f"ops_per_sec={4 * n / max(elapsed[:]):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
