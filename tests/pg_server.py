"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster listening on
127.0.0.1 only at a free port, started once per test run by whichever process needs it first
(pytest-xdist workers share it) and stopped at the run's end.

initdb and postgres refuse to run as root (CI runs as root), so there they run as the
``postgres`` system user that Debian's package creates.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "tagger-test-pw"
USER = "tagger"


def server_bin() -> Path | None:
    """The folder with initdb and pg_ctl (Debian: /usr/lib/postgresql/N/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    bin: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres", user: str = USER, password: str = PASSWORD) -> str:
        return f"postgresql+psycopg://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                                      f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                                      "--locale=C.UTF-8"),
                       check=True, capture_output=True)
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        subprocess.run(self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-w",
                                      "-t", "60", "-l", str(self.root / "log"), "start"),
                       check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                      "-w", "stop"), capture_output=True)

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_server() -> tuple[PostgresServer | None, str | None]:
    """(server, None), or (None, why the PostgreSQL tests skip)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed: pip install -e '.[test]'"
    bin_dir = server_bin()
    if bin_dir is None:
        return None, "PostgreSQL server binaries not found: apt-get install postgresql"
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        return None, "running as root and there is no 'postgres' user to run the server as"
    root = Path(tempfile.mkdtemp(prefix="tagger-pg-"))
    os.chmod(root, 0o755)
    server = PostgresServer(bin_dir, root / "cluster", _free_port())
    try:
        server.start()
    except subprocess.CalledProcessError as e:
        log = (server.root / "log")
        detail = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
        if log.is_file():
            detail = log.read_text(errors="replace").strip().splitlines()[-1:] or detail
        shutil.rmtree(root, ignore_errors=True)
        return None, f"PostgreSQL did not start: {detail[0]}"
    _wait_ready(server)
    return server, None


def _wait_ready(server: PostgresServer, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(host="127.0.0.1", port=server.port, user=USER, password=PASSWORD,
                            dbname="postgres", connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def remove(server: PostgresServer) -> None:
    server.stop()
    shutil.rmtree(server.root.parent, ignore_errors=True)


def shared_server(shared: Path) -> tuple[PostgresServer | None, str | None]:
    """The server of this test run, started here if no process of the run has started it
    (or found it cannot start) yet; the answer is kept in ``shared`` for the others."""
    shared.mkdir(parents=True, exist_ok=True)
    info = shared / "postgres.json"
    with open(shared / "postgres.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process starts it; the others wait, then read
        if info.is_file():
            known = json.loads(info.read_text())
            if known.get("why"):
                return None, known["why"]
            return PostgresServer(Path(known["bin"]), Path(known["root"]), int(known["port"])), None
        server, why = start_server()
        info.write_text(json.dumps({"why": why} if server is None else
                                   {"bin": str(server.bin), "root": str(server.root), "port": server.port}))
        return server, why


def stop_shared(shared: Path) -> None:
    """Stop and remove the run's server, if a process started one."""
    info = shared / "postgres.json"
    if info.is_file():
        known = json.loads(info.read_text())
        if not known.get("why"):
            remove(PostgresServer(Path(known["bin"]), Path(known["root"]), int(known["port"])))
