"""``ris serve`` on a fresh instance: it creates the database, answers /healthz and /metrics, stops on a signal."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ris.settings import Settings
from tests.support.processes import free_port, http_get, ris_env, ris_process, run_ris, stop_process, wait_until


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_everything_and_stops_cleanly(settings: Settings, tmp_path: Path, stop_signal: int) -> None:
    port, hl7_port = free_port(), free_port()
    instance = tmp_path / "fresh-instance"
    env = ris_env(
        settings,
        RIS_INSTANCE_PATH=str(instance),
        RIS_WEB_BIND=f"127.0.0.1:{port}",
        RIS_WEB_WORKERS="1",
        RIS_DICOM_PORT=str(free_port()),
        RIS_HL7_PORT=str(hl7_port),
        HOME=str(tmp_path / "home"),
    )
    if "sqlite" in settings.database_url:
        env.pop("RIS_DATABASE_URL")  # the embedded default: instance/ris.db, created at first start
    with ris_process(env, "serve") as server:
        # 503 until the listener process's first heartbeat, then 200: web and listeners both run.
        status, body = wait_until(
            lambda: (answer := http_get(f"http://127.0.0.1:{port}/healthz"))[0] == 200 and answer, what="/healthz"
        )
        assert status == 200
        assert b'"status":"ok"' in body
        assert b'"parts":{"dicom":true,"hl7":true,"outbox":true}' in body
        # The listener's counters reach gunicorn's worker (multiprocess mode).
        sent = run_ris(settings, "hl7", "send", "--sample", "--to", f"127.0.0.1:{hl7_port}")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        status, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert b'ris_hl7_messages_total{ack_code="AA"} 1.0' in metrics
        if "sqlite" in settings.database_url:
            assert (instance / "ris.db").exists()
            assert (instance / "secret_key").exists()
        output = stop_process(server, stop_signal)
    assert server.returncode == 0, output
    assert "created the first user 'admin' with the password " in output
    # gunicorn's control socket would sit in the home folder, shared by every site on the host.
    assert not (tmp_path / "home" / ".gunicorn").exists()
    with pytest.raises(AssertionError):
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz"), timeout=0.5, what="nothing")
