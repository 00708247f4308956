"""The admin pages through the Flask test client, logged in through the login form: remote AEs
(with a C-ECHO to a real Verification SCP), the HL7 journal, MPPS reconciliation, users and tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from hl7.intake import Intake
from hl7.mapping import load_mapping
from ris.db.models import AuditEvent
from ris.domain.model import AeRole, RemoteAE
from ris.domain.status import StepStatus
from ris.domain.users import Role
from ris.services import RisService
from tests.support.dicom_peers import REFUSED_CONNECTION_LEAKS_A_SOCKET
from tests.support.hl7_messages import orm
from tests.support.mpps import as_json, n_create
from tests.support.orders import new_order, step
from tests.support.processes import free_port
from tests.support.users import ADMIN, bearer
from tests.support.web import PASSWORD, csrf_token, login, submit


def audit_actors(service: RisService, action: str) -> list[str]:
    with service.db.reading() as session:
        return list(session.scalars(select(AuditEvent.actor).where(AuditEvent.action == action)))


def post(client: FlaskClient, page: str, action: str, data: dict[str, str] | None = None) -> object:
    """Press a button of ``page``: post to ``action`` with the page's CSRF token."""
    return submit(client, page, data or {}, action=action)


# --- access ----------------------------------------------------------------------------------------

ADMIN_PAGES = ["/admin/", "/admin/remote-aes", "/admin/remote-aes/new", "/admin/hl7", "/admin/mpps", "/admin/users"]


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admin_pages_need_an_admin(
    url: str, make_app: Callable[..., Flask], frontdesk_client: FlaskClient, admin_client: FlaskClient
) -> None:
    anonymous = make_app().test_client().get(url)
    assert anonymous.status_code == 302
    assert "/login" in anonymous.headers["Location"]
    assert frontdesk_client.get(url).status_code == 403
    assert admin_client.get(url).status_code == 200


def test_frontdesk_cannot_change_anything(frontdesk_client: FlaskClient, service: RisService) -> None:
    service.add_remote_ae(RemoteAE("CT_1", roles=frozenset({AeRole.STATION})), ADMIN)
    token = csrf_token(frontdesk_client.get("/").data)
    response = frontdesk_client.post("/admin/remote-aes/CT_1/remove", data={"csrf_token": token})
    assert response.status_code == 403
    assert service.get_remote_ae("CT_1") is not None


# --- remote AEs ------------------------------------------------------------------------------------


def test_add_edit_and_remove_a_remote_ae(admin_client: FlaskClient, service: RisService) -> None:
    response = submit(
        admin_client,
        "/admin/remote-aes/new",
        {"ae_title": "CT_RAD_01", "host": "10.1.2.3", "port": "", "roles": ["station"], "own_items_only": "y"},
    )
    assert response.status_code == 303
    assert service.get_remote_ae("CT_RAD_01") == RemoteAE(
        "CT_RAD_01",
        host="10.1.2.3",
        roles=frozenset({AeRole.STATION}),
        own_items_only=True,
        id=service.get_remote_ae("CT_RAD_01").id,  # type: ignore[union-attr]
    )
    listing = admin_client.get("/admin/remote-aes").data.decode()
    assert "Remote AE CT_RAD_01 added." in listing
    assert "(own items only)" in listing
    assert audit_actors(service, "remote_ae.added") == ["user:boss"]

    edit = admin_client.get("/admin/remote-aes/CT_RAD_01/edit").data.decode()
    assert 'value="10.1.2.3"' in edit
    response = submit(
        admin_client,
        "/admin/remote-aes/CT_RAD_01/edit",
        {"ae_title": "PACS_1", "host": "pacs.local", "port": "104", "roles": ["ian-destination", "mpps-forward"]},
    )
    assert response.status_code == 303
    assert service.get_remote_ae("CT_RAD_01") is None
    changed = service.get_remote_ae("PACS_1")
    assert changed is not None
    assert (changed.host, changed.port, changed.roles, changed.own_items_only) == (
        "pacs.local",
        104,
        frozenset({AeRole.IAN_DESTINATION, AeRole.MPPS_FORWARD}),
        False,
    )
    assert audit_actors(service, "remote_ae.changed") == ["user:boss"]

    response = post(admin_client, "/admin/remote-aes", "/admin/remote-aes/PACS_1/remove")
    assert response.status_code == 303  # type: ignore[attr-defined]
    assert service.get_remote_ae("PACS_1") is None
    assert audit_actors(service, "remote_ae.removed") == ["user:boss"]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"ae_title": "A" * 17, "roles": ["station"]}, "ae_title", "16"),
        ({"ae_title": "PACS", "roles": ["ian-destination"]}, "host", "a destination needs a host and a port"),
        ({"ae_title": "CT_2", "roles": []}, "roles", "choose at least one role"),
        ({"ae_title": "CT_2", "roles": ["station"], "port": "70000"}, "port", "between 0 and 65535"),
        ({"ae_title": "TAKEN", "roles": ["station"]}, "ae_title", "already exists"),
    ],
)
def test_remote_ae_form_errors_are_shown_next_to_the_field(
    admin_client: FlaskClient, service: RisService, data: dict[str, object], field: str, message: str
) -> None:
    service.add_remote_ae(RemoteAE("TAKEN", roles=frozenset({AeRole.STATION})), ADMIN)
    response = submit(admin_client, "/admin/remote-aes/new", data)
    assert response.status_code == 200
    page = response.data.decode()
    errors = page.split(f'id="field-{field}"', 1)[1].split("</div>", 1)[0]
    assert message in errors, errors
    assert len(service.list_remote_aes()) == 1


