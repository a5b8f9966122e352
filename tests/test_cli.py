"""The real command line, run as a subprocess."""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import torch
from conftest import ROOT, run_cli, sine, write_audio

from tagger import __version__

EXAMPLES = ROOT / "examples"
COMMANDS = [[], ["scan"], ["query"], ["show"], ["tags"], ["stats"], ["prune"], ["write"], ["tag"], ["models"],
            ["models", "info"], ["models", "convert-musicnn"], ["train"], ["evaluate"], ["learn"]]


def _run(*args, env: dict) -> subprocess.CompletedProcess:
    """run_cli with a changed environment (``None`` values remove a variable)."""
    full = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "tagger", *map(str, args)], capture_output=True, text=True,
                          env=full, timeout=300)


def _one_error_line(result, code=1):
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("tagger: error: "), result.stderr
    return lines[0]


def test_version_and_help():
    assert run_cli("--version").stdout.strip() == f"tagger {__version__}"
    result = run_cli("--help")
    assert result.returncode == 0 and "tag" in result.stdout and "models" in result.stdout


def test_tag_examples_table_and_json():
    result = run_cli("tag", EXAMPLES / "electronic-128bpm.ogg", "--top", "3")
    assert result.returncode == 0, result.stderr
    assert "techno" in result.stdout and "electronic" in result.stdout
    clips = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".ogg", ".flac", ".mp3"))
    result = run_cli("tag", *clips, "--json", "-n", "5")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert len(rows) == 3 and all(len(r["tags"]) == 5 for r in rows)
    assert list(by_name["electronic-128bpm.ogg"]["tags"])[0] == "techno"
    assert list(by_name["piano-arpeggio.flac"]["tags"])[0] == "piano"
    probs = list(by_name["piano-arpeggio.flac"]["tags"].values())
    assert probs == sorted(probs, reverse=True) and all(0 < p < 1 for p in probs)


