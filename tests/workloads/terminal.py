#!/usr/bin/env python3
"""A terminal, like tmux's, for tests of jobs that run in one: it holds a pty's master and copies
what the programs on it print into SCREEN (carriage returns dropped, so lines read like a log).

usage: terminal.py shell SCREEN CMD...   an interactive bash (job control on) runs CMD in the
                                         foreground: CMD is a shell job, bash leads the session
       terminal.py leader SCREEN CMD...  CMD itself leads the session (like `ssh host CMD`)
       terminal.py open SCREEN           no program: prints the slave's path, for `-o /dev/pts/N`
"""
import os
import pty
import shlex
import sys
import time

mode, screen, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
out = open(screen, "ab", buffering=0)

if mode == "open":
    master, slave = pty.openpty()
    print(os.ttyname(slave), flush=True)
else:
    pid, master = pty.fork()
    if pid == 0:
        if mode == "shell":
            os.environ["TERM"] = "dumb"  # (no bracketed-paste codes around the lines)
            os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
        os.execvp(cmd[0], cmd)
    if mode == "shell":
        time.sleep(0.3)  # (bash reads its first line once its prompt is out)
        os.write(master, (shlex.join(cmd) + "\n").encode())

while True:
    try:
        b = os.read(master, 4096)
    except OSError:  # every slave closed (the session's programs are gone)
        if mode == "open":
            time.sleep(0.05)
            continue
        break
    if not b:
        break
    out.write(b.replace(b"\r", b""))
