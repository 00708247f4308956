"""The front desk's day in a real browser against the real site: log in, schedule an order with
the form, see it on the board and in a scanner's worklist (DCMTK findscu -W against `ris listen`),
cancel it, and see it gone from both. Screenshots of the form and the board go to test-artifacts/."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from flask import Flask
from playwright.sync_api import Page, expect, sync_playwright
from werkzeug.serving import make_server

from ris.domain.users import Role
from ris.services import RisService
from ris.settings import Settings
from tests.support.dicom import run_dcmtk
from tests.support.orders import BERLIN
from tests.support.processes import free_port, ris_env, ris_process, stop_process, wait_until
from tests.support.web import PASSWORD, add_user

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ACCESSION = "WEB0000001"


@pytest.fixture
def web_url(make_app: Callable[..., Flask]) -> Iterator[str]:
    """The web application on an ephemeral port, served by werkzeug on a thread."""
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def dicom_port(settings: Settings) -> Iterator[int]:
    """`ris listen` on this test's database, its DICOM AE on an ephemeral port."""
    port = free_port()
    env = ris_env(
        settings,
        RIS_DICOM_PORT=str(port),
        RIS_DICOM_BIND="127.0.0.1",
        RIS_HL7_PORT=str(free_port()),
        RIS_HL7_BIND="127.0.0.1",
    )
    with ris_process(env, "listen") as listener:
        wait_until(
            lambda: run_dcmtk("echoscu", "-aec", "RISBROKER", "127.0.0.1", port).returncode == 0,
            what="the DICOM listener",
        )
        yield port
        output = stop_process(listener)
    assert listener.returncode == 0, output


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="de-DE")
        yield context.new_page()
        context.close()
        browser.close()


def worklist(port: int, out: Path) -> list[pydicom.Dataset]:
    """What the scanner CT_RAD_01 finds for the accession number."""
    out.mkdir()
    keys = ("AccessionNumber=" + ACCESSION, "PatientName", "ScheduledProcedureStepSequence[0].Modality")
    done = run_dcmtk(
        "findscu", "-W", "-aet", "CT_RAD_01", "-aec", "RISBROKER", "-X", "-od", out,
        *(arg for key in keys for arg in ("-k", key)), "127.0.0.1", port,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [pydicom.dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


@pytest.mark.slow
def test_schedule_find_and_cancel_an_order_in_the_browser(
    web_url: str, dicom_port: int, page: Page, service: RisService, tmp_path: Path
) -> None:
    add_user(service, "anna", Role.FRONTDESK)
    ARTIFACTS.mkdir(exist_ok=True)
    today = dt.datetime.now(BERLIN).date()

    page.goto(web_url + "/orders/new")
    expect(page).to_have_url(f"{web_url}/login?next=/orders/new")
    page.get_by_label("User name").fill("anna")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="New order")).to_be_visible()

    page.get_by_label("Patient ID").fill("WEB-4711")
    page.get_by_label("Patient name").fill("Schröder, Anna")
    page.get_by_label("Birth date").fill("1971-05-09")
    page.get_by_label("Sex").select_option("F")
    page.get_by_label("Accession").fill(ACCESSION)
    page.get_by_label("Modality").select_option("CT")
    page.get_by_label("Station AE").fill("CT_RAD_01")
    page.get_by_label("Scheduled").fill(f"{today:%Y-%m-%d}T12:30")
    page.get_by_label("Procedure").fill("CT Thorax mit KM")
    page.get_by_label("Priority").select_option("HIGH")
    page.get_by_label("Referring physician").fill("WEBER^KLAUS^^DR.")
    page.get_by_label("Comments").fill("Bitte nüchtern")
    page.screenshot(path=ARTIFACTS / "order-form.png", full_page=True)
    page.get_by_role("button", name="Schedule").click()
    expect(page.get_by_text(f"Order {ACCESSION} scheduled.")).to_be_visible()

    page.get_by_role("link", name="Board").click()
    row = page.locator("#board tbody tr", has_text=ACCESSION)
    expect(row).to_contain_text("Schröder, Anna")
    expect(row).to_contain_text("SCHEDULED")
    page.screenshot(path=ARTIFACTS / "board.png", full_page=True)

    (item,) = worklist(dicom_port, tmp_path / "before")
    assert str(item.PatientName) == "Schröder^Anna"
    assert item.ScheduledProcedureStepSequence[0].Modality == "CT"

    row.get_by_role("link").click()
    page.get_by_role("link", name="Cancel order…").click()
    page.get_by_label("Reason").fill("patient cancelled by phone")
    page.get_by_role("button", name="Yes, cancel the order").click()
    expect(page.get_by_text("Order canceled")).to_be_visible()
    expect(page.locator("#timeline")).to_contain_text("user:anna")

    page.get_by_role("link", name="Board").click()
    expect(page.locator("#board")).not_to_contain_text(ACCESSION)
    page.get_by_label("Status", exact=True).select_option("CANCELED")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#board tbody tr", has_text=ACCESSION)).to_contain_text("CANCELED")
    assert worklist(dicom_port, tmp_path / "after") == []
