"""The benchmark's load generators: wrk, and a client of its own for streams.

Both time every request; the built-in client also times the first token of a stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

BODY = {"model": "gpt-4o-mini", "max_tokens": 50,
        "messages": [{"role": "user", "content": "Say hello in fifty words."}]}

@dataclass
class Run:
    requests: int
    seconds: float
    p50: float  # seconds
    p99: float
    mean: float | None = None
    ttft_p50: float | None = None
    ttft_mean: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def _pct(values: list, q: float) -> float:
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)]


_CONTENT = re.compile(rb'"content":"[^"]')  # a chunk with text, not the empty role chunk


def post(url: str, body: dict, headers: str = "") -> bytes:
    """An HTTP/1.1 POST of `body` as JSON to `url`, with extra header lines `headers`."""
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    return (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


async def read_answer(reader: asyncio.StreamReader, t0: float) -> float | None:
    """Read one HTTP/1.1 answer; return the seconds from t0 to its first text, if chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    first = None
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if length:  # a sized body
        await reader.readexactly(int(length.group(1)))
        return None
    data = b""  # chunked: the last chunk is empty; SSE data always ends in a newline
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        if first is None and _CONTENT.search(chunk):
            first = time.perf_counter() - t0
        data = data[-16:] + chunk
    return first


async def client_run(url: str, stream: bool, concurrency: int, duration: float) -> Run:
    """Load with this process's own client, timing every request and first token.

    HTTP/1.1 written and read by hand on keep-alive connections: aiohttp's client added
    about 0.7 ms of its own to each stream it timed, which hid how well the gateway's
    recorded duration and TTFT agree with what a client sees.
    """
    parts = urlsplit(url)
    request = post(url, {**BODY, "stream": stream})
    latencies, ttfts = [], []
    end = time.perf_counter() + duration

    async def worker():
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            writer.write(request)
            first = await read_answer(reader, t0)
            latencies.append(time.perf_counter() - t0)
            if stream:
                ttfts.append(first)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    return Run(len(latencies), seconds, _pct(latencies, 0.5), _pct(latencies, 0.99),
               statistics.fmean(latencies), _pct(ttfts, 0.5) if ttfts else None,
               statistics.fmean(ttfts) if ttfts else None)


def wrk_run(wrk: str, url: str, concurrency: int, duration: float, preexec=None) -> Run:
    """Load with wrk: a separate C process, so the client is never the bottleneck."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(BODY))}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
    try:
        out = subprocess.run([wrk, "-t1", f"-c{concurrency}", f"-d{max(round(duration), 1)}s",
                              "--latency", "-s", script.name, url], capture_output=True,
                             text=True, check=True, preexec_fn=preexec).stdout
    finally:
        os.unlink(script.name)
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0}

    def pct(q):
        value, unit = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * units[unit]

    value, unit = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out).groups()  # the average
    return Run(int(re.search(r"(\d+) requests in", out).group(1)), duration, pct(50), pct(99),
               float(value) * units[unit])