def test_tag_with_other_model_and_chunks():
    result = run_cli("tag", EXAMPLES / "string-chords.mp3", "--json", "-m", "musicnn-mtt",
                     "--chunks", "2", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["model"] == "musicnn-mtt" and row["chunks"] == 2


def test_short_file_is_padded_not_fatal(tmp_path):
    path = write_audio(tmp_path / "blip.wav", sine(440.0, 0.4))
    result = run_cli("tag", path, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chunks"] == 1


def test_bad_inputs_get_one_line_and_exit_1(tmp_path):
    (tmp_path / "empty.flac").write_bytes(b"")
    (tmp_path / "random.mp3").write_bytes(np.random.default_rng(1).bytes(20000))
    (tmp_path / "dir.mp3").mkdir()
    cases = {tmp_path / "missing.ogg": "no such file", tmp_path / "empty.flac": "empty file",
             tmp_path / "random.mp3": "cannot decode audio", tmp_path / "dir.mp3": "is a folder with no audio files"}
    for path, message in cases.items():
        line = _one_error_line(run_cli("tag", path))
        assert str(path) in line and message in line


def test_good_results_survive_a_bad_file(tmp_path):
    (tmp_path / "bad.mp3").write_bytes(b"ID3 nonsense")
    result = run_cli("tag", tmp_path / "bad.mp3", EXAMPLES / "piano-arpeggio.flac", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["path"].endswith("piano-arpeggio.flac")
    assert "bad.mp3" in result.stderr


def test_bad_options(tmp_path):
    example = EXAMPLES / "piano-arpeggio.flac"
    assert "no such model file" in _one_error_line(run_cli("tag", example, "-m", "nope"))
    assert "--chunks" in _one_error_line(run_cli("tag", example, "--chunks", "zero"), code=2)
    evil = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, evil)
    assert "never unpickles" in _one_error_line(run_cli("tag", example, "-m", evil))
    if not torch.cuda.is_available():
        assert "CUDA is not available" in _one_error_line(run_cli("tag", example, "--device", "cuda"))


def test_models_list_and_info():
    result = run_cli("models")
    assert result.returncode == 0 and "musicnn-vgg-mtt" in result.stdout and "0.9030" in result.stdout
    rows = json.loads(run_cli("models", "--json").stdout)
    assert {r["name"] for r in rows} == {"musicnn-vgg-mtt", "musicnn-mtt", "musicnn-vgg-msd", "musicnn-msd"}
    assert {r["name"]: r["data"] for r in rows}["musicnn-msd"].startswith("MSD")
    assert {r["name"] for r in rows if r["default"]} == {"musicnn-vgg-mtt", "musicnn-vgg-msd"}
    info = json.loads(run_cli("models", "info", "musicnn-mtt", "--json").stdout)
    assert info["architecture"] == "MusiCNN" and len(info["tags"]) == 50 and len(info["sha256"]) == 64
    assert info["groups"]["female_vocals"] == ["female", "woman", "female vocal", "female voice"]
    text = run_cli("models", "info").stdout
    assert "musicnn-vgg-mtt" in text and "ISC" in text
    assert "no such model file" in _one_error_line(run_cli("models", "info", "/no/such.safetensors"))


def test_help_shows_choices_metavars_and_the_default_database(tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "TAGGER_DB": None, "COLUMNS": "200"}
    default_db = str(tmp_path / "data" / "tagger" / "library.db")
    # every command's help from one process (click's runner on the CLI's own command tree): 15
    # starts saved
    script = ("import json, sys\nfrom click.testing import CliRunner\nfrom tagger.cli import command\n"
              "cli, runner = command(), CliRunner()\n"
              "print(json.dumps([(r.exit_code, r.output) for r in (runner.invoke(cli, [*args, '--help'], "
              "prog_name='tagger') for args in json.loads(sys.argv[1]))]))")
    result = subprocess.run([sys.executable, "-c", script, json.dumps(COMMANDS)], capture_output=True, text=True,
                            env={k: v for k, v in {**os.environ, **env}.items() if v is not None}, timeout=300)
    assert result.returncode == 0, result.stderr
    helps = {" ".join(command): text for command, (code, text) in zip(COMMANDS, json.loads(result.stdout))}
    for command, (code, text) in zip(COMMANDS, json.loads(result.stdout)):
        assert code == 0, (command, text)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert not re.search(r"\{\w+\}", usage), usage  # typer's {paths}: the metavar, bare
        odd = re.findall(r"<(?:bool|str|int|float|path|list\[\w+\])[^>]*>", text)
        assert not odd, (command, odd)
        if "--db" in text:
            assert default_db in text, command
    assert "[table|json|jsonl|csv|m3u|paths]" in helps["query"] and "TAG" in helps["query"]
    assert "FILE|URL" in helps["query"]
    assert "auto|cpu|cuda|cuda:N" in helps["tag"] and "FILE..." in helps["tag"]
    assert "[MTT_vgg|MTT_musicnn|MSD_vgg|MSD_musicnn]" in helps["models convert-musicnn"]
    # and one --help as a person runs it, through the console script's entry point
    assert helps["query"].split("Usage:")[1].split("\n")[0].split(None, 1)[1] in _run("query", "--help", env=env).stdout


def test_convert_choices_are_the_converter_sources():
    from tagger.cli.models_cmd import MusicnnModel
    from tagger.model.convert.musicnn import SOURCES

    assert [m.value for m in MusicnnModel] == list(SOURCES)


def test_usage_errors_exit_2_on_one_line():
    example = EXAMPLES / "piano-arpeggio.flac"
    cases = [(["nosuch"], "nosuch"), (["query"], "--tag"), (["query", "-t", "rock", "-f", "xml"], "xml"),
             (["query", "-t", "rock", "--top", "many"], "--top"), (["show"], "FILE"),
             (["tag", example, "--chunks", "zero"], "--chunks"), (["tag", example, "--device", "gpu"], "gpu"),
             (["models", "info", "a", "b"], "b")]
    for args, word in cases:
        line = _one_error_line(run_cli(*args), code=2)
        assert word in line and "--help" in line, line
    # a valid command line whose values tagger cannot use is an error of tagger's: 1
    assert "no such model file" in _one_error_line(run_cli("tag", example, "-m", "nope"))


def test_interrupted_command_exits_130_without_traceback(tmp_path):
    path = write_audio(tmp_path / "a.wav", sine(440.0, 3.0))
    proc = subprocess.Popen([sys.executable, "-m", "tagger", "tag", *[path] * 400, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline()  # results are coming: the model is loaded
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err


def test_database_urls_without_their_driver_or_malformed_are_one_line():
    if importlib.util.find_spec("psycopg") is None:
        line = _one_error_line(run_cli("stats", "--db", "postgresql://tagger:s3cret@localhost/music"))
        assert "pip install 'tagger[postgres]'" in line and "postgresql://tagger:***@localhost/music" in line
        assert "s3cret" not in line
    cases = [("postgresql://tagger:s3cret@localhost:port/music", "not a valid database URL"),
             ("nosuch://x/y", "unknown kind of database 'nosuch'"),
             ("postgres://tagger:s3cret@localhost/music", "postgresql://")]
    for url, words in cases:
        line = _one_error_line(run_cli("query", "-t", "rock", "--db", url))
        assert words in line and "s3cret" not in line, line
