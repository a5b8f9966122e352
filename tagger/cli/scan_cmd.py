"""``tagger scan PATH...``: tag a music library into the database."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
)
from rich.text import Text

from tagger.cli.common import DB_OPTION, db_path, parse_chunks, plural, stderr_console, stdout_console
from tagger.cli.write_cmd import FIELDS_OPTION, MIN_OPTION, TOP_OPTION
from tagger.engine.options import (DEFAULT_CHUNKS, DEFAULT_MODELS, PRECISIONS, RUNTIMES, SCAN_ENGINES,
                                   ScanOptions)
from tagger.errors import CommandLineError, UsageError

# tagger.scan (torch, the engine) and tagger.library.writer are imported when a scan runs, so that
# `tagger --help` and the commands that need no model start without torch


_ADDRESS = re.compile(r"(ray://)?([^\s:/\[\]]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}/?")  # host:port, [v6]:port


SETTLE_S = 5.0  # before this much of the scan has passed, a rate says more about batching than speed


def _average_rate(task) -> float | None:
    """Tracks per second since the scan began, once there is something to average: tracks are
    done a batch at a time, so a rate over the last moments (rich's) starts at thousands."""
    elapsed = task.elapsed or 0.0
    if elapsed < SETTLE_S or not task.completed:
        return None
    return task.completed / elapsed


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        rate = _average_rate(task)
        hours = task.fields.get("hours", 0.0)
        return Text(f"{hours:.2f} h audio  " + (f"{rate:.1f} tracks/s" if rate else "–  tracks/s"), style="cyan")


class _Eta(ProgressColumn):
    def render(self, task) -> Text:
        rate = _average_rate(task)
        if task.finished or task.total is None:
            return Text("")
        if not rate:
            return Text("-:--:--", style="progress.remaining")
        left = int((task.total - task.completed) / rate)
        return Text(f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}", style="progress.remaining")


def scan_command(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Folders (or files) to scan.", show_default=False),
    db: str = DB_OPTION,
    model: list[str] = typer.Option(list(DEFAULT_MODELS), "--model", "-m",
                                    help="Built-in model name or model file; repeat it to run several models "
                                         "on each file, decoded once (e.g. -m musicnn-vgg-mtt -m musicnn-vgg-msd: "
                                         "instruments and moods, and genres and decades). A model added later "
                                         "scores only the tracks it lacks."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, show_default=False,
                                   help="Chunks per model batch (default: 16 on OpenVINO, 64 on torch)."),
    workers: int = typer.Option(None, "--workers", min=0, show_default=False,
                                help="Decoding processes (default: from the CPU count); 0 decodes "
                                     "in the main process."),
    threads: int = typer.Option(None, "--threads", min=1, show_default=False,
                                help="CPU threads for the model (default: every core on the CPU, 1 with CUDA)."),
    chunks: str = typer.Option(str(DEFAULT_CHUNKS), "--chunks",
                               help="3 s chunks per track: N evenly spaced ones, or 'all'."),
    force: bool = typer.Option(False, "--force", help="Rescan every file, changed or not."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be scanned; change nothing."),
    hidden: bool = typer.Option(False, "--hidden", help="Also scan hidden files and folders."),
    runtime: str = typer.Option("auto", "--runtime",
                                help="What runs the model: auto (OpenVINO on the CPU, torch on CUDA), "
                                     "openvino, or torch (the fallback)."),
    compile: str = typer.Option("auto", "--compile",
                                help="With torch on the CPU: torch.compile the model: auto (for large scans), "
                                     "yes, no."),
    precision: str = typer.Option("auto", "--precision",
                                  help="auto (OpenVINO: int8 where the model's calibration keeps its tags, else "
                                       "fp32), fp32, int8 (OpenVINO), or fp16 autocast on CUDA (see "
                                       "benchmarks/RESULTS.md)."),
    engine: str = typer.Option("local", "--engine",
                               help="local: decode and score on this machine; ray: a Ray Data pipeline "
                                    "(needs pip install 'tagger\\[ray]').", show_default=True),
    ray_address: str = typer.Option(None, "--ray-address", show_default=False,
                                    help="With --engine ray: the cluster to join (host:port, ray://host:port "
                                         "or auto); default: a local Ray on this machine's cores."),
    ray_actors: int = typer.Option(None, "--ray-actors", min=1, show_default=False,
                                   help="With --engine ray: model actors (default: one per GPU, or one on "
                                        "a CPU-only cluster)."),
    ray_gpus: float = typer.Option(None, "--ray-gpus", min=0.0, show_default=False,
                                   help="With --engine ray: GPUs per model actor (default: 1 where the cluster "
                                        "has GPUs; 0 runs the model on CPUs)."),
    write_tags: bool = typer.Option(False, "--write-tags", help="Also write the top tags into each "
                                    "file's metadata (as 'tagger write'; undo with 'tagger write --undo')."),
    top: int = TOP_OPTION,
    min_prob: float = MIN_OPTION,
    fields: str = FIELDS_OPTION,
) -> None:
    """Tag every audio file under PATHS and store the results; rescans only touch what changed."""
    from tagger.scan import scan

    if compile not in ("auto", "yes", "no"):
        raise CommandLineError(None, f"--compile must be auto, yes or no, not {compile!r}")
    if precision not in PRECISIONS:
        raise CommandLineError(None, f"--precision must be {' or '.join(PRECISIONS)}, not {precision!r}")
    if runtime not in RUNTIMES:
        raise CommandLineError(None, f"--runtime must be {', '.join(RUNTIMES)}, not {runtime!r}")
    if engine not in SCAN_ENGINES:
        raise CommandLineError(None, f"--engine must be {' or '.join(SCAN_ENGINES)}, not {engine!r}")
    if engine != "ray":
        given = [name for name, value in (("--ray-address", ray_address), ("--ray-actors", ray_actors),
                                          ("--ray-gpus", ray_gpus)) if value is not None]
        if given:
            raise CommandLineError(None, f"{given[0]} needs --engine ray")
    elif workers is not None:
        raise CommandLineError(None, "--workers is for the local engine; with --engine ray the cluster's "
                               "free CPUs decode (Ray schedules the decode tasks)")
    elif ray_address is not None and ray_address != "auto" and not _ADDRESS.fullmatch(ray_address):
        raise CommandLineError(None, f"--ray-address must be host:port, ray://host:port or auto, not {ray_address!r}")
    options = ScanOptions(models=tuple(model), device=device, batch_size=batch_size, workers=workers, threads=threads,
                          chunks=parse_chunks(chunks), force=force, dry_run=dry_run,
                          include_hidden=hidden, compile=compile, precision=precision, runtime=runtime,
                          scan_engine=engine,
                          ray_address=ray_address, ray_actors=ray_actors, ray_gpus=ray_gpus,
                          verbose=bool(ctx.find_root().params.get("verbose")))
    _check_db_folder(db)
    writing = _TagWriting(top, min_prob, fields, force) if write_tags and not dry_run else None
    out, err = stdout_console(), stderr_console()
    interactive = err.is_terminal
    progress = Progress(SpinnerColumn(), TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                        _Rate(), _Eta(), console=err, transient=True,
                        disable=not interactive)
    task = None

    def on_plan(plan) -> None:
        nonlocal task
        for path, reason in plan.problems:
            err.print(f"skipped {escape(path)}: {escape(reason)}", style="yellow")
        if dry_run:
            for f in plan.todo:
                out.print(escape(f.path), soft_wrap=True)
        task = progress.add_task("scan", total=len(plan.todo), hours=0.0)

    def on_progress(p) -> None:
        if p.error and interactive:  # live, above the bar; the summary lists failures either way
            progress.console.print(f"failed {escape(p.path)}: {escape(p.error)}", style="red", soft_wrap=True)
        progress.update(task, completed=p.done, hours=p.audio_s / 3600)

    from tagger.store.db import db_exists, display_db

    new_db = not db_exists(db_path(db))
    terminated = []

    def on_sigterm(signum, frame) -> None:  # `timeout`, `kill`, a service stop: as Ctrl-C, with the summary
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with progress:
            summary = scan([str(p) for p in paths], db_path(db), options, on_progress, on_plan,
                           after_save=writing)
    finally:
        signal.signal(signal.SIGTERM, previous)
    _print_summary(out, summary, dry_run, writing.counts if writing else {})
    if new_db and not dry_run:  # a mistyped --db must not pass for the library unnoticed
        out.print(f"made a new database: {display_db(db_path(db))}", style="dim", soft_wrap=True)
    if writing is not None and summary.plan.unchanged and not summary.interrupted:
        n = summary.plan.unchanged
        out.print(f"--write-tags writes the tracks this scan scores; {plural(n, 'track')} scanned before "
                  f"{'was' if n == 1 else 'were'} left as {'it is' if n == 1 else 'they are'}: 'tagger write' "
                  "writes every scanned track", style="dim")
    for o in (writing.problems if writing else [])[:20]:
        err.print(f"tags not written: {o.status}: {escape(o.path)}: {escape(o.reason)}",
                  style="red" if o.status == "failed" else "yellow", soft_wrap=True)
    if summary.interrupted:
        print(f"tagger: {'terminated' if terminated else 'interrupted'}; "
              f"{summary.scanned + len(summary.failed)} tracks were saved. "
              "Run the same command again to continue.", file=sys.stderr)
        raise typer.Exit(143 if terminated else 130)


def _check_db_folder(db: str | None) -> None:
    """A --db (or TAGGER_DB) file in a folder that does not exist is a typo, not a new
    library: refused before anything is made (the default location's folders are made)."""
    if not db or "://" in db:
        return
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(db)))
    if not os.path.isdir(folder):
        raise UsageError(db, f"no folder {folder} for the database",
                         "check the path; to start a library there, make the folder first (mkdir -p)")


