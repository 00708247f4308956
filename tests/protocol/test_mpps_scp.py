"""The MPPS SCP over real associations: a pynetdicom MPPS SCU against our AE (the same one that
serves the worklist) on an ephemeral port. The whole PS3.4 F.7 state machine matrix, step
statuses seen through C-FIND, unscheduled steps kept, and no success for what was not stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association
from sqlalchemy import text

from dimse.ae import DicomListener
from ris.domain.errors import NotFound
from ris.domain.model import Actor, OrderView
from ris.domain.mpps import MPPS_SOP_CLASS, MppsStatus
from ris.services import RisService
from ris.settings import Settings
from tests.support.dicom import OUR_AE, SCANNER, dicom_listener, find, worklist_query
from tests.support.mpps import n_create, n_set, reference_to, series, step_reference, with_values, without
from tests.support.orders import new_order

UID = "1.2.826.0.1.3680043.10.1474.6.1"
SUCCESS = 0x0000


@pytest.fixture
def listener(settings: Settings, service: RisService) -> Iterator[DicomListener]:
    with dicom_listener(settings, service) as running:
        yield running


@pytest.fixture
def order(service: RisService) -> OrderView:
    return service.schedule_order(new_order(), Actor("cli", "test"))


def _on_own_association(port: int, send: Callable[[Association], tuple[Dataset, Dataset | None]]) -> Dataset:
    """One request on an association of its own (as modalities do); the response status dataset."""
    ae = AE(ae_title=SCANNER)
    ae.add_requested_context(MPPS_SOP_CLASS)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    assoc = ae.associate("127.0.0.1", port, ae_title=OUR_AE)
    assert assoc.is_established
    try:
        status, _attributes = send(assoc)
    finally:
        assoc.release()
    assert "Status" in status, "no response"
    return status


def create(port: int, attributes: Dataset, uid: str | None = UID) -> Dataset:
    return _on_own_association(port, lambda assoc: assoc.send_n_create(attributes, MPPS_SOP_CLASS, uid))


def update(port: int, modification: Dataset, uid: str = UID) -> Dataset:
    return _on_own_association(port, lambda assoc: assoc.send_n_set(modification, MPPS_SOP_CLASS, uid))


def _sps_status(port: int, order: OrderView) -> list[str]:
    """What a scanner sees: the SPS status of the order's item in a C-FIND (final items hidden)."""
    result = find(port, worklist_query(AccessionNumber=order.order.accession_number))
    return result.sps_values("ScheduledProcedureStepStatus")


def test_a_step_through_its_life_as_the_worklist_shows_it(
    listener: DicomListener, service: RisService, order: OrderView
) -> None:
    assert _sps_status(listener.port, order) == ["SCHEDULED"]
    assert create(listener.port, n_create(reference_to(order))).Status == SUCCESS
    assert _sps_status(listener.port, order) == ["STARTED"]
    assert update(listener.port, n_set("COMPLETED", series(3))).Status == SUCCESS
    assert _sps_status(listener.port, order) == []
    assert service.get_mpps(UID).status is MppsStatus.COMPLETED
    assert [e.calling_ae for e in service.list_mpps_events(UID)] == [SCANNER, SCANNER]


def test_discontinued_leaves_the_worklist_too(listener: DicomListener, service: RisService, order: OrderView) -> None:
    create(listener.port, n_create(reference_to(order)))
    assert update(listener.port, n_set("DISCONTINUED")).Status == SUCCESS
    assert _sps_status(listener.port, order) == []
    assert service.get_order(order.id).steps[0].status == "DISCONTINUED"


@pytest.mark.parametrize("status", ["COMPLETED", "DISCONTINUED", "SCHEDULED"])
def test_n_create_must_be_in_progress(listener: DicomListener, service: RisService, status: str) -> None:
    answer = create(listener.port, n_create(PerformedProcedureStepStatus=status))
    assert answer.Status == 0x0106
    assert "PerformedProcedureStepStatus" in answer.ErrorComment
    with pytest.raises(NotFound):
        service.get_mpps(UID)


def test_a_known_instance_is_a_duplicate(listener: DicomListener, order: OrderView) -> None:
    assert create(listener.port, n_create(reference_to(order))).Status == SUCCESS
    assert create(listener.port, n_create(reference_to(order))).Status == 0x0111