def test_unknown_remote_ae_is_404(admin_client: FlaskClient) -> None:
    assert admin_client.get("/admin/remote-aes/NOPE/edit").status_code == 404
    assert post(admin_client, "/admin/remote-aes", "/admin/remote-aes/NOPE/remove").status_code == 404  # type: ignore[attr-defined]
    assert post(admin_client, "/admin/remote-aes", "/admin/remote-aes/NOPE/echo").status_code == 404  # type: ignore[attr-defined]


@pytest.fixture
def verification_scp() -> Iterator[int]:
    """A real DICOM peer answering C-ECHO on an ephemeral port."""
    scp = AE(ae_title="PACS_ECHO")
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", 0), block=False)
    yield int(server.server_address[1])
    scp.shutdown()


def test_echo_button_reports_success_from_a_real_peer(
    admin_client: FlaskClient, service: RisService, verification_scp: int
) -> None:
    service.add_remote_ae(
        RemoteAE("PACS_ECHO", "127.0.0.1", verification_scp, frozenset({AeRole.IAN_DESTINATION})), ADMIN
    )
    response = post(admin_client, "/admin/remote-aes", "/admin/remote-aes/PACS_ECHO/echo")
    assert response.status_code == 303  # type: ignore[attr-defined]
    page = admin_client.get("/admin/remote-aes").data.decode()
    assert "C-ECHO PACS_ECHO: success." in page
    assert "status 0x0000" in page


@REFUSED_CONNECTION_LEAKS_A_SOCKET
def test_echo_button_reports_why_it_failed(admin_client: FlaskClient, service: RisService) -> None:
    service.add_remote_ae(RemoteAE("PACS_DOWN", "127.0.0.1", free_port(), frozenset({AeRole.MPPS_FORWARD})), ADMIN)
    service.add_remote_ae(RemoteAE("CT_ANY", roles=frozenset({AeRole.STATION})), ADMIN)
    post(admin_client, "/admin/remote-aes", "/admin/remote-aes/PACS_DOWN/echo")
    page = admin_client.get("/admin/remote-aes").data.decode()
    assert '<p class="flash error">C-ECHO PACS_DOWN failed: cannot connect to PACS_DOWN@127.0.0.1:' in page
    post(admin_client, "/admin/remote-aes", "/admin/remote-aes/CT_ANY/echo")
    assert (
        "C-ECHO CT_ANY failed: CT_ANY has no host and port to call"
        in admin_client.get("/admin/remote-aes").data.decode()
    )


# --- HL7 journal -------------------------------------------------------------------------------------


