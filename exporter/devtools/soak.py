"""`python -m exporter.devtools.soak`: the gateway's memory over a long run (`make soak`).

The benchmark's setup (simulated upstream, gateway with fees and history, on cores of their
own) takes 400,000 requests: streamed and not, over 40 models and 300 keys, every request
with an id of its own and a history row. The gateway's resident memory is read at each
checkpoint. What grows with traffic (label values, the model names reported, the jobs
ledger) is bounded, so it must level off.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from urllib.parse import urlsplit

from .bench import Bench, memory_mb
from .load import BODY, post, read_answer

CHECKPOINTS = (0, 100_000, 200_000, 300_000, 400_000)


def requests_for(url: str, models: int = 40, keys: int = 300) -> list[bytes]:
    """Requests cycling through the models and keys, every other one streamed."""
    return [post(url, {**BODY, "model": f"soak-model-{i % models}", "stream": i % 2 == 0},
                 f"Authorization: Bearer sk-soak-{i % keys:04d}\r\n")
            for i in range(models * keys)]


async def soak(url: str, pid: int, checkpoints=CHECKPOINTS, concurrency: int = 32,
               out=print) -> list[tuple[int, float]]:
    """Send max(checkpoints) requests; return (requests sent, RSS in MB) at each checkpoint."""
    parts = urlsplit(url)
    requests = requests_for(url)
    total, sent, due = max(checkpoints), 0, list(checkpoints)
    figures: list[tuple[int, float]] = []
    started = time.monotonic()

    def check() -> None:
        while due and sent >= due[0]:
            figures.append((due.pop(0), memory_mb(pid, "VmRSS")))
            out(f"{figures[-1][0]:>9,} requests: gateway RSS {figures[-1][1]:.1f} MB "
                f"({time.monotonic() - started:.0f} s)")

    async def worker() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while sent < total:
            request = requests[sent % len(requests)]
            sent += 1
            writer.write(request)
            await read_answer(reader, time.perf_counter())
            check()
        writer.close()

    check()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporter.devtools.soak",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=CHECKPOINTS[-1],
                        help="requests in all, RSS read at each quarter (default 400000)")
    args = parser.parse_args(argv)
    bench = Bench(duration=1.0, repetitions=1, use_wrk=False)
    _, url, pid, _ = bench.start()
    try:
        bench.measure(url, False, 8)  # warm up: connections, caches, the price table
        points = tuple(args.requests * q // 4 for q in range(5))
        figures = asyncio.run(soak(url, pid, points))
        grown = figures[-1][1] - figures[len(figures) // 2][1]
        print(f"second half: {grown:+.1f} MB over {points[-1] - points[2]:,} requests")
    finally:
        bench.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
