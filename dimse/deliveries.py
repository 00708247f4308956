"""Outbox deliveries over DICOM (ports of ris.outbox): Instance Availability Notifications and
MPPS forwards, each an N-CREATE or N-SET on an association of its own.

Success and warning statuses confirm a task. So do two answers to a re-send after the worker
stopped between the destination's confirmation and recording it:

- 0111 (duplicate SOP instance) to an N-CREATE: an IAN task has a SOP Instance UID of its own, a
  forwarded N-CREATE the modality's, so the destination already holds exactly this instance;
- 0110 (processing failure) to a forwarded N-SET that ends the step, when an earlier attempt of
  this task is unresolved: forwards of a step go in order, so the step at the destination can only
  have become final through that attempt ("may no longer be updated").

Every other failure status, a refused association and a missing answer are retried by the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydicom.dataset import Dataset
from pynetdicom.association import Association

from dimse.dicom_json import from_json
from dimse.scu import Peer, PeerUnavailable, Response, association, response
from ris.domain.model import AeRole
from ris.domain.mpps import IAN_SOP_CLASS, MPPS_SOP_CLASS, MppsStatus, status_of
from ris.domain.outbox import OutboxTask
from ris.outbox import DeliveryFailed
from ris.services import RisService

log = logging.getLogger(__name__)

DUPLICATE_SOP_INSTANCE = 0x0111
PROCESSING_FAILURE = 0x0110


def _n_create(assoc: Association, dataset: Dataset, sop_class: str, sop_instance_uid: str) -> Dataset:
    status, _attributes = assoc.send_n_create(dataset, sop_class, sop_instance_uid)
    return status


def _n_set(assoc: Association, dataset: Dataset, sop_class: str, sop_instance_uid: str) -> Dataset:
    status, _attributes = assoc.send_n_set(dataset, sop_class, sop_instance_uid)
    return status


class _DicomDelivery:
    role: AeRole

    def __init__(self, service: RisService, calling_ae: str, timeout: float) -> None:
        self.service = service
        self.calling_ae = calling_ae
        self.timeout = timeout

    def _peer(self, task: OutboxTask) -> Peer:
        ae = self.service.get_remote_ae(task.destination)
        if ae is None or self.role not in ae.roles:
            raise DeliveryFailed(f"{task.destination} is no longer a remote AE with role {self.role}", retryable=False)
        return Peer(ae.ae_title, ae.host, ae.port)

    def _send(
        self,
        task: OutboxTask,
        sop_class: str,
        operation: str,
        dataset: Dataset,
        sop_instance_uid: str,
        already_there: Callable[[Response], bool],
    ) -> None:
        peer = self._peer(task)
        send = _n_create if operation == "N-CREATE" else _n_set
        try:
            with association(self.calling_ae, peer, [sop_class], self.timeout) as assoc:
                answer = response(send(assoc, dataset, sop_class, sop_instance_uid), peer)
        except (PeerUnavailable, OSError) as exc:
            raise DeliveryFailed(str(exc)) from exc
        if answer.confirms:
            return
        if already_there(answer):
            log.info("delivery already at the destination task=%s destination=%s %s", task.id, peer, answer)
            return
        raise DeliveryFailed(f"{peer} answered the {operation} with {answer}")


class IanDelivery(_DicomDelivery):
    """An N-CREATE of the Instance Availability Notification SOP class to an IAN destination."""

    role = AeRole.IAN_DESTINATION

    def __call__(self, task: OutboxTask) -> None:
        dataset = from_json(task.payload["attributes"])
        self._send(task, IAN_SOP_CLASS, "N-CREATE", dataset, task.payload["sop_instance_uid"], _duplicate)


class MppsForwardDelivery(_DicomDelivery):
    """The N-CREATE or N-SET a modality sent us, re-sent unchanged to an MPPS forward destination."""

    role = AeRole.MPPS_FORWARD

    def __call__(self, task: OutboxTask) -> None:
        attributes = task.payload["attributes"]
        operation = task.payload["operation"]
        if operation == "N-CREATE":
            already_there = _duplicate
        else:
            final = status_of(attributes) in (MppsStatus.COMPLETED, MppsStatus.DISCONTINUED)

            def already_there(answer: Response) -> bool:
                return final and task.earlier_attempt_unresolved and answer.status == PROCESSING_FAILURE

        self._send(
            task, MPPS_SOP_CLASS, operation, from_json(attributes), task.payload["sop_instance_uid"], already_there
        )


def _duplicate(answer: Response) -> bool:
    return answer.status == DUPLICATE_SOP_INSTANCE
