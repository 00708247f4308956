"""The listener's heartbeat file as /healthz reads it: fresh, stale, a part down, missing or torn."""

from __future__ import annotations

from pathlib import Path

from ris import heartbeat

ALL_UP = {"dicom": True, "hl7": True, "outbox": True}


def test_a_fresh_beat_with_every_part_running_is_healthy(tmp_path: Path) -> None:
    heartbeat.write(tmp_path, ALL_UP, now=lambda: 1000.0)
    status = heartbeat.read(tmp_path, now=lambda: 1001.5)
    assert status.state == "running"
    assert status.healthy
    assert status.age_seconds == 1.5
    assert status.parts == ALL_UP


def test_an_old_beat_is_stale(tmp_path: Path) -> None:
    heartbeat.write(tmp_path, ALL_UP, now=lambda: 1000.0)
    status = heartbeat.read(tmp_path, now=lambda: 1000.0 + heartbeat.STALE_AFTER_SECONDS + 0.5)
    assert status.state == "stale"
    assert not status.healthy


def test_a_part_that_stopped_makes_it_unhealthy(tmp_path: Path) -> None:
    heartbeat.write(tmp_path, ALL_UP | {"outbox": False}, now=lambda: 1000.0)
    status = heartbeat.read(tmp_path, now=lambda: 1000.0)
    assert status.state == "running"
    assert not status.healthy


def test_no_file_or_a_broken_one_means_stopped(tmp_path: Path) -> None:
    assert heartbeat.read(tmp_path).state == "stopped"
    heartbeat.heartbeat_path(tmp_path).write_text('{"pid": 1, "at": ', encoding="utf-8")
    assert heartbeat.read(tmp_path).state == "stopped"
    heartbeat.write(tmp_path, ALL_UP)
    heartbeat.clear(tmp_path)
    heartbeat.clear(tmp_path)  # twice is fine: a listener that never wrote one stops cleanly too
    assert not heartbeat.read(tmp_path).healthy
