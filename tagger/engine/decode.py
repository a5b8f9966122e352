"""Stage 2, decode: each file's chunks as a stream of events, from worker processes.

A worker takes one file at a time (two queued), reads it with ``audio.ChunkReader`` and sends
its chunks on as they are cut, so its memory does not depend on the track's length; the main
process stops reading when its batches are full, and a worker then waits in ``send``. The
events of file i (``DecodeEvent``):

    Started(i)                        a worker began file i
    Chunks(i, block)                  block: float32 [k, chunk]
    Restart(i)                        forget file i's chunks so far (a decoder fell back)
    Done(i, duration_s, format, fingerprint, n_chunks, metadata)
    Failed(i, reason)                 the file could not be decoded, or the worker holding it
                                      died (OOM killer, a crash in a decoder library; a new
                                      worker takes over the rest)

Workers are fresh interpreters (``python -m tagger.engine.decode``) that import only this
module (numpy, soundfile, soxr, PyAV; never torch), so each costs tens of MB rather than a copy
of the main process, and none re-runs the caller's ``__main__`` as multiprocessing's spawn and
forkserver do. They talk over a socket pair, in their own session: Ctrl-C is the main
process's to handle, and a worker whose parent vanishes sees end-of-file and exits.
``workers=0`` decodes in the calling process, in order: the debug mode.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

from tagger.audio.decode import RESTART, ChunkReader
from tagger.audio.discover import FoundFile, fingerprint
from tagger.engine.events import Chunks, DecodeEvent, Done, Failed, PeakRss, Restart, Started
from tagger.errors import TaggerError
from tagger.files.tagfile import read_track_metadata

TASKS_PER_WORKER = 2  # one being decoded, one queued, so a worker never waits for the next name
# a worker with work that sends nothing for this long, while the scan waits on it, is taken
# for hung (a decoder stuck in a damaged file) and killed; the file it held fails. A block of
# audio decodes in well under a second; the longest silence of a healthy worker is counting
# the samples of a long file it cannot seek in (a 2-hour M4A: ~15 s here), hence ten minutes.
DECODE_TIMEOUT_S = float(os.environ.get("TAGGER_DECODE_TIMEOUT", "600"))
MAX_STARTUP_DEATHS = 3  # workers that die before their first word: something is badly wrong


def peak_rss() -> int:
    """This process's peak resident set size in bytes: VmHWM, which starts afresh at exec
    (getrusage's ru_maxrss would carry over the parent's peak from the fork)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def decode_events(index: int, f: FoundFile, sample_rate: int, chunk: int,
                  n_chunks: int | None) -> Iterator[DecodeEvent]:
    """The events of decoding one file (see the module docstring); never raises for the file."""
    yield Started(index)
    try:
        reader = ChunkReader(f.path, sample_rate, chunk, n_chunks)
        for block in reader:
            yield Restart(index) if block is RESTART else Chunks(index, block)
        yield Done(index, reader.duration_s, reader.format, fingerprint(f.path, f.size), reader.chunks,
                   read_track_metadata(f.path))
    except TaggerError as e:
        yield Failed(index, e.reason)
    except MemoryError:
        yield Failed(index, "out of memory while decoding")
    except Exception as e:  # a decoder's own failure, whatever its type: this file only
        yield Failed(index, f"{type(e).__name__}: {e}"[:300])


def _worker_main(conn: Connection, sample_rate: int, chunk: int, n_chunks: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:
        with open("/proc/self/comm", "w") as comm:  # visible in ps/top as what it is
            comm.write("tagger-decode")
    except OSError:
        pass
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        index, f = task
        try:
            for event in decode_events(index, f, sample_rate, chunk, n_chunks):
                if isinstance(event, (Done, Failed)):  # before it: the pool stops reading after the last file
                    conn.send(PeakRss(peak_rss()))
                conn.send(event)
        except OSError:  # the scan closed our socket: it is stopping
            return


@dataclass
class _Worker:
    process: subprocess.Popen
    conn: Connection
    assigned: deque = field(default_factory=deque)  # file indices sent, not yet finished
    current: int | None = None  # the file it is decoding now
    spoke: bool = False
    broken: bool = False  # a send to it failed: it is dead, its end-of-file is still to be read
    silent_s: float = 0.0  # time the scan has waited on it since its last message
    timed_out: bool = False


def _death_reason(process: subprocess.Popen) -> str:
    try:
        code = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-code}"
        hint = "; out of memory?" if -code == signal.SIGKILL else ""
        return f"the decoding process died while reading this file (killed by {name}{hint})"
    return f"the decoding process died while reading this file (exit status {code})"


def _start_worker(args: tuple) -> _Worker:
    try:
        return _spawn_worker(args)
    except OSError as e:  # too many processes or open files
        raise TaggerError(None, f"cannot start a decoding process: {e.strerror or e}",
                          "use fewer --workers, or --workers 0") from None


def _spawn_worker(args: tuple) -> _Worker:
    ours, theirs = socket.socketpair()
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # so a source checkout works too
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    sample_rate, chunk, n_chunks = args
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "tagger.engine.decode", str(theirs.fileno()), str(sample_rate), str(chunk),
             "all" if n_chunks is None else str(n_chunks)],
            pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return _Worker(process, Connection(ours.detach()))