class _TagWriting:
    """The scan's second consumer: tags go into the files once their scores are stored, and
    the whole scan is one run for 'tagger write --undo'."""

    def __init__(self, top: int, min_prob: float, fields: str, force: bool) -> None:
        from tagger.library.writer import WriteOptions, parse_fields

        self.options = WriteOptions(top=top, min_prob=min_prob, fields=parse_fields(fields), force=force)
        self.run_id: int | None = None
        self.counts: dict[str, int] = {}
        self.problems: list = []  # FileOutcomes of files not written: named after the summary
        self.models: list | None = None  # the library's models, main first: read at the first commit

    def __call__(self, library, results) -> None:
        from tagger.library.writer import start_write_run, write_tracks

        if self.run_id is None:
            self.run_id = start_write_run(library, self.options)
            self.models = library.scored_models()
        rows = library.tracks_at([r.path for r in results])
        for outcome in write_tracks(library, rows, self.options, run_id=self.run_id, models=self.models):
            self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
            if outcome.status in ("failed", "skipped"):
                self.problems.append(outcome)


def _models_line(s, e) -> str:
    """``model NAME on DEVICE, RUNTIME PRECISION``, or each model's runtime where several ran."""
    if len(e.per_model) > 1:
        return (f"models {', '.join(f'{name} ({how})' for name, how in e.per_model.items())} on {e.device}")
    return f"model {s.model_name} on {e.device}, {e.runtime} {e.precision}"


