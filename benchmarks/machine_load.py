"""How busy the machine was while a benchmark ran: load average, and the CPU time other processes used.

On a shared 2-core machine other processes' CPU use changes timings (and multi-threaded torch is hit hardest:
an OpenMP region waits for a core another process holds), so every timed part records it next to its numbers.
"""
from __future__ import annotations

import os
import time


def _cpu_busy_seconds() -> float | None:
    """Seconds of CPU (all cores) spent not idle since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadProbe:
    """Start it before a measurement, `stop()` after: what else ran on the machine meanwhile."""

    def __init__(self):
        self.wall = time.perf_counter()
        self.busy = _cpu_busy_seconds()
        self.own = _own_cpu_seconds()
        self.loadavg = os.getloadavg()[0]

    def stop(self) -> dict:
        wall = time.perf_counter() - self.wall
        busy, own = _cpu_busy_seconds(), _own_cpu_seconds() - self.own
        out = {"cores": os.cpu_count(), "wall_s": round(wall, 2), "loadavg_1m_start": round(self.loadavg, 2),
               "loadavg_1m_end": round(os.getloadavg()[0], 2), "own_cores_busy": round(own / wall, 2)}
        if busy is not None and self.busy is not None and wall > 0:
            out["other_cores_busy"] = round(max(0.0, (busy - self.busy) - own) / wall, 2)
        return out


def describe(load: dict) -> str:
    other = f", other processes used {load['other_cores_busy']:.2f} of {load['cores']} cores" \
        if "other_cores_busy" in load else ""
    return (f"load average {load['loadavg_1m_start']:.2f} → {load['loadavg_1m_end']:.2f} (1 min){other}, "
            f"this benchmark {load['own_cores_busy']:.2f} cores, over {load['wall_s']:.0f} s")
