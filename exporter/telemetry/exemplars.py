"""Exemplars with --workers: each worker's in a file of its own, the newest served at scrape.

prometheus-client's multiprocess mode keeps every count in per-process mmap files (*.db)
but drops exemplars: its MmapedValue.set_exemplar does nothing (client_python issue 826).
Here a histogram given an ExemplarFile hands each bucket's exemplar, as Histogram.observe
makes it (labels checked against OpenMetrics' 128 characters, value, time), to a slot of
that bucket in this process's own exemplars_<pid>.bin in PROMETHEUS_MULTIPROC_DIR (a name
the collector's *.db glob leaves alone). WorkersCollector reads the *.db files as
MultiProcessCollector does and puts on each _bucket sample the newest exemplar any worker
wrote for it, a dead worker's included: its counts stay in the totals, and so may the
request behind one of them. The text format never shows them (exposition.render).

A slot is written in place at every observe, neither batched nor throttled: about 0.7 us
a write, measured, so 1.4-2.3 us for a streamed request's two (duration and TTFT) on top of
13-14 us for its metrics in multiprocess mode, and the newest exemplar is on disk at once.
A scrape reads a slot in about 3 us. A reader must not take half of a slot another process
is rewriting, so each slot is a seqlock: its sequence number is odd while it is written,
and a reader takes the slot only if it read the same even number before and after it. That
alone relies on the writer's stores being seen in order, as x86-64 sees them and a weakly
ordered CPU (ARM64; Python offers no memory barrier) need not: so the body also carries its
CRC-32, and a body that does not match it (torn, whatever the order its bytes were seen in)
is read again. _read_slot checks what it takes as prometheus-client would, so even a
damaged file cannot make the exposition invalid.
"""

from __future__ import annotations

import glob
import json
import math
import mmap
import os
import re
import struct
import zlib
from threading import Lock

import prometheus_client
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

# Exemplars name the request behind a latency: only ids that fit OpenMetrics' 128
# characters with room to spare and can be written as they are (a client's own
# X-Request-ID may be anything).
MAX_EXEMPLAR_ID = 64

_HEADER = struct.Struct("<I4x")  # bytes in use, header included; records follow
_KEY_LENGTH = struct.Struct("<I")
_SEQ = struct.Struct("<Q")
SLOT = 256  # sequence number, CRC-32 of the body, then the body: 8 + 4 + 244 bytes
_LABELS = 226  # OpenMetrics' 128 characters of names and values, ASCII, and their NULs
# Value, Unix time, length of the labels, then the labels: name NUL value [NUL name NUL value]
_BODY = struct.Struct(f"<ddH{_LABELS}s")
_CRC = struct.Struct("<I")
_pack_seq, _pack_body, _pack_crc = _SEQ.pack, _BODY.pack, _CRC.pack
_INITIAL_SIZE = 1 << 16  # ~150 buckets' slots (key ~160 bytes); doubled when full
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TRIES = 3  # a slot rewritten during three reads in a row is left out of this scrape


def exemplar_for(request_id: str) -> dict[str, str] | None:
    """The exemplar naming a request, if its id can be one."""
    if len(request_id) <= MAX_EXEMPLAR_ID and request_id.isascii() and request_id.isprintable():
        return {"request_id": request_id}
    return None


def worker_exemplars(env) -> ExemplarFile | None:
    """This process's ExemplarFile when it is one of --workers (prometheus-client in
    multiprocess mode: the supervisor sets PROMETHEUS_MULTIPROC_DIR for them alone)."""
    directory = env.get("PROMETHEUS_MULTIPROC_DIR")
    return ExemplarFile(directory) if directory else None