def _print_summary(out, s, dry_run: bool, written: dict[str, int]) -> None:
    p, e = s.plan, s.engine_stats
    if dry_run:
        head = f"{len(p.todo)} would scan"
    elif s.interrupted:
        head = f"{s.scanned} of {len(p.todo)} to scan were scanned before the interruption"
    else:
        head = f"{s.scanned} scanned"
    out.print(f"{head} · new {p.new} · changed {p.changed} · unchanged {p.unchanged} · moved {len(p.moved)} · "
              f"missing {len(p.missing)} · failed {len(s.failed)}")
    if p.only:
        out.print(f"{plural(len(p.only), 'unchanged track')} lacked a model of this scan: decoded again and "
                  "scored by the models they lacked only", style="dim")
    if p.duplicates:
        out.print(f"merged {len(p.duplicates)} duplicate track{'s' if len(p.duplicates) > 1 else ''}: "
                  "files the database held under two paths (a symlink and its target) are one track each now")
    if s.metadata_read:
        out.print(f"read the file metadata (artist, title, …) of {plural(s.metadata_read, 'track')} scanned "
                  "before tagger kept it; their scores stay as they were")
    if s.done_by_others or s.left_to_others:
        out.print(f"other scanners of this database: {s.done_by_others} of the files planned here were stored "
                  f"by them, {s.left_to_others} were still theirs when this scan ended")
    if dry_run or not (s.scanned or s.failed):
        return
    t = max(s.elapsed_s, 1e-9)
    out.print(f"{s.audio_s / 3600:.2f} h of audio in {t:.1f} s: {(s.scanned + len(s.failed)) / t:.2f} tracks/s, "
              f"{s.audio_s / t:.0f}× real time · {_models_line(s, e)}"
              f"{' (compiled)' if e.compiled else ''}, {e.chunks} chunks, "
              f"{100 * e.model_s / t:.0f}% of the time in the model, {100 * e.wait_s / t:.0f}% waiting for "
              f"decoding ({plural(e.workers, 'worker')})")
    for note in e.notes:
        out.print(f"note: {escape(note)}", style="yellow")
    if e.workers_replaced:
        out.print(f"note: {e.workers_replaced} decoding process(es) died and were replaced; the files they "
                  "held are listed as failed", style="yellow")
    if written:
        out.print("tags written into files: " + " · ".join(f"{k} {v}" for k, v in written.items()))
    if e.compile_error:
        out.print(f"note: torch.compile was not used ({escape(e.compile_error)})", style="yellow")
    for path, reason in s.failed[:20]:
        out.print(f"  failed: {escape(path)}: {escape(reason)}", style="red", soft_wrap=True)
    if len(s.failed) > 20:
        out.print(f"  … and {len(s.failed) - 20} more (tagger stats lists them)")
