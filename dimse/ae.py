"""The broker's one DICOM Application Entity: the services it offers, its association policy and
the network hygiene pynetdicom does not do by itself.

Services are small :class:`DicomService` objects (Verification, Modality Worklist, MPPS, ...),
each naming its SOP classes and event handlers; :class:`DicomListener` builds the AE from them
and runs it in the listener process (``ris serve``), never in the web workers.

What pynetdicom leaves to us (DESIGN §8):

- TCP_NODELAY on accepted sockets: pynetdicom writes a DIMSE message as several PDUs, and with
  Nagle's algorithm the second one waits ~40 ms for the peer's delayed ACK;
- a read timeout on accepted sockets, so a peer that stops mid-PDU cannot hold a thread forever;
- a cap on the size of incoming PDUs: pynetdicom reads whatever length a peer announces; a PDU
  over ``dicom_max_pdu_bytes`` is answered with an A-ABORT and the connection is dropped;
- who may associate (:class:`AssociationPolicy`, checked in EVT_REQUESTED because pynetdicom's
  own calling-AE check ignores the peer's address);
- no identifiers (patient data) in pynetdicom's log.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.events import EventHandlerType
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from ris.domain.errors import DomainError
from ris.domain.model import AeRole, RemoteAE
from ris.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[..., Any]

# Patient data must not reach the log (pynetdicom logs identifiers at INFO by default).
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


class DicomService:
    """One DICOM service the AE provides as SCP."""

    name: ClassVar[str]
    sop_classes: ClassVar[tuple[str, ...]]

    def handlers(self) -> list[tuple[evt.EventType, Handler]]:
        """The pynetdicom event handlers of this service (e.g. EVT_C_FIND)."""
        return []

    def sop_class_extended(self, sop_class: str, request: bytes) -> bytes | None:
        """Our answer to a SOP Class Extended Negotiation item for one of ``sop_classes``;
        ``None`` to send none (the SCU then assumes the defaults)."""
        return None


class VerificationService(DicomService):
    """C-ECHO: pynetdicom's default handler answers success."""

    name = "verification"
    sop_classes = (Verification,)


# --- association policy -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """An A-ASSOCIATE-RJ (PS3.8 9.3.4): result, source, reason/diagnostic, and why, for the log."""

    result: int
    source: int
    diagnostic: int
    reason: str


PERMANENT, TRANSIENT = 0x01, 0x02
SERVICE_USER = 0x01
NO_REASON, CALLING_AE_NOT_RECOGNIZED, CALLED_AE_NOT_RECOGNIZED = 0x01, 0x03, 0x07


class AssociationPolicy:
    """Who may associate: the called AE title must be ours (unless relaxed); with the
    ``registered`` calling-AE policy only remote AEs with the station role may, and only from
    their host when one is set."""

    def __init__(
        self,
        settings: Settings,
        find_remote_ae: Callable[[str], RemoteAE | None],
        resolve: Callable[[str], set[str]] | None = None,
    ) -> None:
        self.ae_title = settings.dicom_ae_title
        self.require_called_ae = settings.dicom_require_called_ae
        self.registered_only = settings.dicom_calling_ae_policy == "registered"
        self.find_remote_ae = find_remote_ae
        self.resolve = resolve or host_addresses

    def check(self, called_ae: str, calling_ae: str, peer_address: str) -> Rejection | None:
        if self.require_called_ae and called_ae.strip() != self.ae_title.strip():
            return Rejection(PERMANENT, SERVICE_USER, CALLED_AE_NOT_RECOGNIZED, f"called AE {called_ae!r} is not ours")
        if not self.registered_only:
            return None
        try:
            remote = self.find_remote_ae(calling_ae.strip())
        except DomainError as exc:
            return Rejection(TRANSIENT, SERVICE_USER, NO_REASON, f"remote AEs cannot be read: {exc}")
        if remote is None or AeRole.STATION not in remote.roles:
            return Rejection(
                PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNIZED, "calling AE is not a registered station"
            )
        if remote.host and _normalized(peer_address) not in {_normalized(a) for a in self.resolve(remote.host)}:
            return Rejection(
                PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNIZED, f"calling AE is registered for host {remote.host}"
            )
        return None


def host_addresses(host: str) -> set[str]:
    """The addresses of ``host`` (itself when it is an address); empty when it cannot be resolved."""
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        log.warning("remote AE host cannot be resolved host=%s", host)
        return set()


