"""Outbox deliveries over DICOM (ports of ris.outbox): Instance Availability Notifications and
MPPS forwards, each an N-CREATE or N-SET on an association of its own.

Success and warning statuses confirm a task. 0111 (duplicate SOP instance) on an N-CREATE also
does: every task carries its own SOP Instance UID, so the destination already holds exactly this
instance from an earlier attempt whose confirmation we did not record. Every other failure status,
a refused association and a missing answer are retried by the outbox.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pynetdicom.association import Association

from dimse.dicom_json import from_json
from dimse.scu import Peer, PeerUnavailable, association, response
from ris.domain.model import AeRole
from ris.domain.mpps import IAN_SOP_CLASS, MPPS_SOP_CLASS
from ris.domain.outbox import OutboxTask
from ris.outbox import DeliveryFailed
from ris.services import RisService

DUPLICATE_SOP_INSTANCE = 0x0111


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

    def _send(self, task: OutboxTask, sop_class: str, operation: str, dataset: Dataset, sop_instance_uid: str) -> None:
        peer = self._peer(task)
        send = _n_create if operation == "N-CREATE" else _n_set
        try:
            with association(self.calling_ae, peer, [sop_class], self.timeout) as assoc:
                answer = response(send(assoc, dataset, sop_class, sop_instance_uid), peer)
        except (PeerUnavailable, OSError) as exc:
            raise DeliveryFailed(str(exc)) from exc
        already_there = operation == "N-CREATE" and answer.status == DUPLICATE_SOP_INSTANCE
        if not (answer.confirms or already_there):
            raise DeliveryFailed(f"{peer} answered the {operation} with {answer}")


class IanDelivery(_DicomDelivery):
    """An N-CREATE of the Instance Availability Notification SOP class to an IAN destination."""

    role = AeRole.IAN_DESTINATION

    def __call__(self, task: OutboxTask) -> None:
        dataset = from_json(task.payload["attributes"])
        self._send(task, IAN_SOP_CLASS, "N-CREATE", dataset, task.payload["sop_instance_uid"])


class MppsForwardDelivery(_DicomDelivery):
    """The N-CREATE or N-SET a modality sent us, re-sent unchanged to an MPPS forward destination."""

    role = AeRole.MPPS_FORWARD

    def __call__(self, task: OutboxTask) -> None:
        dataset = from_json(task.payload["attributes"])
        self._send(task, MPPS_SOP_CLASS, task.payload["operation"], dataset, task.payload["sop_instance_uid"])
