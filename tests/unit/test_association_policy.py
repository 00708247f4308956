"""Who may associate (dimse.ae.AssociationPolicy), without sockets."""

from __future__ import annotations

import dataclasses

import pytest

from dimse.ae import AssociationPolicy, Rejection
from ris.domain.errors import StorageUnavailable
from ris.domain.model import AeRole, RemoteAE
from ris.settings import Settings

STATIONS = {
    "CT_ANY": RemoteAE("CT_ANY", roles=frozenset({AeRole.STATION})),
    "CT_HOST": RemoteAE("CT_HOST", host="ct.example", roles=frozenset({AeRole.STATION})),
    "PACS": RemoteAE("PACS", host="10.0.0.9", port=104, roles=frozenset({AeRole.IAN_DESTINATION})),
}
HOSTS = {"ct.example": {"10.0.0.5", "2001:db8::5"}, "10.0.0.9": {"10.0.0.9"}}


def policy(**overrides: object) -> AssociationPolicy:
    settings = dataclasses.replace(Settings(), **overrides)  # type: ignore[arg-type]
    return AssociationPolicy(settings, STATIONS.get, lambda host: HOSTS.get(host, set()))


def reason(rejection: Rejection | None) -> tuple[int, int, int] | None:
    return None if rejection is None else (rejection.result, rejection.source, rejection.diagnostic)


def test_called_ae_title() -> None:
    assert reason(policy().check("OTHER", "CT_ANY", "10.0.0.1")) == (1, 1, 7)
    assert reason(policy().check("RISBROKER", "CT_ANY", "10.0.0.1")) is None
    assert reason(policy(dicom_require_called_ae=False).check("OTHER", "CT_ANY", "10.0.0.1")) is None


@pytest.mark.parametrize(
    ("calling", "peer", "expected"),
    [
        ("CT_ANY", "10.0.0.1", None),
        ("CT_HOST", "10.0.0.5", None),
        ("CT_HOST", "::ffff:10.0.0.5", None),  # IPv4 peer on a dual-stack socket
        ("CT_HOST", "2001:db8:0::5", None),
        ("CT_HOST", "10.0.0.6", (1, 1, 3)),
        ("UNKNOWN", "10.0.0.5", (1, 1, 3)),
        ("PACS", "10.0.0.9", (1, 1, 3)),  # registered, but not as a station
    ],
)
def test_registered_policy(calling: str, peer: str, expected: tuple[int, int, int] | None) -> None:
    assert reason(policy(dicom_calling_ae_policy="registered").check("RISBROKER", calling, peer)) == expected


def test_open_policy_accepts_unknown_calling_aes() -> None:
    assert reason(policy().check("RISBROKER", "UNKNOWN", "10.0.0.6")) is None


def test_unreadable_remote_aes_reject_transiently() -> None:
    def unavailable(_title: str) -> RemoteAE | None:
        raise StorageUnavailable("database down")

    settings = dataclasses.replace(Settings(), dicom_calling_ae_policy="registered")
    assert reason(AssociationPolicy(settings, unavailable).check("RISBROKER", "CT_ANY", "10.0.0.1")) == (2, 1, 1)
