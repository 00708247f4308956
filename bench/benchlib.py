"""Helpers shared by the worklist benchmarks (import_items.py, mwl.py): child processes with their
own resource usage, fresh instances and databases, and the sections of bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
# The shared harness: ../shared/bench from the repository root (two levels up from a worktree).
HARNESS = next((p / "shared" / "bench" for p in ROOT.parents if (p / "shared" / "bench").is_dir()), ROOT)
TIMEZONE = "Europe/Berlin"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def machine() -> str:
    system = f"{platform.machine()}, Linux {platform.release()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores, {system}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ris_env(instance: Path, database_url: str = "", **extra: str) -> dict[str, str]:
    """The environment of a ``ris`` command on the site in ``instance`` (SQLite there by default)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RIS_")}
    return env | {
        "RIS_INSTANCE_PATH": str(instance),
        "RIS_DATABASE_URL": database_url or f"sqlite:///{instance / 'ris.db'}",
        "RIS_TIMEZONE": TIMEZONE,
        **extra,
    }


def ris_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ris.cli", *args]


@dataclass(frozen=True)
class Finished:
    returncode: int
    wall_s: float
    max_rss_kb: int  # peak resident set of the child itself (not of earlier children)
    cpu_s: float
    output: str


def run_measured(command: list[str], env: dict[str, str], log: Path) -> Finished:
    """Run ``command`` to its end; wall time, and the child's own peak RSS and CPU (wait4)."""
    with log.open("w+b") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    return Finished(process.returncode, wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, output)


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"listener on port {port} exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout}s")


@contextmanager
def running(command: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run a listener (``env`` None: this process's environment) until the block ends (stopped with
    SIGTERM, by PID); yields its PID."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_listening(port, process)
            yield process.pid
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def postgres_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A fresh, empty database on the server of ``admin_url``; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def write_section(title: str, lines: list[str]) -> None:
    """Replace (or append) the section ``## title`` of bench/RESULTS.md."""
    heading = f"## {title}"
    section = "\n".join([heading, "", *lines, ""])
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    RESULTS.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def today() -> str:
    return dt.date.today().isoformat()