class DecodePool:
    """Decodes ``files`` in ``workers`` processes; ``events()`` yields their events as they
    come (files finish out of order: a slow file never holds back the ones behind it)."""

    def __init__(self, files: Sequence[FoundFile], sample_rate: int, chunk: int, n_chunks: int | None,
                 workers: int) -> None:
        self.files, self.args = files, (sample_rate, chunk, n_chunks)
        self.todo: deque[int] = deque(range(len(files)))
        self.workers: list[_Worker] = []
        self.peak_rss = 0
        self.replaced = 0
        self._startup_deaths = 0
        try:
            for _ in range(min(workers, len(files))):
                self.workers.append(_start_worker(self.args))
        except BaseException:
            self.close()
            raise

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers]

    def _top_up(self) -> None:
        for depth in range(1, TASKS_PER_WORKER + 1):  # round-robin: every worker busy before any queues
            for w in self.workers:
                if not self.todo:
                    return
                if len(w.assigned) >= depth or w.broken:
                    continue
                i = self.todo.popleft()
                try:
                    w.conn.send((i, self.files[i]))
                except OSError:  # it died: reading its end-of-file replaces it
                    self.todo.appendleft(i)
                    w.broken = True
                    continue
                w.assigned.append(i)

    def events(self) -> Iterator[DecodeEvent]:
        while self.todo or any(w.assigned or w.broken for w in self.workers):
            self._top_up()
            by_conn = {w.conn: w for w in self.workers if w.assigned or w.broken}
            t0 = time.monotonic()
            ready = wait(list(by_conn), timeout=min(5.0, DECODE_TIMEOUT_S))
            self._watch([w for c, w in by_conn.items() if c not in ready], time.monotonic() - t0)
            for conn in ready:
                w = by_conn[conn]
                try:
                    event = conn.recv()
                except (EOFError, OSError):
                    yield from self._replace(w)
                    continue
                w.spoke, w.silent_s = True, 0.0
                if isinstance(event, PeakRss):
                    self.peak_rss = max(self.peak_rss, event.bytes)
                    continue
                if isinstance(event, Started):
                    w.current = event.file
                elif isinstance(event, (Done, Failed)):
                    w.assigned.remove(event.file)
                    w.current = None
                yield event

    def _watch(self, silent: list[_Worker], waited: float) -> None:
        """Time only counts while the scan waits on a worker (not while it runs batches and the
        worker is held up by back-pressure); one with work that is silent too long is killed,
        and its end-of-file then replaces it like any death (the file it held fails)."""
        for w in silent:
            w.silent_s += waited
            if w.assigned and w.silent_s > DECODE_TIMEOUT_S and not w.timed_out:
                w.timed_out = True
                w.process.kill()

    def _replace(self, w: _Worker) -> Iterator[Failed]:
        """A worker died: the file it held fails, its queued files go to the others."""
        reason = (f"decoding this file stopped answering for {DECODE_TIMEOUT_S:.0f} s and was stopped "
                  "(a decoder stuck in a damaged file?)" if w.timed_out else _death_reason(w.process))
        if w.timed_out:
            w.process.wait()
        w.conn.close()
        if not w.spoke:
            self._startup_deaths += 1
            if self._startup_deaths >= MAX_STARTUP_DEATHS:
                raise TaggerError(None, f"decoding processes cannot start ({reason.split('(')[-1].rstrip(')')})",
                                  "try --workers 0")
        held = w.current if w.current is not None else None
        queued = [i for i in w.assigned if i != held]
        self.todo.extendleft(reversed(queued))
        self.workers[self.workers.index(w)] = _start_worker(self.args)
        self.replaced += 1
        if held is not None:
            yield Failed(held, reason)

    def close(self) -> None:
        """Stop every worker: an idle one reads end-of-file and exits; one blocked sending a
        block gets a broken pipe. Whatever still runs after a shared second is killed."""
        for w in self.workers:
            w.conn.close()
        deadline = time.monotonic() + 1.0
        for w in self.workers:
            try:
                w.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
        self.workers = []


class InlineDecoder:
    """``workers=0``: the same events, decoded in this process one file after another."""

    def __init__(self, files: Sequence[FoundFile], sample_rate: int, chunk: int, n_chunks: int | None) -> None:
        self.files, self.args = files, (sample_rate, chunk, n_chunks)
        self.peak_rss = 0
        self.replaced = 0

    def pids(self) -> list[int]:
        return []

    def events(self) -> Iterator[DecodeEvent]:
        for i, f in enumerate(self.files):
            yield from decode_events(i, f, *self.args)

    def close(self) -> None:
        pass


def start_decoding(files: Sequence[FoundFile], sample_rate: int, chunk: int, n_chunks: int | None,
                   workers: int) -> DecodePool | InlineDecoder:
    if workers == 0:
        return InlineDecoder(files, sample_rate, chunk, n_chunks)
    return DecodePool(files, sample_rate, chunk, n_chunks, workers)


def default_workers(device_type: str) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device_type == "cuda":  # the GPU outruns decoding: decode on every core but one
        return max(1, min(32, cpus - 1))
    # on CPU, with OpenVINO int8, decoding is a third of a track's time: on 2 cores one worker
    # left the model waiting 28–34 % of the scan, two made it 17–25 % faster (RESULTS.md, "CPU
    # runtime"); the model's threads and the workers share the cores
    if cpus == 1:
        return 1
    return min(4, max(2, cpus // 2))


if __name__ == "__main__":  # a decode worker: python -m tagger.engine.decode FD RATE CHUNK N|all
    _fd, _rate, _chunk, _n = sys.argv[1:5]
    _worker_main(Connection(int(_fd)), int(_rate), int(_chunk), None if _n == "all" else int(_n))
