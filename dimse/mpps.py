"""Modality Performed Procedure Step SCP (1.2.840.10008.3.1.2.3.3): N-CREATE and N-SET.

A thin adapter: the data set goes to the service layer as DICOM JSON, which checks it against
PS3.4 F.7, keeps it, moves the linked scheduled steps and writes the outbox tasks in one
transaction; domain errors become statuses through dimse.status. pynetdicom enforces no MPPS
state machine of its own (DESIGN §8): all of it is in ris.domain.mpps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import dimse_primitives, evt

from dimse.ae import DicomService, Handler
from dimse.dicom_json import UnreadableDataset, to_json
from dimse.status import N_CREATE, N_SET, failure_status
from ris.domain.dicom_json import DicomJson
from ris.domain.errors import DomainError, FieldProblem, ValidationFailed
from ris.domain.ids import new_uid
from ris.domain.mpps import MPPS_SOP_CLASS
from ris.metrics import NO_METRICS, Metrics
from ris.services import RisService

log = logging.getLogger(__name__)

SUCCESS = 0x0000

Response = tuple[int | Dataset, Dataset | None]


class MppsService(DicomService):
    name = "mpps"
    sop_classes = (MPPS_SOP_CLASS,)

    def __init__(self, service: RisService, metrics: Metrics = NO_METRICS) -> None:
        self.service = service
        self.metrics = metrics

    def handlers(self) -> list[tuple[evt.EventType, Handler]]:
        return [
            (evt.EVT_N_CREATE, self._counted("N-CREATE", self.on_n_create)),
            (evt.EVT_N_SET, self._counted("N-SET", self.on_n_set)),
        ]

    def _counted(self, operation: str, handler: Callable[[evt.Event], Response]) -> Callable[[evt.Event], Response]:
        def counted(event: evt.Event) -> Response:
            status, answer = handler(event)
            self.metrics.mpps_event(operation, status if isinstance(status, int) else int(status.Status))
            return status, answer

        return counted

    def on_n_create(self, event: evt.Event) -> Response:
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        requested_uid = cast(dimse_primitives.N_CREATE, event.request).AffectedSOPInstanceUID
        # PS3.7 10.1.5: without an Affected SOP Instance UID the SCP makes one up and returns it.
        uid = str(requested_uid) if requested_uid else new_uid()
        try:
            self.service.record_mpps_create(uid, _attributes(event.attribute_list), calling_ae)
        except DomainError as exc:
            return _refused(N_CREATE, exc, uid, calling_ae)
        if requested_uid:
            return SUCCESS, None
        answer = Dataset()
        answer.AffectedSOPInstanceUID = uid
        return SUCCESS, answer

    def on_n_set(self, event: evt.Event) -> Response:
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        uid = str(cast(dimse_primitives.N_SET, event.request).RequestedSOPInstanceUID)
        try:
            self.service.record_mpps_set(uid, _attributes(event.modification_list), calling_ae)
        except DomainError as exc:
            return _refused(N_SET, exc, uid, calling_ae)
        return SUCCESS, None


def _attributes(dataset: Dataset) -> DicomJson:
    try:
        return to_json(dataset)
    except UnreadableDataset as exc:
        raise ValidationFailed([FieldProblem("dataset", str(exc))]) from exc


def _refused(operation: str, error: DomainError, uid: str, calling_ae: str) -> Response:
    status = failure_status(operation, error)
    log.warning(
        "mpps %s refused uid=%s calling_ae=%s status=0x%04X reason=%s",
        operation.lower(),
        uid,
        calling_ae,
        status.Status,
        error,
    )
    return status, None
