"""Running the ``ris`` command and waiting for servers, without sleeps."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ris.settings import Settings


def ris_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a ``ris`` child process needs to work on this test's site."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RIS_")}
    return (
        env
        | {
            "RIS_INSTANCE_PATH": str(settings.instance_path),
            "RIS_DATABASE_URL": settings.database_url,
            "RIS_TIMEZONE": settings.timezone,
            "RIS_SECRET_KEY": settings.secret_key,
        }
        | extra
    )


def run_ris(
    settings: Settings, *args: str, stdin: str | None = None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ris.cli", *args],
        input=stdin,
        env=ris_env(settings, **extra_env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def ris_process(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    """``ris ARGS`` running in the background (output collected); killed if the test leaves it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ris.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def stop_process(process: subprocess.Popen[str], stop_signal: int = signal.SIGTERM) -> str:
    """Send ``stop_signal`` and wait for the process to end; returns its output."""
    process.send_signal(stop_signal)
    output, _ = process.communicate(timeout=30)
    return output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns a true value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - test-owned localhost URL
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def path_exists(path: Path) -> bool:
    return path.exists()