def test_hl7_journal_lists_filters_and_shows_a_message(admin_client: FlaskClient, service: RisService) -> None:
    intake = Intake(service, load_mapping(None), default_charset="UNICODE UTF-8")
    intake.handle(orm(control_id="CTRL-OK", accession="J1", number=8101).encode())
    intake.handle(orm(control_id="CTRL-DUP", accession="J1", number=8102).encode())  # accession taken: AE

    page = admin_client.get("/admin/hl7").data.decode()
    assert page.index("CTRL-DUP") < page.index("CTRL-OK")  # newest first
    errors_only = admin_client.get("/admin/hl7?errors=1").data.decode()
    assert "CTRL-DUP" in errors_only
    assert "CTRL-OK" not in errors_only
    one = admin_client.get("/admin/hl7?control_id=CTRL-OK").data.decode()
    assert "CTRL-OK" in one
    assert "CTRL-DUP" not in one
    assert "No messages match the filter." in admin_client.get("/admin/hl7?control_id=nope").data.decode()

    [entry] = service.message_journal(control_id="CTRL-DUP")
    detail = admin_client.get(f"/admin/hl7/{entry.id}").data.decode()
    message = detail.split('<pre id="message">', 1)[1].split("</pre>", 1)[0]
    ack = detail.split('<pre id="ack">', 1)[1].split("</pre>", 1)[0]
    assert message.startswith("MSH|^~\\&amp;|HIS|")
    assert "\nPID|" in message
    assert "\nMSA|AE|CTRL-DUP" in ack
    assert "answered <strong>AE</strong>" in detail
    assert admin_client.get("/admin/hl7/99999").status_code == 404


# --- MPPS reconciliation -------------------------------------------------------------------------------

UNSCHEDULED_UID = "1.2.826.0.1.3680043.10.9001"


def test_link_an_unscheduled_mpps_to_an_order(admin_client: FlaskClient, service: RisService) -> None:
    order = service.schedule_order(new_order(), ADMIN)
    service.record_mpps_create(UNSCHEDULED_UID, as_json(n_create()), "CT_RAD_01")
    listing = admin_client.get("/admin/mpps").data.decode()
    assert UNSCHEDULED_UID in listing
    assert "1 performed step(s) waiting" in admin_client.get("/admin/").data.decode()

    page = f"/admin/mpps/{UNSCHEDULED_UID}"
    response = submit(admin_client, page, {"accession_number": "NO-SUCH"})
    assert response.status_code == 200
    assert "no order has the accession number &#39;NO-SUCH&#39;" in response.data.decode()

    response = submit(admin_client, page, {"accession_number": order.order.accession_number})
    assert response.status_code == 303
    detail = admin_client.get(page).data.decode()
    assert f"{order.order.accession_number} step {order.steps[0].sps_id} (STARTED), linked by user:boss" in detail
    assert service.get_order(order.id).steps[0].status is StepStatus.STARTED
    assert audit_actors(service, "step.started") == ["user:boss"]
    assert UNSCHEDULED_UID not in admin_client.get("/admin/mpps").data.decode()


def test_an_order_with_several_steps_needs_the_step(admin_client: FlaskClient, service: RisService) -> None:
    order = service.schedule_order(new_order(steps=(step(sps_id="S-A"), step(sps_id="S-B", modality="MR"))), ADMIN)
    service.record_mpps_create(UNSCHEDULED_UID, as_json(n_create()), "CT_RAD_01")
    page = f"/admin/mpps/{UNSCHEDULED_UID}"
    accession = order.order.accession_number
    response = submit(admin_client, page, {"accession_number": accession})
    assert "choose one of its steps: S-A, S-B" in response.data.decode()
    response = submit(admin_client, page, {"accession_number": accession, "sps_id": "S-C"})
    assert "the order has no step &#39;S-C&#39;" in response.data.decode()
    assert submit(admin_client, page, {"accession_number": accession, "sps_id": "S-B"}).status_code == 303
    statuses = {s.sps_id: s.status for s in service.get_order(order.id).steps}
    assert statuses == {"S-A": StepStatus.SCHEDULED, "S-B": StepStatus.STARTED}


def test_linking_to_a_canceled_order_is_refused(admin_client: FlaskClient, service: RisService) -> None:
    order = service.schedule_order(new_order(), ADMIN)
    service.cancel_order(order.id, ADMIN)
    service.record_mpps_create(UNSCHEDULED_UID, as_json(n_create()), "CT_RAD_01")
    response = submit(
        admin_client, f"/admin/mpps/{UNSCHEDULED_UID}", {"accession_number": order.order.accession_number}
    )
    assert response.status_code == 200
    assert "CANCELED" in response.data.decode()
    assert service.get_mpps(UNSCHEDULED_UID).is_unscheduled
    assert admin_client.get("/admin/mpps/1.2.3.4").status_code == 404


# --- users and tokens ------------------------------------------------------------------------------------


