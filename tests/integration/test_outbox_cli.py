"""``ris outbox list|retry`` as a real process."""

from __future__ import annotations

from ris.db import repository as repo
from ris.domain.outbox import NewTask, TaskKind, TaskState
from ris.services import RisService
from ris.settings import Settings
from tests.support.processes import run_ris


def test_list_and_retry(settings: Settings, service: RisService) -> None:
    with service.db.transaction() as session:
        repo.insert_task(
            session, NewTask(TaskKind.IAN, "PACS_A", "ian:1.2.3:PACS_A", {"subject": "1.2.3"}), service.clock()
        )
    (task,) = service.claim_outbox_tasks(destinations=1, lease=60)
    service.fail_outbox_task(task.id, "association with PACS_A@127.0.0.1:104 rejected", retryable=False)

    listed = run_ris(settings, "outbox", "list", "--state", "FAILED")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.strip().startswith(str(task.id)))
    assert line.split()[1:5] == ["ian", "PACS_A", "FAILED", "1"]
    assert line.endswith("1.2.3")
    assert "last error: association with PACS_A@127.0.0.1:104 rejected" in listed.stdout

    retried = run_ris(settings, "outbox", "retry", str(task.id))
    assert retried.returncode == 0, retried.stderr
    assert service.list_outbox_tasks()[0].state is TaskState.PENDING

    service.claim_outbox_tasks(destinations=1, lease=60)
    service.complete_outbox_task(task.id)
    again = run_ris(settings, "outbox", "retry", str(task.id))
    assert again.returncode == 1
    assert "already sent" in again.stderr
    assert "not sent twice" in again.stderr
    assert run_ris(settings, "outbox", "retry", "999").returncode == 1
    assert service.list_outbox_tasks()[0].state is TaskState.SENT
