"""The Python baselines of `mpshm bench`: Python's multiprocessing doing what mpshm does.

`mpshm bench` writes this file to a temporary folder and runs it once for the whole run (so
the interpreter starts once), asking for one case at a time on stdin. Each request is one
line, `<case> <args...>`; each answer is one line:

    ok <ops> <seconds> <median|mean> [<nanoseconds> ...]

`ops` operations took `seconds`; the figure of the round is the median of the nanosecond
values (each one operation) or the mean `seconds / ops`, and the values, if any, go into the
tail (each one operation, or for a stream each batch of messages, per message). Or:

    err <what went wrong>

Cases (sizes in bytes, counts per process where two processes work):

    queue_rt SECS            round trips of an int through two mp.Queue to an echoing process
    pipe_rt SECS             the same through a duplex mp.Pipe
    queue_stream SIZE SECS   bytes messages from a producer process through an mp.Queue
    pipe_stream SIZE SECS    the same with send_bytes / recv_bytes over mp.Pipe(duplex=False)
    value N                  two processes: `with v.get_lock(): v.value += 1`, N times each
    pool_map N               Pool(2).map(inc, range(N))
    apply_async N            N pool.apply_async(inc, (i,)), then get() on each
    process METHOD N         N processes (fork, spawn or forkserver) started and joined, one at a time
    dict N                   two processes on one Manager().dict(): d[k] = i, then d[k]

A stream's messages carry a sequence number in their first 8 bytes, which the consumer
checks; every run checks its results (counts, totals, echoes) and answers `err` otherwise.
"""

import multiprocessing as mp
import struct
import sys
import time

KEYS = 64
BATCH_BYTES = 64 << 10
WORKERS = 2

_pool = None
_manager = None


def inc(x):
    return x + 1


def nothing():
    pass