class ExemplarFile:
    """This process's exemplars: one slot per histogram bucket, made at its first exemplar."""

    def __init__(self, directory: str, pid: int | None = None):
        self.path = os.path.join(directory, f"exemplars_{pid or os.getpid()}.bin")
        self._f = open(self.path, "a+b")
        size = os.fstat(self._f.fileno()).st_size
        if size == 0:
            self._f.truncate(size := _INITIAL_SIZE)
        self.m = mmap.mmap(self._f.fileno(), size)
        self._used = _HEADER.unpack_from(self.m)[0] or _HEADER.size
        self.m[0:_HEADER.size] = _HEADER.pack(self._used)
        # A replacement worker given a dead one's pid carries on with its slots.
        self._slots = {key: pos for key, pos in _records(self.m, self._used)}
        self.lock = Lock()  # appending a slot is rare: made safe for threads, unlike a write

    def slot(self, name: str, labels: dict[str, str]) -> Slot:
        """Where the exemplars of one bucket (`labels` holding its `le`) go."""
        return Slot(self, _key(name, labels))

    def position(self, key: bytes) -> int:
        """The slot of `key`, appended to the file the first time."""
        pos = self._slots.get(key)
        if pos is None:
            start = self._used + _KEY_LENGTH.size
            pos = start + len(key) + (-(start + len(key)) % 8)  # slots 8-byte aligned
            end = pos + SLOT
            if end > len(self.m):
                size = len(self.m)
                while size < end:
                    size *= 2
                self._f.truncate(size)
                # The old map is left open for whoever still holds it (it maps the same
                # pages), and closed when the last holder lets it go.
                self.m = mmap.mmap(self._f.fileno(), size)
            self.m[self._used:start] = _KEY_LENGTH.pack(len(key))
            self.m[start:start + len(key)] = key
            self.m[pos:end] = bytes(SLOT)  # sequence number 0: no exemplar yet
            # Only now is the record counted, so a reader never sees it half made.
            self._used = end
            self.m[0:_HEADER.size] = _HEADER.pack(end)
            self._slots[key] = pos
        return pos


class Slot:
    """One bucket's exemplar in an ExemplarFile; `write` stands in for its set_exemplar."""

    __slots__ = ("file", "key", "pos", "seq")

    def __init__(self, file: ExemplarFile, key: bytes):
        self.file, self.key, self.pos, self.seq = file, key, -1, 0

    def write(self, exemplar: Exemplar) -> None:
        labels = exemplar.labels
        if len(labels) == 1:  # the gateway's one label: a third cheaper than the general join
            [(name, value)] = labels.items()
            text = f"{name}\0{value}"
        else:
            text = "\0".join([f"{k}\0{v}" for k, v in labels.items()])
        if text.count("\0") != 2 * len(labels) - 1 or len(data := text.encode()) > _LABELS:
            return  # a value holding a NUL could not be read back; one too long does not fit
        file = self.file
        if self.pos < 0:
            with file.lock:
                self.pos = file.position(self.key)
                seq = _SEQ.unpack_from(file.m, self.pos)[0]
                self.seq = seq + seq % 2  # odd: a worker of this pid died writing it
        # No lock here (0.2 us of the 0.8): Metrics is used from one thread, the event
        # loop's. Two threads writing one slot at once could at worst pair one's value with
        # the other's id, both of this bucket: a wrong link, never an invalid exposition.
        m, pos, seq = file.m, self.pos, self.seq + 2
        # Three copies (memcpy), never struct.pack_into: it zeroes its target first, and a
        # reader could take that 0 for a settled sequence number.
        body = _pack_body(exemplar.value, exemplar.timestamp, len(data), data)
        m[pos:pos + 8] = _pack_seq(seq - 1)  # odd: being written
        m[pos + 8:pos + SLOT] = _pack_crc(zlib.crc32(body)) + body
        m[pos:pos + 8] = _pack_seq(seq)
        self.seq = seq


class ExemplarHistogram(prometheus_client.Histogram):
    """prometheus-client's Histogram; given an ExemplarFile, its buckets' exemplars go there."""

    def __init__(self, *args, exemplars: ExemplarFile | None = None, **kwargs):
        self._exemplars = exemplars  # before super(), which makes the buckets
        super().__init__(*args, **kwargs)
        self._kwargs["exemplars"] = exemplars  # labels() makes each child with these

    def _metric_init(self) -> None:
        super()._metric_init()
        if self._exemplars is None:
            return
        names = (*self._labelnames, "le")
        for bound, bucket in zip(self._upper_bounds, self._buckets, strict=True):
            labels = dict(zip(names, (*self._labelvalues, floatToGoString(bound)), strict=True))
            # Histogram.observe validates the exemplar, then hands it to the bucket's value.
            bucket.set_exemplar = self._exemplars.slot(f"{self._name}_bucket", labels).write