@pytest.mark.parametrize(
    ("attributes", "code", "named"),
    [
        (without(n_create(), "PerformedStationAETitle"), 0x0120, "PerformedStationAETitle"),
        (without(n_create(), "ScheduledStepAttributesSequence"), 0x0120, "ScheduledStepAttributesSequence"),
        (n_create(PerformedProcedureStepID=""), 0x0121, "PerformedProcedureStepID"),
        (n_create(Modality=""), 0x0121, "Modality"),
        (n_create(PerformedProcedureStepStartDate="20261323"), 0x0106, "PerformedProcedureStepStartDate"),
        (n_create(with_values(step_reference(), StudyInstanceUID="1.2.abc")), 0x0106, "StudyInstanceUID"),
    ],
)
def test_missing_or_bad_type_1_attributes_at_n_create(
    listener: DicomListener, service: RisService, attributes: Dataset, code: int, named: str
) -> None:
    answer = create(listener.port, attributes)
    assert answer.Status == code
    assert named in answer.ErrorComment
    with pytest.raises(NotFound):
        service.get_mpps(UID)


def test_n_set_on_an_unknown_instance(listener: DicomListener) -> None:
    assert update(listener.port, n_set("COMPLETED", series())).Status == 0x0112


@pytest.mark.parametrize("final", ["COMPLETED", "DISCONTINUED"])
def test_n_set_after_the_end_may_no_longer_update(
    listener: DicomListener, service: RisService, order: OrderView, final: str
) -> None:
    create(listener.port, n_create(reference_to(order)))
    assert update(listener.port, n_set(final, series())).Status == SUCCESS
    answer = update(listener.port, n_set("COMPLETED", series()))
    assert answer.Status == 0x0110
    assert answer.ErrorID == 0xA710
    assert answer.ErrorComment.startswith("Performed Procedure Step Object may no longer be updated")
    assert len(service.list_mpps_events(UID)) == 2


@pytest.mark.parametrize(
    ("modification", "code"),
    [
        (n_set("COMPLETED"), 0x0121),  # no series
        (without(n_set("COMPLETED", series()), "PerformedProcedureStepEndTime"), 0x0121),  # sent empty at N-CREATE
        (n_set("COMPLETED", without(series(), "SeriesInstanceUID")), 0x0120),
        (n_set("FINISHED", series()), 0x0106),
        (n_set("COMPLETED", series(), PerformedProcedureStepEndDate="2026-11-23"), 0x0106),
    ],
)
def test_missing_or_bad_attributes_at_n_set(
    listener: DicomListener, service: RisService, order: OrderView, modification: Dataset, code: int
) -> None:
    create(listener.port, n_create(reference_to(order)))
    assert update(listener.port, modification).Status == code
    assert service.get_mpps(UID).status is MppsStatus.IN_PROGRESS
    assert _sps_status(listener.port, order) == ["STARTED"]


def test_an_unscheduled_step_is_kept_for_reconciliation(
    listener: DicomListener, service: RisService, order: OrderView
) -> None:
    assert create(listener.port, n_create(step_reference())).Status == SUCCESS
    assert update(listener.port, n_set("COMPLETED", series(2))).Status == SUCCESS
    assert [m.sop_instance_uid for m in service.list_unscheduled_mpps()] == [UID]
    assert _sps_status(listener.port, order) == ["SCHEDULED"]
    service.link_mpps(UID, order.steps[0].id, Actor("user", "anna"))
    assert _sps_status(listener.port, order) == []


def test_the_scp_makes_up_the_instance_uid_when_the_modality_sends_none(
    listener: DicomListener, service: RisService, order: OrderView
) -> None:
    answer = create(listener.port, n_create(reference_to(order)), uid=None)
    assert answer.Status == SUCCESS
    (stored,) = service.list_mpps()
    assert stored.sop_instance_uid.startswith("2.25.")
    assert update(listener.port, n_set("COMPLETED", series()), uid=stored.sop_instance_uid).Status == SUCCESS


def test_a_database_failure_is_never_answered_with_success(
    listener: DicomListener, service: RisService, order: OrderView
) -> None:
    with service.db.engine.begin() as connection:
        connection.execute(text("ALTER TABLE performed_step_events RENAME TO performed_step_events_away"))
    try:
        answer = create(listener.port, n_create(reference_to(order)))
    finally:
        with service.db.engine.begin() as connection:
            connection.execute(text("ALTER TABLE performed_step_events_away RENAME TO performed_step_events"))
    assert answer.Status == 0x0110
    with pytest.raises(NotFound):
        service.get_mpps(UID)
    assert _sps_status(listener.port, order) == ["SCHEDULED"]
