"""Outbound associations (we call a PACS, a reporting system, an MPPS mirror): one association per
delivery, with TCP_NODELAY, our timeouts, and a failure that says why the peer could not be used."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class PeerUnavailable(Exception):
    """No association (refused, rejected, aborted, timed out) or no answer on it."""


def _no_delay(event: Event) -> None:
    # Without it Nagle holds the data set PDU back until the peer ACKs the command PDU (~40 ms).
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@contextmanager
def association(calling_ae: str, peer: Peer, abstract_syntaxes: Sequence[str], timeout: float) -> Iterator[Association]:
    """An established association with ``peer`` for ``abstract_syntaxes``, released afterwards."""
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    for syntax in abstract_syntaxes:
        ae.add_requested_context(syntax)
    connected: list[bool] = []

    def on_connect(event: Event) -> None:
        connected.append(True)
        _no_delay(event)

    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, evt_handlers=[(evt.EVT_CONN_OPEN, on_connect)])
    if not assoc.is_established:
        if not connected:
            raise PeerUnavailable(f"cannot connect to {peer} (refused, unreachable or timed out)")
        raise PeerUnavailable(f"association with {peer} {'rejected' if assoc.is_rejected else 'aborted'}")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


@dataclass(frozen=True)
class Response:
    status: int
    comment: str  # Error Comment (0000,0902), when the peer sent one

    @property
    def confirms(self) -> bool:
        """Success or warning: the peer did what was asked."""
        return code_to_category(self.status) in (STATUS_SUCCESS, STATUS_WARNING)

    def __str__(self) -> str:
        return f"status 0x{self.status:04X}" + (f" ({self.comment})" if self.comment else "")


def response(status: Dataset, peer: Peer) -> Response:
    """The status of a DIMSE response; an empty one means no answer came (timeout, abort)."""
    if "Status" not in status:
        raise PeerUnavailable(f"no response from {peer} (timeout or aborted association)")
    return Response(int(status.Status), str(status.get("ErrorComment", "")))