def _key(name: str, labels: dict[str, str]) -> bytes:
    # JSON, not NUL-separated: a model name (a label value) is the client's and may hold one.
    return json.dumps([name, sorted(labels.items())]).encode()


def _records(m, used: int):
    """(key, slot position) of each record within the first `used` bytes."""
    pos = _HEADER.size
    while pos + _KEY_LENGTH.size <= used:
        length = _KEY_LENGTH.unpack_from(m, pos)[0]
        start = pos + _KEY_LENGTH.size
        slot = start + length + (-(start + length) % 8)
        if slot + SLOT > used:
            return
        yield bytes(m[start:start + length]), slot
        pos = slot + SLOT


def _read_slot(m, pos: int) -> Exemplar | None:
    """The slot's exemplar, if it has a settled one that OpenMetrics accepts."""
    for _ in range(_TRIES):
        seq = _SEQ.unpack_from(m, pos)[0]
        crc, body = _CRC.unpack_from(m, pos + 8)[0], m[pos + 12:pos + SLOT]
        if seq % 2 or _SEQ.unpack_from(m, pos)[0] != seq:
            continue  # being written: read it again
        if seq == 0:
            return None
        if zlib.crc32(body) != crc:
            continue  # torn: its bytes seen out of the order they were written in
        value, timestamp, length, data = _BODY.unpack(body)
        if not math.isfinite(timestamp):
            return None
        parts = data[:length].decode("utf-8", "replace").split("\0")
        labels = dict(zip(parts[::2], parts[1::2], strict=False))
        # Checked again as prometheus-client checked it, so that no file, however damaged,
        # can make the exposition invalid.
        if len(parts) % 2 or not all(map(_LABEL_NAME.fullmatch, labels)) or \
                sum(map(len, parts)) > 128 or len(labels) * 2 != len(parts):
            return None
        return Exemplar(labels, value, timestamp)
    return None


def read_exemplars(paths, keys: dict[bytes, tuple] | None = None) -> dict[tuple, Exemplar]:
    """The newest exemplar of each bucket, by (sample name, sorted labels), in these files;
    `keys` caches their keys parsed, from one scrape to the next."""
    newest: dict[tuple, Exemplar] = {}
    keys = {} if keys is None else keys
    if len(keys) > 100_000:  # label values are capped; this holds even if they were not
        keys.clear()
    for path in paths:
        try:
            f = open(path, "rb")
        except FileNotFoundError:  # the supervisor removes the directory as it stops
            continue
        with f:
            size = os.fstat(f.fileno()).st_size
            if size < _HEADER.size:
                continue
            with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as m:
                used = min(_HEADER.unpack_from(m)[0], size)
                for key, pos in _records(m, used):
                    exemplar = _read_slot(m, pos)
                    if exemplar is None:
                        continue
                    series = keys.get(key)
                    if series is None:  # JSON parsed at each scrape took 40% of its time
                        try:
                            name, labels = json.loads(key)
                            series = keys[key] = (name, tuple(map(tuple, labels)))
                        except (ValueError, TypeError):  # damaged: its other slots count
                            continue
                    found = newest.get(series)
                    if found is None or found.timestamp < exemplar.timestamp:
                        newest[series] = exemplar
    return newest


class WorkersCollector:
    """Every worker's metrics from the multiprocess files, with the newest exemplars."""

    def __init__(self, registry, path: str):
        self.path = path
        self.counts = MultiProcessCollector(None, path=path)
        self.keys: dict[bytes, tuple] = {}
        registry.register(self)

    def collect(self):
        exemplars = read_exemplars(glob.glob(os.path.join(self.path, "exemplars_*.bin")),
                                   self.keys)
        for metric in self.counts.collect():
            if metric.type == "histogram" and exemplars:
                metric.samples = [_with_exemplar(s, exemplars) for s in metric.samples]
            yield metric


def _with_exemplar(sample, exemplars):
    if not sample.name.endswith("_bucket"):
        return sample
    exemplar = exemplars.get((sample.name, tuple(sorted(sample.labels.items()))))
    # On the bucket it fell in (value <= le), as OpenMetrics requires, whatever a file says.
    if exemplar is None or not exemplar.value <= float(sample.labels["le"]):
        return sample
    return sample._replace(exemplar=exemplar)
