"""Run a command where users run it: in a terminal.

:func:`run_in_terminal` starts a command with its stderr (and stdin) on a pseudo-terminal
of 120 x 40, and its stdout on a pipe, so stdout stays data a test can parse. Progress bars
see a terminal and draw; ``ARTWALK_PROGRESS_INTERVAL=0`` makes every bar redraw on every
step, so a progress call that ever leaks into data (tqdm's ``update()`` returns True when it
redraws) fails at once instead of in the one run out of many that redraws at that moment.

What came out of the terminal is kept twice: ``raw`` (the bytes, escape codes and carriage
returns included) and ``stderr``, the text a person sees once the command is done (each
line as it was last drawn; bars that cleared themselves leave nothing). A Python traceback
on the terminal fails the test, unless the caller expects one.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

COLUMNS, LINES = 120, 40
# Every bar redraws on every step (see artwalk.progress).
REDRAW_ENV = {"ARTWALK_PROGRESS_INTERVAL": "0", "TERM": "xterm"}

_CSI = re.compile(r"\x1b\[([0-9;?]*)([@-~])")


@dataclass
class Ran:
    """A finished command, like subprocess.CompletedProcess, plus what the terminal showed."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str  # the terminal's final text, one line per line shown
    raw: bytes  # everything written to the terminal

    @property
    def redraws(self) -> int:
        """How many times a line was drawn over (carriage returns not followed by a newline)."""
        return len(re.findall(rb"\r(?!\n)", self.raw))


def render(raw: bytes) -> str:
    """The text a terminal shows after ``raw``: carriage returns, cursor-up and erase-line
    applied; blank lines left by bars that cleared themselves dropped."""
    text = raw.decode("utf-8", errors="replace")
    lines: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            m = _CSI.match(text, i)
            if m:
                args, final = m.group(1), m.group(2)
                n = int(args) if args.isdigit() else 1
                if final == "A":
                    row = max(0, row - n)
                elif final == "B":
                    row += n
                elif final == "K":
                    while len(lines) <= row:
                        lines.append([])
                    if args in ("", "0"):
                        del lines[row][col:]
                    elif args == "2":
                        lines[row] = []
                i = m.end()
                continue
            i += 1
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
        elif ch == "\b":
            col = max(0, col - 1)
        else:
            while len(lines) <= row:
                lines.append([])
            line = lines[row]
            if col < len(line):
                line[col] = ch
            else:
                line.extend(" " * (col - len(line)))
                line.append(ch)
            col += 1
        while len(lines) <= row:
            lines.append([])
        i += 1
    shown = "\n".join(line for line in ("".join(chars).rstrip() for chars in lines) if line)
    return shown + "\n" if shown else ""


def run_in_terminal(argv: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float | None = None,
                    input: str | None = None, traceback_ok: bool = False, **popen) -> Ran:
    """Run ``argv`` with stderr (and stdin, unless ``input`` is given) on a fresh terminal;
    ``popen``: more of subprocess.Popen's keywords (``preexec_fn``...)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env={**env, **REDRAW_ENV}, stdout=subprocess.PIPE, stderr=slave,
            stdin=subprocess.PIPE if input is not None else slave, start_new_session=True, **popen,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    try:
        stdout, _ = _communicate(proc, master, chunks, input, timeout)
    finally:
        os.close(master)
    raw = b"".join(chunks)
    ran = Ran(list(map(str, argv)), proc.returncode, stdout.decode("utf-8", errors="replace"), render(raw), raw)
    if not traceback_ok and "Traceback (most recent call last)" in ran.stderr:
        raise AssertionError(f"{ran.args} printed a traceback in the terminal:\n{ran.stderr}")
    return ran


def _communicate(proc: subprocess.Popen, master: int, chunks: list[bytes], input: str | None,
                 timeout: float | None) -> tuple[bytes, bytes]:
    """Wait for ``proc``, reading its terminal all along (a full terminal would block it)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if input is not None:
        proc.stdin.write(input.encode("utf-8"))
        proc.stdin.close()
    out: list[bytes] = []
    streams = {master: chunks, proc.stdout.fileno(): out}
    exited_at = None
    while streams:
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(proc.args, timeout)
        ready, _, _ = select.select(list(streams), [], [], 0.2)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: every writer of the terminal closed it
                data = b""
            if data:
                streams[fd].append(data)
            else:
                del streams[fd]
        if proc.poll() is not None:
            # A process it left behind (a cluster's worker) may hold the terminal open: once the
            # command is done, read what is there and stop.
            exited_at = exited_at or time.monotonic()
            if not ready and time.monotonic() - exited_at > 0.5:
                break
    proc.wait()
    return b"".join(out), b""
