"""The Ray Data engine: the scan's decode → batch → run stages as a Ray Data pipeline, and its
aggregate stage here in the driver, so ``tagger.scan`` stores the results as they stream.

    file list ──▶ decode (CPU tasks, one file per block: ``decode.decode_events``)
              ──▶ rows (file, generation, chunk [T] | the file's end event)
              ──▶ run (``ModelActor`` pool: ``runner.ModelRunner``, batches of ``batch_size``)
              ──▶ the driver: ``aggregate.Aggregator`` → one ``TrackResult`` per file

A file's decode task sends its chunks as they are cut and then one end row carrying the
decode stage's own Done or Failed event (duration, format, fingerprint, chunk count,
metadata), which rides through the model stage untouched; a track is complete when its end
row said how many chunks there were and all of them have come back. A decoder fallback
(Restart) starts a new generation of the file's chunks: rows of an older one are ignored.

Failures cost one file: decode errors are the decode stage's Failed events; a decode task
that crashes or keeps failing is dropped by Ray Data (``max_errored_blocks``) and its file,
whose end row never came, is reported failed when the stream ends. Ctrl-C (or closing the
iterator) stops the job: the driver disconnects, which ends its tasks and actors.

Without ``ray_address`` a local Ray is started on this machine's cores and stopped after;
with one, the driver joins that cluster, whose workers need tagger and its model installed
(a built-in model name, or a model file at the same path on every worker node).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import re
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext

import numpy as np

from tagger.audio.decode import c_stderr_silenced
from tagger.audio.discover import FoundFile
from tagger.engine.aggregate import Aggregator
from tagger.engine.decode import decode_events
from tagger.engine.events import Chunks, Done, Failed, Restart
from tagger.engine.options import ScanOptions
from tagger.engine.results import EngineStats, ModelOutput, TrackResult, scored
from tagger.engine.runtime import DEFAULT_BATCH
from tagger.errors import TaggerError, UsageError

__all__ = ["RayEngineError", "score_files_ray"]

# a decode task reserves half a CPU: decoding needs a fraction of a core per track (RESULTS.md:
# the decode limit is ~5× the CPU scan rate), and a reservation unlike the model actor's keeps
# Ray Data from fusing decoding into the actors, which would serialise it behind the model
DECODE_CPUS = 0.5
PROBE_TIMEOUT_S = 3.0  # a cluster address that does not accept a connection in this long is down
MISSING = ("its results never came back from the Ray cluster (the task decoding or scoring it "
           "failed repeatedly); it was not stored, and the next scan tries it again")


class RayEngineError(TaggerError):
    """Ray is not installed, or the cluster cannot be reached or refuses the job."""


def score_files_ray(files: Sequence[FoundFile], model, options: ScanOptions,
                    stats: EngineStats | None = None) -> Iterator[TrackResult]:
    """Score ``files`` on a Ray cluster (``options.ray_address``; None: a local Ray on this
    machine) and yield one TrackResult per file, in the order they finish, like
    ``engine.score_files``. ``model``: anything with the model's ``card`` and ``embedding_size``
    (the card gives the audio format and the tag count); the actors load ``options.models[0]``
    themselves (one model a pass: the scan runs a pass per model), in torch (the OpenVINO runtime and int8 are the local engine's)."""
    if options.runtime == "openvino" or options.precision == "int8":
        raise UsageError(None, "the Ray engine runs the model in torch", "use --runtime auto and --precision auto, "
                         "fp32 or fp16 with --engine ray")
    options = dataclasses.replace(options, batch_size=options.batch_size or DEFAULT_BATCH["torch"],
                                  precision="fp32" if options.precision == "auto" else options.precision)
    ray = _import_ray(options.verbose)
    started = _connect(ray, options.ray_address, options.verbose)  # before the generator: a bad address fails at once
    return _stream(ray, started, files, model, options, stats if stats is not None else EngineStats())


@contextmanager
def ray_session(options: ScanOptions) -> Iterator[None]:
    """Ray started or joined for a whole scan, before the scan opens its database (a wrong
    address or a refused join leaves no database behind), and stopped after it; the scan's
    rounds of claimed files each run a pipeline on it."""
    ray = _import_ray(options.verbose)
    started = _connect(ray, options.ray_address, options.verbose)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _import_ray(verbose: bool = False):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no internet, and no reason to phone home
    if not verbose:
        # the driver's C++ core writes to our stderr, even at ERROR level for what is no error of
        # the scan (an actor's constructor arguments in the object store "and max_restarts > 0")
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayEngineError(None, "--engine ray needs Ray, which is not installed",
                             "pip install 'tagger[ray]'") from None
    # Ray's own loggers: quiet on the terminal (their log files keep everything), unless --verbose
    for name in ("ray", "ray.data", "ray.data._internal.execution.streaming_executor"):
        for handler in logging.getLogger(name).handlers:
            if "File" not in type(handler).__name__:
                handler.setLevel(logging.INFO if verbose else logging.CRITICAL)
    return ray


def _probe(address: str) -> None:
    """Fail in seconds, in one line, when nothing answers at ``host:port`` (ray.init would
    retry for a minute and print its own logs)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise RayEngineError(None, f"--ray-address {address!r} is not host:port, ray://host:port or 'auto'",
                             "e.g. --ray-address 10.0.0.5:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise RayEngineError(None, f"no Ray cluster answers at {address} ({e.strerror or e})",
                             "start one with 'ray start --head', or check the address") from None


def _connect(ray, address: str | None, verbose: bool = False) -> bool:
    """Join the cluster at ``address`` or start a local Ray → True if this call started Ray
    (and so must stop it). A Ray already running in this process is used as it is."""
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=True)
    if address is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        try:
            # "local": a new Ray of our own, never a cluster this machine last joined or started
            with nullcontext() if verbose else c_stderr_silenced():  # the C++ core's start-up lines
                ray.init(address="local", num_cpus=cpus, **quiet)
        except Exception as e:  # a full /tmp, no shared memory…
            raise RayEngineError(None, f"cannot start a local Ray: {_first_line(e)}",
                                 "or join a running cluster with --ray-address") from None
        return True
    if address != "auto":
        _probe(address)
    os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", "5")  # a port that answers but is not Ray
    # while it retries, the driver's C++ core logs a warning a second to our stderr
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        with nullcontext() if verbose else c_stderr_silenced():
            ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
    except Exception as e:  # ConnectionError, a version mismatch, a timeout, a missing token…
        hint = ("check the address, that the cluster runs the same Ray and Python, and, for a cluster "
                "with token authentication (Ray's default), RAY_AUTH_MODE=token and its RAY_AUTH_TOKEN")
        raise RayEngineError(None, f"cannot join the Ray cluster at {address}: {_first_line(e)}", hint) from None
    return True


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # Ray colours its messages
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def _tagger_error(e: BaseException) -> TaggerError | None:
    """The TaggerError a task of the cluster raised, wherever Ray wrapped it (RayTaskError.cause,
    chained exceptions), or None."""
    seen: set[int] = set()
    todo = [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, TaggerError) and type(x).__module__.startswith("tagger"):
            return x
        todo += [getattr(x, "cause", None), x.__cause__, x.__context__]
    return None


# --- the pipeline's stages, run on the cluster's workers -----------------------------------------

def _row_block(i: int, gen: int, chunks: np.ndarray, end: bytes | None = None) -> dict[str, np.ndarray]:
    n = len(chunks)
    return {"i": np.full(n, i, dtype=np.int64), "gen": np.full(n, gen, dtype=np.int64),
            "chunk": chunks.astype(np.float32, copy=False),
            "end": np.array([end or b""] * n, dtype=object)}


def decode_file(batch: dict[str, np.ndarray], sample_rate: int, chunk: int,
                n_chunks: int | None) -> Iterator[dict[str, np.ndarray]]:
    """Decode stage: one file (a block of one row: i, path, size, mtime_ns) → its chunk rows as
    they are cut, then its end row (the decode stage's Done or Failed event, pickled)."""
    for i, path, size, mtime in zip(batch["i"], batch["path"], batch["size"], batch["mtime_ns"]):
        f = FoundFile(str(path), int(size), int(mtime))
        gen = 0
        for event in decode_events(int(i), f, sample_rate, chunk, n_chunks):
            if isinstance(event, Chunks):
                yield _row_block(int(i), gen, event.block)
            elif isinstance(event, Restart):
                gen += 1
            elif isinstance(event, (Done, Failed)):
                # the end row needs a chunk of the column's shape; zeros, never scored
                yield _row_block(int(i), gen, np.zeros((1, chunk), np.float32), pickle.dumps(event))


class ModelActor:
    """Run stage: the model on batches of chunk rows; end rows pass through unscored.
    Out: i, gen, end, probs [n_tags], emb [E] per row, model_s (the batch's time, on its first
    row), and error: b"" or, on every row, the pickled TaggerError that stopped the actor from
    loading its model (a model file missing on that node, a device it lacks). The driver raises
    it as the one line it is; an actor whose constructor raised would be restarted by Ray, its
    traceback printed, and its reason lost behind "the actor died"."""

    def __init__(self, model_name: str, device: str, batch_size: int, threads: int | None,
                 compile_: bool, precision: str, n_tags: int, emb_size: int) -> None:
        self.n_tags, self.emb_size = n_tags, emb_size
        self.error = b""
        try:
            self._load(model_name, device, batch_size, threads, compile_, precision)
        except TaggerError as e:
            self.error = pickle.dumps(e)

    def _load(self, model_name: str, device: str, batch_size: int, threads: int | None, compile_: bool,
              precision: str) -> None:
        import torch

        from tagger.engine.inference import resolve_device
        from tagger.engine.runner import ModelRunner
        from tagger.model.modelfile import load_model

        dev = resolve_device(device)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        # as the local engine: on CPU the model gets every core (decoding needs a fraction of
        # one); on CUDA this process only feeds the GPU
        torch.set_num_threads(threads or (cores if dev.type == "cpu" else 1))
        model = load_model(model_name, dev)
        self.runner = ModelRunner(model, batch_size, compile=compile_, precision=precision)
        self.n_tags, self.emb_size = len(model.card.tags), model.embedding_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        is_chunk = np.array([not e for e in batch["end"]], dtype=bool)
        n = len(is_chunk)
        probs = np.zeros((n, self.n_tags), np.float32)
        embs = np.zeros((n, self.emb_size), np.float32)
        rows = np.flatnonzero(is_chunk) if not self.error else np.zeros(0, np.int64)
        size = self.runner.batch_size if not self.error else 1
        for start in range(0, len(rows), size):
            part = rows[start:start + size]
            probs[part], embs[part] = self.runner(np.ascontiguousarray(batch["chunk"][part], np.float32))
        model_s = np.zeros(n)
        if n:
            model_s[0] = time.perf_counter() - t0
        return {"i": batch["i"], "gen": batch["gen"], "end": batch["end"], "probs": probs, "emb": embs,
                "model_s": model_s, "error": np.array([self.error] * n, dtype=object)}


# --- the driver ----------------------------------------------------------------------------------

def _on_the_cluster(error: TaggerError) -> TaggerError:
    """A worker's TaggerError, saying where it happened."""
    return type(error)(error.path, f"{error.reason} (on the Ray cluster's worker)",
                       error.hint or "every node needs tagger, and the model at the same path")


def _actor_plan(ray, options: ScanOptions) -> tuple[int, float, str]:
    """→ (actors, GPUs per actor, the actors' device): one actor per GPU where the cluster has
    GPUs (``options.ray_gpus`` each), else ``options.ray_actors`` (default 1) CPU actors."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    per_actor = options.ray_gpus if options.ray_gpus is not None else (1.0 if gpus else 0.0)
    if per_actor > 0:
        if gpus < per_actor:
            raise RayEngineError(None, f"the Ray cluster has {gpus:g} GPUs; {per_actor:g} per model actor "
                                 "cannot be scheduled", "use --ray-gpus 0 to run the model on CPUs")
        actors = options.ray_actors or max(1, int(gpus // per_actor))
        device = options.device if options.device.startswith("cuda") else "cuda"
        return actors, per_actor, device
    device = "cpu" if options.device in ("auto", "cuda") else options.device
    return options.ray_actors or 1, 0.0, device


def _build(ray, files: Sequence[FoundFile], model, options: ScanOptions, actors: int, gpus: float,
           device: str):
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the scan's own progress is the one shown
    ctx.print_on_execution_start = False
    ctx.max_errored_blocks = -1  # a file whose task keeps crashing is dropped, and reported failed
    items = [{"i": i, "path": f.path, "size": f.size, "mtime_ns": f.mtime_ns} for i, f in enumerate(files)]
    compile_ = options.compile == "yes"  # each actor would compile again: only when asked
    return (ray.data.from_items(items, override_num_blocks=max(1, len(items)))
            .map_batches(decode_file, batch_size=1, batch_format="numpy", num_cpus=DECODE_CPUS,
                         fn_kwargs=dict(sample_rate=model.card.sample_rate, chunk=model.card.chunk_samples,
                                        n_chunks=options.chunks))
            .map_batches(ModelActor, batch_size=options.batch_size, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus, num_cpus=1,
                         fn_constructor_kwargs=dict(model_name=options.models[0], device=device,
                                                    batch_size=options.batch_size, threads=options.threads,
                                                    compile_=compile_, precision=options.precision,
                                                    n_tags=len(model.card.tags), emb_size=model.embedding_size)))


def _stream(ray, started: bool, files: Sequence[FoundFile], model, options: ScanOptions,
            stats: EngineStats) -> Iterator[TrackResult]:
    card = model.card
    try:
        actors, gpus, device = _actor_plan(ray, options)
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        stats.device = f"ray: {actors} × {device}"
        stats.workers = max(1, cluster_cpus - actors)  # CPUs left for decode tasks
        stats.threads = options.threads or 0
        stats.compiled = options.compile == "yes"
        stats.precision = options.precision
        dataset = _build(ray, files, model, options, actors, gpus, device)
        agg = Aggregator(len(card.tags), model.embedding_size)
        slot_of: dict[tuple[int, int], int] = {}  # (file, generation) → aggregator slot
        file_of: dict[int, int] = {}  # aggregator slot → file
        final_gen: dict[int, int] = {}  # file → the generation its end row named
        ends: dict[int, Done] = {}  # file → its Done event, while chunks are still out
        finished: set[int] = set()

        def slot(i: int, gen: int) -> int:
            key = (i, gen)
            if i in finished:
                return -1
            if key not in slot_of:
                if i in finished or final_gen.get(i, gen) != gen:
                    return -1  # a finished file, or an abandoned generation: ignored
                slot_of[key] = len(slot_of)
                file_of[slot_of[key]] = i
                agg.open(slot_of[key])
            return slot_of[key]

        def finish(i: int) -> TrackResult:
            finished.add(i)
            probs, emb, n = agg.pop(slot_of[(i, final_gen[i])])
            result = scored(files[i], ends.pop(i), [ModelOutput(probs, emb)], n)
            stats.chunks += result.chunks
            return result

        def on_end(i: int, gen: int, event: Done | Failed) -> Iterator[TrackResult]:
            if i in finished:  # a replayed task's second end row: the file has its one result
                return
            final_gen[i] = gen
            for (j, g), s in list(slot_of.items()):
                if j == i and g != gen:
                    agg.drop(s)
            if isinstance(event, Failed):
                finished.add(i)
                if (i, gen) in slot_of:
                    agg.drop(slot_of[(i, gen)])
                f = files[i]
                yield TrackResult(f.path, f.size, f.mtime_ns, error=event.reason)
                return
            ends[i] = event
            if agg.decoded(slot(i, gen), event.n_chunks):
                yield finish(i)

        batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1))
        try:
            while True:
                t0 = time.perf_counter()
                batch = next(batches, None)
                stats.wait_s += time.perf_counter() - t0
                if batch is None:
                    break
                failed = next((e for e in batch["error"] if e), None)
                if failed:  # the model actors could not load the model: nothing can be scored
                    raise _on_the_cluster(pickle.loads(failed))
                stats.model_s += float(batch["model_s"].sum()) / actors
                is_end = np.array([bool(e) for e in batch["end"]], dtype=bool)
                chunk_rows = np.flatnonzero(~is_end)
                if len(chunk_rows):
                    owners = np.array([slot(int(batch["i"][r]), int(batch["gen"][r])) for r in chunk_rows],
                                      dtype=np.int64)
                    for s in agg.add(owners, batch["probs"][chunk_rows], batch["emb"][chunk_rows]):
                        if file_of[s] in ends:
                            yield finish(file_of[s])
                for r in np.flatnonzero(is_end):
                    yield from on_end(int(batch["i"][r]), int(batch["gen"][r]), pickle.loads(batch["end"][r]))
        finally:
            close = getattr(batches, "close", None)
            if close:
                close()
        for i, f in enumerate(files):  # a dropped block: never lose a file silently
            if i not in finished:
                yield TrackResult(f.path, f.size, f.mtime_ns, error=MISSING, retry=True)
    except Exception as e:
        if isinstance(e, TaggerError) or not type(e).__module__.startswith("ray"):
            raise
        cause = _tagger_error(e)  # a task's own TaggerError, wrapped by Ray: shown as it is
        if cause is not None:
            raise _on_the_cluster(cause) from None
        raise RayEngineError(None, f"the Ray job failed: {_first_line(e)}",
                             "see the Ray logs (ray status; /tmp/ray/session_latest/logs)") from None
    finally:
        stats.device_busy_s = stats.model_s
        if started:
            ray.shutdown()  # ends the job's tasks and actors; a local Ray stops with it