def _normalized(address: str) -> str:
    """``::ffff:10.0.0.1`` (an IPv4 peer on a dual-stack socket) is ``10.0.0.1``."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


# --- network hygiene ------------------------------------------------------------------------------

# A-ABORT PDU (PS3.8 9.3.8): source 2 = service provider, reason 6 = invalid PDU parameter value.
_ABORT_INVALID_PDU_PARAMETER = bytes([0x07, 0x00, 0, 0, 0, 4, 0x00, 0x00, 0x02, 0x06])


class _PduLimitedSocket(AssociationSocket):
    """An AssociationSocket that refuses to read a PDU longer than ``max_pdu_bytes``.

    pynetdicom's DUL reads the 6-byte PDU header, then ``recv(length)`` for the rest: a length
    over the cap gets an A-ABORT, and the short read makes the DUL close the connection."""

    max_pdu_bytes: int

    def recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self.max_pdu_bytes:
            log.warning(
                "aborting association: PDU too large peer=%s length=%d limit=%d",
                self.assoc.requestor.address,
                nr_bytes,
                self.max_pdu_bytes,
            )
            self.send(_ABORT_INVALID_PDU_PARAMETER)
            return bytearray()
        return super().recv(nr_bytes)


class _RequestHandler(RequestHandler):
    server: _AssociationServer

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        # pynetdicom builds the socket wrapper itself; give it the PDU size check (the subclass
        # only overrides recv, so switching the class of the fresh object is safe).
        sock = assoc.dul.socket
        assert sock is not None
        sock.__class__ = _PduLimitedSocket
        sock.max_pdu_bytes = self.server.max_pdu_bytes  # type: ignore[attr-defined]
        return assoc


class _AssociationServer(ThreadedAssociationServer):
    max_pdu_bytes: int
    read_timeout: float
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        client, address = super().get_request()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.settimeout(self.read_timeout)
        return client, address


# --- the AE and its listener ---------------------------------------------------------------------


def build_ae(settings: Settings, services: Sequence[DicomService]) -> AE:
    ae = AE(ae_title=settings.dicom_ae_title)
    for service in services:
        for sop_class in service.sop_classes:
            ae.add_supported_context(sop_class)
    ae.maximum_associations = settings.dicom_max_associations
    ae.maximum_pdu_size = settings.dicom_max_pdu_bytes
    ae.acse_timeout = settings.dicom_acse_timeout
    ae.dimse_timeout = settings.dicom_dimse_timeout
    ae.network_timeout = settings.dicom_network_timeout
    return ae


class DicomListener:
    """The AE serving ``services`` on ``dicom_bind``:``dicom_port`` (a Listener of ris.bootstrap)."""

    name = "dicom"

    def __init__(self, settings: Settings, services: Sequence[DicomService], policy: AssociationPolicy) -> None:
        self.settings = settings
        self.services = list(services)
        self.policy = policy
        self.ae = build_ae(settings, self.services)
        self._server: _AssociationServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``dicom_port = 0``)."""
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def start(self) -> None:
        handlers: list[EventHandlerType] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_SOP_EXTENDED, self._on_sop_extended),
        ]
        for service in self.services:
            handlers += service.handlers()
        server = cast(
            _AssociationServer,
            self.ae.make_server(
                (self.settings.dicom_bind, self.settings.dicom_port),
                evt_handlers=handlers,
                server_class=_AssociationServer,
                request_handler=_RequestHandler,
            ),
        )
        server.max_pdu_bytes = self.settings.dicom_max_pdu_bytes
        server.read_timeout = self.settings.dicom_network_timeout
        # stop() shuts down the servers the AE knows; make_server() does not register them.
        self.ae._servers.append(server)
        self._thread = threading.Thread(target=server.serve_forever, name="dicom-listener", daemon=True)
        self._thread.start()
        self._server = server
        log.info(
            "dicom listening ae_title=%s address=%s:%d services=%s calling_ae_policy=%s max_associations=%d",
            self.settings.dicom_ae_title,
            self.settings.dicom_bind,
            self.port,
            ",".join(s.name for s in self.services),
            self.settings.dicom_calling_ae_policy,
            self.settings.dicom_max_associations,
        )
        if not self.policy.registered_only:
            log.warning(
                "dicom calling AE policy is open: any AE that reaches port %d may query the worklist", self.port
            )

    def stop(self) -> None:
        # Not AE.shutdown(): it sends an A-ABORT on every association, also on one we have just
        # rejected that awaits the peer's close (state Sta13). The state machine has no transition
        # for an A-ABORT there, so that association's DUL thread dies with InvalidEventError.
        # Only an established association has something to abort; the others end on their own
        # (the peer closes, or the ARTIM timer expires) in their daemon threads.
        for assoc in self.ae.active_associations:
            if assoc.is_established:
                assoc.abort()
        for server in list(self.ae._servers):
            server.shutdown()  # also removes it from ae._servers
        self._server = None

    def is_alive(self) -> bool:
        return self._server is not None and self._thread is not None and self._thread.is_alive()

    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        request = assoc.requestor.primitive
        assert request is not None  # EVT_REQUESTED fires once the A-ASSOCIATE-RQ is in
        peer = assoc.requestor.address
        rejection = self.policy.check(request.called_ae_title, request.calling_ae_title, peer)
        if rejection is None:
            return
        log.warning(
            "association rejected calling_ae=%s called_ae=%s peer=%s reason=%s",
            request.calling_ae_title,
            request.called_ae_title,
            peer,
            rejection.reason,
        )
        assoc.acse.send_reject(rejection.result, rejection.source, rejection.diagnostic)
        # As pynetdicom does after its own rejections: wait until the DUL has sent the
        # A-ASSOCIATE-RJ, else closing the connection right after this handler loses it.
        assoc.kill()

    def _on_sop_extended(self, event: evt.Event) -> dict[str, bytes]:
        answers: dict[str, bytes] = {}
        requests: dict[str, bytes] = event.app_info  # type: ignore[attr-defined]  # set per event type
        for sop_class, request in requests.items():
            for service in self.services:
                if sop_class in service.sop_classes:
                    answer = service.sop_class_extended(sop_class, request)
                    if answer is not None:
                        answers[sop_class] = answer
        return answers
