"""The C-ECHO behind the admin page's "Test" button (ris.ports.EchoProbe): we call a remote AE and
say what answered, or why nothing did."""

from __future__ import annotations

import time

from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dimse.scu import Peer, PeerUnavailable, association, response
from ris.ports import EchoResult


class VerificationProbe:
    def __init__(self, calling_ae: str, timeout: float) -> None:
        self.calling_ae = calling_ae
        self.timeout = timeout

    def echo(self, ae_title: str, host: str, port: int) -> EchoResult:
        peer = Peer(ae_title, host, port)
        started = time.perf_counter()
        try:
            with association(self.calling_ae, peer, [Verification], self.timeout) as assoc:
                answer = response(assoc.send_c_echo(), peer)
        except PeerUnavailable as error:
            return EchoResult(False, str(error))
        took = f"in {(time.perf_counter() - started) * 1000:.0f} ms"
        if answer.confirms:
            return EchoResult(True, f"{peer} answered the C-ECHO ({answer}) {took}")
        return EchoResult(False, f"{peer} refused the C-ECHO ({answer}) {took}")
