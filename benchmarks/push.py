"""Push latency to many watchers over replicas, two checkouts paired in one run.

    python benchmarks/push.py [--replicas 3] [--watchers 1000] [--rounds 5] [--pairs 2]
                              [--against DIR] [--aiohttp-watchers] [--poll S]

A route update answered by replica 1 reaches ``--watchers`` REST long-polls spread
round-robin over ``--replicas`` ``serve`` processes on one DynamoDB table (moto's
server, one request at a time; ``--replicas 0``: one process on SQLite). Each set-up
is started fresh and pushed to ``--rounds`` times; with ``--against DIR`` (another
checkout, e.g. ``git archive main | tar -x -C DIR``) the servers of DIR and of this
checkout take turns, ``--pairs`` times, so "before" and "after" share the machine's
load. Per round: p50/p99/max of the latency from the update's answer to each watcher's
new version, the median per replica, and the CPU ms (scheduler nanoseconds) the
servers and this process's watchers spent from the update to the last answer;
per set-up, the servers' and moto's CPU per second while nothing happens. Client and
servers share this machine's cores: a busy machine shows in every number.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from connected import cpu_seconds
from scale import percentile, push_rounds
from stores import ROOT, serve, start
from translation import raise_file_limit

from appmesh_api.dynamo import local_dynamodb_command
from appmesh_api.localports import free_port


def set_up(root: Path, tmp: Path, replicas: int, poll: str) -> tuple[list, list[str], int | None]:
    """(processes, endpoints, moto's pid or None) of fresh servers from ``root``."""
    if replicas == 0:
        process, endpoint = serve(tmp, root=root)
        return [process], [endpoint], None
    moto_port = free_port()
    moto = start(local_dynamodb_command(moto_port), moto_port, "moto", tmp / "moto.log")
    store = f"dynamodb://push?endpoint=http://127.0.0.1:{moto_port}&region=us-east-1"
    store += f"&poll={poll}" if poll else ""
    processes, endpoints = [moto], []
    for _ in range(replicas):
        process, endpoint = serve(tmp, "--store", store, "--create-table", root=root)
        processes.append(process)
        endpoints.append(endpoint)
    return processes, endpoints, moto.pid


def idle_cpu(pids: list[int], seconds: float = 2.0) -> float:
    """CPU ms per second the processes spend with nothing asked of them."""
    before = cpu_seconds(pids)
    time.sleep(seconds)
    return (cpu_seconds(pids) - before) * 1000 / seconds


def measure(root: Path, args: argparse.Namespace) -> list[dict]:
    """One fresh set-up from ``root``: ``--rounds`` pushes, a row per push."""
    with tempfile.TemporaryDirectory() as folder:
        processes, endpoints, moto = set_up(root, Path(folder), args.replicas, args.poll)
        servers = [p.pid for p in processes if p.pid != moto]
        try:
            rows = []
            runs = push_rounds(endpoints, servers, args.watchers, args.rounds, not args.aiohttp)
            idle = idle_cpu(servers), idle_cpu([moto] if moto else [])
            for run in runs:
                latencies = run["latencies"]
                replicas = len(endpoints)
                rows.append(
                    {
                        "p50": statistics.median(latencies),
                        "p99": run["p99"],
                        "max": max(latencies),
                        "by replica": [
                            statistics.median(latencies[i::replicas]) for i in range(replicas)
                        ],
                        "servers CPU": run["server_cpu"],
                        "watchers CPU": run["watcher_cpu"],
                        "idle": idle,
                    }
                )
            return rows
        finally:
            for process in reversed(processes):  # replicas before their DynamoDB
                process.terminate()
                process.wait(timeout=10)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def show(label: str, row: dict, at_load: str) -> None:
    replicas = " / ".join(f"{ms:.0f}" for ms in row["by replica"])
    print(
        f"{label:8} load {at_load:15} p50 {row['p50']:6.1f}  p99 {row['p99']:6.1f}  "
        f"max {row['max']:6.1f}  by replica {replicas:15}  CPU ms: servers "
        f"{row['servers CPU']:5.1f}, watchers {row['watchers CPU']:5.1f}",
        flush=True,
    )


def summary(label: str, rows: list[dict]) -> None:
    def median(name: str) -> float:
        return statistics.median(row[name] for row in rows)

    p99s = [row["p99"] for row in rows]
    idle_servers, idle_moto = rows[0]["idle"]
    print(
        f"{label:8} {len(rows)} pushes: median p50 {median('p50'):.1f}, median p99 "
        f"{median('p99'):.1f} (best {min(p99s):.1f}, p90 of rounds "
        f"{percentile(p99s, 0.9):.1f}) ms; servers' CPU per push {median('servers CPU'):.1f} ms,"
        f" watchers' {median('watchers CPU'):.1f} ms; idle: servers {idle_servers:.0f}, moto"
        f" {idle_moto:.0f} CPU ms/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3, help="0: one process on SQLite")
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="pushes per set-up")
    parser.add_argument("--pairs", type=int, default=2, help="set-ups per checkout")
    parser.add_argument("--against", type=Path, help="another checkout, run in turn with this")
    parser.add_argument("--aiohttp", action="store_true", help="long-poll with aiohttp")
    parser.add_argument("--poll", default="", help="the replicas' poll= (default: theirs)")
    args = parser.parse_args()
    raise_file_limit()
    roots = [("this", ROOT)] + ([("against", args.against.resolve())] if args.against else [])
    collected: dict[str, list[dict]] = {label: [] for label, _ in roots}
    for pair in range(args.pairs):
        for label, root in roots if pair % 2 == 0 else roots[::-1]:
            at_load = load()
            for row in measure(root, args):
                show(label, row, at_load)
                collected[label].append(row)
    print(f"\n{args.watchers} watchers, {args.replicas or 'SQLite, 1'} replica(s); load {load()}")
    for label, rows in collected.items():
        summary(label, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
