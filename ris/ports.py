"""What the services need from the outside world but must not import: implemented by the adapters
and handed to RisService by the wiring (ris.bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EchoResult:
    ok: bool
    message: str  # what happened, for the admin: "status 0x0000 in 12 ms", "cannot connect to ..."


class EchoProbe(Protocol):
    def echo(self, ae_title: str, host: str, port: int) -> EchoResult:
        """A DICOM C-ECHO to the AE at ``host``:``port``; never raises for a peer's failure."""
        ...
