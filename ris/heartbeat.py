"""The listener process's sign of life for ``/healthz``: a small JSON file in the instance folder,
rewritten every few seconds with whether each listener (DICOM, HL7, outbox worker) is running, and
removed when the process stops. The web runs beside it on the same host (``ris serve``), so the
file is the cheapest check that is also true for the outbox worker, which has no port to probe."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

INTERVAL_SECONDS = 2.0
STALE_AFTER_SECONDS = 10.0  # five missed beats: the process is hung or was killed
FILE_NAME = "listener.json"


def heartbeat_path(instance_path: Path) -> Path:
    return instance_path / FILE_NAME


def write(instance_path: Path, parts: Mapping[str, bool], now: Callable[[], float] = time.time) -> None:
    path = heartbeat_path(instance_path)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"pid": os.getpid(), "at": now(), "parts": dict(parts)}), encoding="utf-8")
    os.replace(temporary, path)  # readers see the old beat or the new one, never half of one


def clear(instance_path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        heartbeat_path(instance_path).unlink()


@dataclass(frozen=True)
class ListenerStatus:
    state: str  # running, stale, stopped
    parts: dict[str, bool] = field(default_factory=dict)
    pid: int | None = None
    age_seconds: float | None = None

    @property
    def healthy(self) -> bool:
        return self.state == "running" and bool(self.parts) and all(self.parts.values())


def read(instance_path: Path, now: Callable[[], float] = time.time) -> ListenerStatus:
    try:
        beat = json.loads(heartbeat_path(instance_path).read_text(encoding="utf-8"))
        age = max(0.0, now() - float(beat["at"]))
        parts = {str(name): bool(alive) for name, alive in beat["parts"].items()}
        pid = int(beat["pid"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ListenerStatus("stopped")
    return ListenerStatus("stale" if age > STALE_AFTER_SECONDS else "running", parts, pid, round(age, 1))
