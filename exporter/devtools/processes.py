"""The benchmark's processes: free ports, waiting for them to open, CPU and memory from /proc.

Every target runs in a process of its own so its CPU time is read exactly, whatever the
load generator does in the meantime.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    """Return once something accepts connections on the port; fail at once if `proc`, which
    was to open it, exited (nginx refusing its configuration, say)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with status {proc.returncode} "
                                   f"before opening port {port}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {port} never opened") from None
            time.sleep(0.05)  # waiting for a process this command started


def _stat(pid: int) -> list[str]:
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()


def family(pid: int) -> list[int]:
    """A gateway process and, with --workers, its worker processes."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat(int(entry))[1]) == pid:
                    pids.append(int(entry))
            except (OSError, IndexError):
                continue
    return pids


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (a gateway's workers), user and system."""
    total = 0
    for p in family(pid):
        fields = _stat(p)
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """Memory summed over a gateway's processes: peak resident (VmHWM), or resident now
    (VmRSS)."""
    total = 0
    for p in family(pid):
        for line in open(f"/proc/{p}/status"):
            if line.startswith(field):
                total += int(line.split()[1])
    return total / 1024
