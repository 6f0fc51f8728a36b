#!/usr/bin/env python3
"""Self-checking workloads for checkpoint/restore tests (in the spirit of CRIU's zdtm).

Each prints `tick N` lines with a counter that must keep increasing across a dump and restore,
and on SIGUSR1 checks its own state and prints `verify ok` or `verify FAIL <why>`. Any
inconsistency noticed on the way prints `FAIL <why>` and exits 1.

usage: workload.py KIND [ARG]
  counter            a plain counter
  memory MIB         MIB of random data, checksummed (crc32) at start and on verify
  threads            4 threads with their own counters; main checks they all advance
  pipes              a parent and 2 children exchanging numbers over pipes
  tcp                a TCP server and client (same process) ping-ponging on loopback
  unixpair           a socketpair between a parent and a child
  flock PATH         holds an fcntl lock on PATH; verify checks a child cannot take it
  memfd PATH         a memfd and an mmapped file with known contents
"""
import os
import signal
import sys
import threading
import time
import zlib

kind = sys.argv[1]
arg = sys.argv[2] if len(sys.argv) > 2 else None
checks = []  # functions returning None (ok) or a reason string
# Reentrant: the SIGUSR1 handler runs in the main thread, maybe while it is inside say() (a plain
# Lock deadlocked there once in CI: the ticks stopped and no verify line came).
out_lock = threading.RLock()


def say(msg):
    with out_lock:
        sys.stdout.write(msg + "\n")
        sys.stdout.flush()


def fail(why):
    say("FAIL " + why)
    os._exit(1)


def on_usr1(_sig, _frm):
    for c in checks:
        why = c()
        if why:
            say("verify FAIL " + why)
            return
    say("verify ok")


signal.signal(signal.SIGUSR1, on_usr1)
step = 0.1

if kind == "counter":
    pass

elif kind == "memory":
    size = int(arg) << 20
    data = bytearray(os.urandom(size))
    crc = zlib.crc32(data)
    checks.append(lambda: None if zlib.crc32(data) == crc else "memory checksum changed")

elif kind == "threads":
    counts = [0] * 4

    def worker(i):
        while True:
            counts[i] += 1
            time.sleep(0.01)

    for i in range(4):
        threading.Thread(target=worker, args=(i,), daemon=True).start()
    last = [0] * 4

    def threads_advance():
        time.sleep(0.2)
        now = list(counts)
        bad = [i for i in range(4) if now[i] <= last[i]]
        last[:] = now
        return "threads stalled: %s" % bad if bad else None

    checks.append(threads_advance)

elif kind == "pipes":
    kids = []
    for _ in range(2):
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            while True:
                n = int(os.read(to_child_r, 64).decode())
                os.write(to_parent_w, str(n + 1).encode())
        kids.append((to_child_w, to_parent_r))
    state = {"n": 0}

    def exchange():
        for w, r in kids:
            os.write(w, str(state["n"]).encode())
            got = int(os.read(r, 64).decode())
            if got != state["n"] + 1:
                return "child answered %d to %d" % (got, state["n"])
        state["n"] += 1
        return None

    checks.append(exchange)

elif kind == "tcp":
    import socket

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    state = {"n": 0}

    def pingpong():
        cli.sendall(b"%d\n" % state["n"])
        got = conn.recv(64)
        conn.sendall(b"%d\n" % (int(got) + 1))
        back = int(cli.recv(64))
        if back != state["n"] + 1:
            return "tcp answer %d to %d" % (back, state["n"])
        state["n"] += 1
        return None

    checks.append(pingpong)

elif kind == "unixpair":
    import socket

    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        while True:
            n = int(b.recv(64))
            b.sendall(b"%d" % (n * 2))
    b.close()
    state = {"n": 1}

    def unix_roundtrip():
        a.sendall(b"%d" % state["n"])
        got = int(a.recv(64))
        if got != state["n"] * 2:
            return "unix answer %d to %d" % (got, state["n"])
        state["n"] += 1
        return None

    checks.append(unix_roundtrip)

elif kind == "flock":
    import fcntl

    fd = os.open(arg, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def lock_held():
        pid = os.fork()
        if pid == 0:
            fd2 = os.open(arg, os.O_RDWR)
            try:
                fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os._exit(1)  # we could take it: the lock is gone
            except OSError:
                os._exit(0)
        _, st = os.waitpid(pid, 0)
        return None if os.WEXITSTATUS(st) == 0 else "file lock was lost"

    checks.append(lock_held)

elif kind == "memfd":
    import mmap

    pattern = bytes(range(256)) * 4096  # 1 MiB
    mfd = os.memfd_create("cedana-test")
    os.write(mfd, pattern)
    mem = mmap.mmap(mfd, len(pattern))
    with open(arg, "wb") as f:
        f.write(pattern[::-1])
    ffd = os.open(arg, os.O_RDWR)
    fmap = mmap.mmap(ffd, len(pattern))
    checks.append(lambda: None if mem[:] == pattern else "memfd contents changed")
    checks.append(lambda: None if fmap[:] == pattern[::-1] else "mmapped file contents changed")
    checks.append(lambda: None if os.pread(mfd, 16, 0) == pattern[:16] else "memfd read changed")

else:
    fail("unknown workload " + kind)

say("ready %s pid %d" % (kind, os.getpid()))
i = 0
while True:
    say("tick %d" % i)
    i += 1
    time.sleep(step)
