"""What the benchmarks share: starting and stopping their servers, reading a process's
CPU time and memory, pinning, and the machine's load while they ran.

Each benchmark starts real processes on 127.0.0.1 (nginx, proxies, upstreams) through one
``Processes``: every process is logged to the benchmark's temporary directory, waited for
on its port, optionally pinned to CPU 0 (the load generator takes CPU 1), and terminated
(then killed) when the benchmark ends, whatever happened.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from appmesh_api.localports import free_port, wait_for_port  # noqa: E402

__all__ = ["ROOT", "BenchPath", "Processes", "free_port", "wait_for_port"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    """The process's resident set (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as /proc/loadavg has them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def round_arguments(
    doc: str, duration: float, what: str, kind: type = int
) -> argparse.ArgumentParser:
    """The options every interleaved data-path benchmark takes: ``--duration`` of each
    load run (``what`` runs it), ``--rounds`` to take the median of, ``--no-pin``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--duration", type=kind, default=duration, help=f"seconds per {what} run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    return parser


def can_pin(no_pin: bool) -> bool:
    """Whether to pin the servers to CPU 0 and the load generator to CPU 1."""
    return not no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


def on_cpu(cpu: int, pin: bool) -> list[str]:
    return ["taskset", "-c", str(cpu)] if pin else []


class Processes:
    """The servers of one benchmark run; a context manager that stops them all."""

    def __init__(self, tmp: Path, pin: bool) -> None:
        self.tmp = tmp
        self.pin = pin
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        command: Sequence[str],
        port: int | None,
        env: Mapping[str, str] | None = None,
        timeout: float = 20,
        cwd: Path | None = None,
    ) -> int:
        """Start ``command`` (pinned to CPU 0 when pinning), wait for ``port``, return its pid."""
        name = f"{len(self.started)}-{Path(command[0]).name}"
        log = (self.tmp / f"{name}.out").open("wb")
        process = subprocess.Popen(
            [*on_cpu(0, self.pin), *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        self.started.append(process)
        if port is not None:
            wait_for_port(port, process, timeout=timeout)
        return process.pid

    def stop_last(self) -> None:
        """Stop the process started last (one that a round starts and ends)."""
        process = self.started.pop()
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for process in self.started:
            process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.started.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class BenchPath:
    """One way to reach the upstream: a port, the processes it adds, and its hop count."""

    name: str
    port: int
    pids: list[int] = field(default_factory=list)
    hops: int = 0
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.samples.setdefault(key, []).append(value)

    def median(self, key: str) -> float:
        return statistics.median(self.samples[key]) if self.samples.get(key) else float("nan")

    def ratio(self, key: str, base: BenchPath) -> float:
        """Median over rounds of this path's ``key`` over ``base``'s in the same round
        (pairs cancel the slow drifts a shared VM shows)."""
        pairs = zip(self.samples[key], base.samples[key], strict=True)
        return statistics.median(mine / theirs for mine, theirs in pairs)

    def added(self, key: str, base: BenchPath) -> float:
        """Median over rounds of (this path's ``key`` - ``base``'s) / hops."""
        pairs = zip(self.samples[key], base.samples[key], strict=True)
        return statistics.median((mine - theirs) / self.hops for mine, theirs in pairs)