def capacity(size):
    return max(16, min(1024, (1 << 20) // max(size, 1)))


def echo_queue(there, back):
    while True:
        v = there.get()
        if v is None:
            return
        back.put(v + 1)


def echo_pipe(conn):
    while True:
        v = conn.recv()
        if v is None:
            return
        conn.send(v + 1)


def round_trips(secs, send, recv):
    """Times each round trip after a warm-up; the per-trip nanoseconds."""
    i = 0
    warm = time.perf_counter() + secs * 0.1
    while time.perf_counter() < warm or i < 10:
        send(i)
        if recv() != i + 1:
            raise RuntimeError("wrong echo")
        i += 1
    samples = []
    t0 = time.perf_counter_ns()
    end = t0 + int(secs * 0.9e9)
    while True:
        send(i)
        if recv() != i + 1:
            raise RuntimeError("wrong echo")
        i += 1
        t1 = time.perf_counter_ns()
        samples.append(t1 - t0)
        t0 = t1
        if t1 >= end:
            return samples


def queue_rt(secs):
    there, back = mp.Queue(), mp.Queue()
    p = mp.Process(target=echo_queue, args=(there, back))
    p.start()
    try:
        samples = round_trips(secs, there.put, back.get)
    finally:
        there.put(None)
        p.join()
    return len(samples), sum(samples) / 1e9, "median", samples


def pipe_rt(secs):
    mine, theirs = mp.Pipe()
    p = mp.Process(target=echo_pipe, args=(theirs,))
    p.start()
    try:
        samples = round_trips(secs, mine.send, mine.recv)
    finally:
        mine.send(None)
        p.join()
    return len(samples), sum(samples) / 1e9, "median", samples


def produce(go, secs, size, send, end):
    msg = bytearray(size)
    go.wait()
    stop = time.perf_counter() + secs
    seq = 0
    while True:
        for _ in range(16):
            struct.pack_into("<Q", msg, 0, seq)
            send(bytes(msg))
            seq += 1
        if time.perf_counter() >= stop:
            break
    end()


def queue_producer(go, q, secs, size):
    produce(go, secs, size, q.put, lambda: q.put(None))


def pipe_producer(go, w, secs, size):
    def end():
        w.send_bytes(b"")
        w.close()

    produce(go, secs, size, w.send_bytes, end)


def consume(recv, size):
    """Takes messages until the end marker; the count and the per-message ns of each batch."""
    batch = max(1, BATCH_BYTES // size)
    count = 0
    batches = []
    last = None
    while True:
        m = recv()
        if not m:
            return count, batches
        if len(m) != size or struct.unpack_from("<Q", m, 0)[0] != count:
            raise RuntimeError("a message out of order, or of the wrong size")
        if count % batch == 0:
            now = time.perf_counter_ns()
            if last is not None:
                batches.append((now - last) / batch)
            last = now
        count += 1


def stream(secs, size, make, target, recv):
    go = mp.Event()
    channel, mine = make()
    p = mp.Process(target=target, args=(go, channel, secs, size))
    p.start()
    start = time.perf_counter()
    go.set()
    try:
        count, batches = consume(lambda: recv(mine), size)
        took = time.perf_counter() - start
    finally:
        p.join()
    if count == 0:
        raise RuntimeError("no message went through")
    return count, took, "mean", batches


def queue_stream(size, secs):
    def make():
        q = mp.Queue(capacity(size))
        return q, q

    return stream(secs, size, make, queue_producer, lambda q: q.get())


def pipe_stream(size, secs):
    def make():
        r, w = mp.Pipe(duplex=False)
        return w, r

    return stream(secs, size, make, pipe_producer, lambda r: r.recv_bytes())


def count_worker(v, n, barrier, elapsed, slot):
    barrier.wait()
    start = time.perf_counter()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    elapsed[slot] = time.perf_counter() - start


def two_processes(target, args):
    """Runs target(*args, barrier, elapsed, slot) in two processes that start together; the
    slower one's time."""
    barrier = mp.Barrier(2)
    elapsed = mp.Array("d", 2)
    procs = [mp.Process(target=target, args=args + (barrier, elapsed, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError("a worker failed")
    return max(elapsed[:])


def value(n):
    v = mp.Value("L", 0)
    took = two_processes(count_worker, (v, n))
    if v.value != 2 * n:
        raise RuntimeError(f"lost updates: {v.value}, expected {2 * n}")
    return 2 * n, took, "mean", []


def pool():
    global _pool
    if _pool is None:
        _pool = mp.Pool(WORKERS)
        _pool.map(inc, range(100))
    return _pool


def pool_map(n):
    p = pool()
    start = time.perf_counter()
    out = p.map(inc, range(n))
    took = time.perf_counter() - start
    if len(out) != n or out[-1] != n:
        raise RuntimeError("wrong results")
    return n, took, "mean", []


def apply_async(n):
    p = pool()
    start = time.perf_counter()
    results = [p.apply_async(inc, (i,)) for i in range(n)]
    for i, r in enumerate(results):
        if r.get() != i + 1:
            raise RuntimeError("wrong result")
    return n, time.perf_counter() - start, "mean", []


def process(method, n):
    ctx = mp.get_context(method)
    samples = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter_ns()
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
        if p.exitcode != 0:
            raise RuntimeError("a process failed")
        samples.append(time.perf_counter_ns() - t)
    return n, time.perf_counter() - start, "mean", samples


def dict_worker(d, n, barrier, elapsed, slot):
    barrier.wait()
    start = time.perf_counter()
    for i in range(n):
        k = i % KEYS
        d[k] = i
        if d[k] is None:
            raise RuntimeError("lost a key")
    elapsed[slot] = time.perf_counter() - start


def shared_dict(n):
    global _manager
    if _manager is None:
        _manager = mp.Manager()
    d = _manager.dict()
    took = two_processes(dict_worker, (d, n))
    if len(d) != min(n, KEYS):
        raise RuntimeError(f"the dict has {len(d)} keys, expected {min(n, KEYS)}")
    return 4 * n, took, "mean", []


CASES = {
    "queue_rt": lambda a: queue_rt(float(a[0])),
    "pipe_rt": lambda a: pipe_rt(float(a[0])),
    "queue_stream": lambda a: queue_stream(int(a[0]), float(a[1])),
    "pipe_stream": lambda a: pipe_stream(int(a[0]), float(a[1])),
    "value": lambda a: value(int(a[0])),
    "pool_map": lambda a: pool_map(int(a[0])),
    "apply_async": lambda a: apply_async(int(a[0])),
    "process": lambda a: process(a[0], int(a[1])),
    "dict": lambda a: shared_dict(int(a[0])),
}


def main():
    out = sys.stdout
    out.write(f"hello {sys.version.split()[0]} {mp.get_start_method()}\n")
    out.flush()
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        try:
            ops, secs, how, values = CASES[words[0]](words[1:])
            tail = " ".join(str(int(v)) for v in values)
            out.write(f"ok {ops} {secs!r} {how} {tail}".rstrip() + "\n")
        except Exception as e:  # the run goes on; the case is reported failed
            out.write(f"err {words[0]}: {type(e).__name__}: {e}".replace("\n", " ") + "\n")
        out.flush()
    if _pool is not None:
        _pool.close()
        _pool.join()
    if _manager is not None:
        _manager.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