def test_add_disable_enable_and_reset_a_user(
    admin_client: FlaskClient, service: RisService, make_app: Callable[..., Flask]
) -> None:
    response = submit(admin_client, "/admin/users/new", {"username": "anna", "password": PASSWORD, "role": "frontdesk"})
    assert response.status_code == 303
    assert service.get_user("anna") is not None
    assert audit_actors(service, "user.created")[-1] == "user:boss"

    post(admin_client, "/admin/users", "/admin/users/anna/active", {"active": "0"})
    assert service.get_user("anna").active is False  # type: ignore[union-attr]
    assert login(make_app().test_client(), "anna").status_code == 200  # the form again: refused
    post(admin_client, "/admin/users", "/admin/users/anna/active", {"active": "1"})
    assert service.get_user("anna").active is True  # type: ignore[union-attr]

    short = submit(admin_client, "/admin/users/anna/password", {"password": "short"})
    assert short.status_code == 200
    assert "at least 8 characters" in short.data.decode()
    assert submit(admin_client, "/admin/users/anna/password", {"password": "a new long one"}).status_code == 303
    assert login(make_app().test_client(), "anna", "a new long one").status_code == 303
    assert audit_actors(service, "user.password_set") == ["user:boss"]
    assert admin_client.get("/admin/users/nobody/password").status_code == 404


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"username": "Anna Maria", "password": PASSWORD, "role": "frontdesk"}, "username", "lower-case"),
        ({"username": "anna", "password": "short", "role": "frontdesk"}, "password", "at least 8"),
        ({"username": "boss", "password": PASSWORD, "role": "admin"}, "username", "already exists"),
        ({"username": "anna", "password": PASSWORD, "role": "owner"}, "role", "Not a valid choice"),
    ],
)
def test_new_user_form_errors(admin_client: FlaskClient, data: dict[str, str], field: str, message: str) -> None:
    response = submit(admin_client, "/admin/users/new", data)
    assert response.status_code == 200
    errors = response.data.decode().split(f'id="field-{field}"', 1)[1].split("</div>", 1)[0]
    assert message in errors, errors


def test_create_use_and_revoke_an_api_token(
    admin_client: FlaskClient, service: RisService, make_app: Callable[..., Flask]
) -> None:
    service.create_user("bridge", PASSWORD, Role.FRONTDESK, ADMIN)
    response = post(admin_client, "/admin/users", "/admin/users/bridge/tokens", {"name": "HIS bridge"})
    assert response.status_code == 200  # type: ignore[attr-defined]
    page = response.data.decode()  # type: ignore[attr-defined]
    token = page.split('<pre id="token">', 1)[1].split("</pre>", 1)[0]
    assert token.startswith("ris_")
    api = make_app().test_client()
    assert api.get("/api/worklist-items", headers=bearer(token)).status_code == 200
    users_page = admin_client.get("/admin/users").data.decode()
    assert token not in users_page
    [view] = service.list_api_tokens("bridge")
    assert "HIS bridge" in users_page
    assert view.last_used_at is not None

    post(admin_client, "/admin/users", f"/admin/tokens/{view.id}/revoke")
    assert api.get("/api/worklist-items", headers=bearer(token)).status_code == 401
    assert audit_actors(service, "api_token.revoked") == ["user:boss"]
    assert post(admin_client, "/admin/users", f"/admin/tokens/{view.id}/revoke").status_code == 404  # type: ignore[attr-defined]
    assert post(admin_client, "/admin/users", "/admin/users/nobody/tokens").status_code == 404  # type: ignore[attr-defined]


def test_edit_form_errors_change_nothing(admin_client: FlaskClient, service: RisService) -> None:
    service.add_remote_ae(RemoteAE("CT_1", roles=frozenset({AeRole.STATION})), ADMIN)
    service.add_remote_ae(RemoteAE("CT_2", roles=frozenset({AeRole.STATION})), ADMIN)
    taken = submit(admin_client, "/admin/remote-aes/CT_1/edit", {"ae_title": "CT_2", "roles": ["station"]})
    assert taken.status_code == 200
    assert "remote AE &#39;CT_2&#39; already exists" in taken.data.decode()
    no_host = submit(admin_client, "/admin/remote-aes/CT_1/edit", {"ae_title": "CT_1", "roles": ["mpps-forward"]})
    assert "a destination needs a host and a port" in no_host.data.decode()
    assert service.get_remote_ae("CT_1") == RemoteAE("CT_1", roles=frozenset({AeRole.STATION}), id=1)
