"""HL7 messages through the intake into the database (both engines): what is stored, what is
answered, what is journaled, and that a replay or a failure never changes anything twice."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text

from hl7.intake import Intake
from hl7.mapping import OrderMapping
from ris.db import Database
from ris.db.models import Patient
from ris.domain.inbound import Answer, InboundMessage, Outcome, Receipt, Reply, ScheduleOrder
from ris.domain.model import Actor, OrderKey, OrderView
from ris.domain.status import StepStatus
from ris.services import RisService
from ris.settings import Settings
from tests.support.hl7_messages import ORM_V23, ORM_V24, ORM_V251, adt, err_lines, msa, omi, orm
from tests.support.orders import new_order

UTC = dt.UTC


@pytest.fixture
def intake(service: RisService) -> Intake:
    return Intake(service, OrderMapping(), default_charset="UNICODE UTF-8")


def send(intake: Intake, message: str, encoding: str = "utf-8") -> bytes:
    return intake.handle(message.encode(encoding), "127.0.0.1:5000")


def order(service: RisService, accession: str) -> OrderView:
    found = service.find_order(OrderKey(accession_number=accession))
    assert found is not None, accession
    return found


def statuses(service: RisService, accession: str) -> list[StepStatus]:
    return [step.status for step in order(service, accession).steps]


def journal_codes(service: RisService) -> list[tuple[str, str]]:
    return [(entry.control_id, entry.ack_code) for entry in reversed(service.message_journal(limit=1000))]


def test_new_order_is_stored_with_the_mapped_attributes(service: RisService, intake: Intake) -> None:
    ack = send(intake, ORM_V251)
    assert msa(ack) == ["AA", "IWTGT300000000", ""]
    (item,) = service.export_items()
    sps = item["ScheduledProcedureStepSequence"][0]
    assert item["SpecificCharacterSet"] == "ISO_IR 192"
    assert (item["PatientName"], item["PatientID"], item["IssuerOfPatientID"]) == (
        "ŞAHİN^AYŞE",
        "PIWTGT3000000",
        "KLINIKUM",
    )
    assert (item["PatientBirthDate"], item["PatientSex"]) == ("20020722", "F")
    assert item["AccessionNumber"] == "AIWTGT30000000"
    assert item["RequestedProcedureID"] == "RPIWTGT30000000"
    assert item["StudyInstanceUID"] == "2.25.312048616278825272194188783533814962390"
    assert item["ReferringPhysicianName"] == "ÖZDEMIR^AYLIN^^DR."
    assert item["RequestedProcedureCodeSequence"] == [
        {"CodeValue": "USABD", "CodingSchemeDesignator": "99RAD", "CodeMeaning": "Sonographie Abdomen"}
    ]
    assert (sps["Modality"], sps["ScheduledStationAETitle"], sps["ScheduledProcedureStepID"]) == (
        "US",
        "US_GYN_01",
        "SPSIWTGT30000000",
    )
    # TQ1-7 20261204164500+0100: 15:45 UTC, shown in the site's local time (Berlin, +01:00 in December).
    assert (sps["ScheduledProcedureStepStartDate"], sps["ScheduledProcedureStepStartTime"]) == ("20261204", "164500")
    assert order(service, "AIWTGT30000000").steps[0].start == dt.datetime(2026, 12, 4, 15, 45, tzinfo=UTC)
    assert sps["ScheduledPerformingPhysicianName"] == "KRÜGER^STEFAN^^DR."
    ((entry),) = service.message_journal()
    assert (entry.control_id, entry.sending_application, entry.sending_facility) == (
        "IWTGT300000000",
        "HIS",
        "KLINIKUM",
    )
    assert (entry.ack_code, entry.ack, entry.raw) == ("AA", ack, ORM_V251.encode("utf-8"))
    assert entry.order_id == order(service, "AIWTGT30000000").id
    assert entry.message_type == "ORM^O01"


def test_v23_latin1_and_v24_ascii_orders(service: RisService, intake: Intake) -> None:
    assert msa(send(intake, ORM_V23, "latin-1"))[0] == "AA"
    stored = order(service, "ACC0001")
    assert stored.patient.name == "Schröder^Hans-Peter^^Dr."
    assert stored.character_set == "ISO_IR 100"
    assert stored.procedures[0].study_uid.startswith("2.25.")  # no ZDS-1: generated
    # 2004-03-25 10:00 without offset: Berlin local time (+01:00, before the change to summer time).
    assert stored.steps[0].start == dt.datetime(2004, 3, 25, 9, 0, tzinfo=UTC)
    assert msa(send(intake, ORM_V24, "ascii"))[0] == "AA"
    v24 = order(service, "A42")
    assert (v24.patient.patient_id, v24.order.comments) == (
        "7654321",
        "Patient hat Platzangst\nbitte Sedierung\nKontrastmittelallergie",
    )
    assert v24.character_set == "ISO_IR 100"  # ASCII data: the narrowest set that fits
    assert v24.steps[0].start == dt.datetime(2011, 5, 13, 7, 30, tzinfo=UTC)
    assert v24.steps[0].station_ae == ""  # no OBR-21 and no station rule for this site


def test_replay_returns_the_stored_ack_and_changes_nothing(service: RisService, intake: Intake) -> None:
    message = orm(accession="R1", control_id="REPLAY1")
    first = send(intake, message)
    assert msa(first)[0] == "AA"
    again = send(intake, message)
    assert again == first  # byte for byte, ACK control id and timestamp included
    assert len(order(service, "R1").steps) == 1
    assert journal_codes(service) == [("REPLAY1", "AA")]
    # The same control id from another sender is another message.
    other = orm(accession="R2", control_id="REPLAY1", sender="LAB")
    assert msa(send(intake, other))[0] == "AA"
    assert len(service.message_journal()) == 2


def test_a_reused_control_id_gets_the_stored_ack_and_logs_no_order(
    service: RisService, intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    """A sender that reuses a control id for another order gets the first message's ACK. The new
    order was inserted before the journal row's key turned the transaction back: no log line may
    say it was scheduled."""
    caplog.set_level(logging.INFO, logger="ris.services")
    first = send(intake, orm(accession="R1", control_id="REUSED"))
    assert send(intake, orm(accession="R3", control_id="REUSED")) == first
    assert service.find_order(OrderKey(accession_number="R3")) is None
    logged = [record.getMessage() for record in caplog.records]
    assert [line for line in logged if "accession=R3" in line] == []
    assert sum("order scheduled" in line and "accession=R1" in line for line in logged) == 1


def test_order_control_rows_change_the_steps(service: RisService, intake: Intake) -> None:
    assert msa(send(intake, orm(accession="C1", number=101)))[0] == "AA"
    xo = orm(control="XO", accession="C1", number=101, start="20261205080000", station="CT_RAD_02")
    assert msa(send(intake, xo))[0] == "AA"
    (step,) = order(service, "C1").steps
    assert (step.start, step.station_ae) == (dt.datetime(2026, 12, 5, 7, 0, tzinfo=UTC), "CT_RAD_02")
    assert msa(send(intake, orm(control="SC", status="IP", accession="C1")))[0] == "AA"
    assert statuses(service, "C1") == [StepStatus.STARTED]
    assert msa(send(intake, orm(control="SC", status="CM", accession="C1")))[0] == "AA"
    assert statuses(service, "C1") == [StepStatus.COMPLETED]
    for control, status, final in (("CA", "CA", StepStatus.CANCELED), ("DC", "DC", StepStatus.DISCONTINUED)):
        accession = f"C{control}"
        send(intake, orm(accession=accession))
        assert msa(send(intake, orm(control=control, status=status, accession=accession)))[0] == "AA"
        assert statuses(service, accession) == [final]
        # A repeated cancel (new control id) is harmless.
        assert msa(send(intake, orm(control=control, status=status, accession=accession)))[0] == "AA"


def test_a_status_change_the_step_cannot_make_is_ae_and_changes_nothing(service: RisService, intake: Intake) -> None:
    send(intake, orm(accession="T1"))
    ack = send(intake, orm(control="SC", status="CM", accession="T1"))
    assert msa(ack)[:2][0] == "AE"
    assert "207^Application internal error" in err_lines(ack)[0]
    assert "cannot become COMPLETED" in msa(ack)[2]
    assert statuses(service, "T1") == [StepStatus.SCHEDULED]


def test_unknown_order_is_ae_204_naming_the_key_field(service: RisService, intake: Intake) -> None:
    ack = send(intake, orm(control="CA", status="CA", accession="NOPE", control_id="UNKNOWN1"))
    assert msa(ack)[0] == "AE"
    (err,) = err_lines(ack)
    assert err.startswith("ERR||OBR^1^18|204^Unknown key identifier^HL70357|E")
    assert "OBR-18 (Placer Field 1): no order with accession 'NOPE'" in err
    assert journal_codes(service) == [("UNKNOWN1", "AE")]
    # The AE is the answer to that message for good: a replay after the order exists gets it again.
    send(intake, orm(accession="NOPE"))
    assert send(intake, orm(control="CA", status="CA", accession="NOPE", control_id="UNKNOWN1")) == ack
    assert statuses(service, "NOPE") == [StepStatus.SCHEDULED]


def test_duplicate_accession_is_ae_205(service: RisService, intake: Intake) -> None:
    send(intake, orm(accession="D1"))
    ack = send(intake, orm(accession="D1", study_uid="2.25.999"))
    assert msa(ack)[0] == "AE"
    assert "205^Duplicate key identifier" in err_lines(ack)[0]
    assert len(service.export_items()) == 1


def test_bad_values_are_ae_naming_segment_and_field(service: RisService, intake: Intake) -> None:
    ack = send(intake, orm(modality="C T", patient_name="", control_id="BAD1"))
    assert msa(ack)[0] == "AE"
    errors = err_lines(ack)
    assert any(line.startswith("ERR||PID^1^5|101^Required field missing") for line in errors)
    assert any(line.startswith("ERR||OBR^1^24|102^Data type error") and "modality is not" in line for line in errors)
    assert service.export_items() == []
    assert journal_codes(service) == [("BAD1", "AE")]


def test_unknown_order_control_is_ae_103(service: RisService, intake: Intake) -> None:
    ack = send(intake, orm(control="RP", control_id="RP1"))
    assert msa(ack)[0] == "AE"
    assert err_lines(ack)[0].startswith("ERR||ORC^1^1|103^Table value not found^HL70357|E")
    assert service.export_items() == []


def test_a_failing_group_rolls_back_the_whole_message(service: RisService, intake: Intake) -> None:
    first = orm(accession="M1")
    second = [line for line in orm(accession="M1").split("\r") if line[:3] in ("ORC", "OBR")]
    ack = send(intake, first + "\r".join(second) + "\r")
    assert msa(ack)[0] == "AE"
    assert "205^Duplicate key identifier" in err_lines(ack)[0]
    assert service.find_order(OrderKey(accession_number="M1")) is None


@pytest.mark.parametrize(
    ("message", "error_start"),
    [
        ("this is not HL7", "ERR|||100^Segment sequence error"),
        ("MSH|^~\\&|HIS|KH|RIS|RAD|20261123||ORM^O01|||2.5\rPID|1", "ERR||MSH^1^10|101^Required field missing"),
    ],
)
def test_unreadable_messages_are_ar_and_not_journaled(
    service: RisService, intake: Intake, message: str, error_start: str
) -> None:
    ack = send(intake, message)
    assert msa(ack)[0] == "AR"
    assert err_lines(ack)[0].startswith(error_start)
    assert service.message_journal() == []


@pytest.mark.parametrize(
    ("message", "error_start"),
    [
        (adt("A01", control_id="AR1"), "ERR||MSH^1^9|201^Unsupported event code"),
        (orm(control_id="AR1").replace("ORM^O01^ORM_O01", "ORU^R01"), "ERR||MSH^1^9|200^Unsupported message type"),
        (orm(control_id="AR1").replace("ORM^O01^ORM_O01", ""), "ERR||MSH^1^9|101^Required field missing"),
        (orm(control_id="AR1", charset="KLINGON"), "ERR||MSH^1^18|103^Table value not found"),
    ],
)
def test_unsupported_messages_are_ar_and_journaled(
    service: RisService, intake: Intake, message: str, error_start: str
) -> None:
    ack = send(intake, message)
    assert msa(ack)[:2] == ["AR", "AR1"]
    assert err_lines(ack)[0].startswith(error_start)
    assert journal_codes(service) == [("AR1", "AR")]
    assert send(intake, message) == ack
    assert service.export_items() == []


def test_character_sets(service: RisService, intake: Intake) -> None:
    latin1 = orm(accession="L1", charset="8859/1", patient_name="MÜLLER^JÜRGEN")
    assert msa(send(intake, latin1, "latin-1"))[0] == "AA"
    assert order(service, "L1").patient.name == "MÜLLER^JÜRGEN"
    assert service.export_items()[0]["SpecificCharacterSet"] == "ISO_IR 100"
    # The same Latin-1 bytes declared as UTF-8 are not valid: AR on MSH-18, never a guessed name.
    wrong = orm(accession="L2", charset="UNICODE UTF-8", patient_name="MÜLLER^JÜRGEN", control_id="WRONG1")
    ack = send(intake, wrong, "latin-1")
    assert msa(ack)[0] == "AR"
    assert err_lines(ack)[0].startswith("ERR||MSH^1^18|102^Data type error")
    # Without MSH-18 the site's default applies.
    latin1_site = Intake(service, OrderMapping(), default_charset="8859/1")
    plain = orm(accession="L3", charset="", patient_name="GROß^BÄRBEL")
    assert msa(latin1_site.handle(plain.encode("latin-1")))[0] == "AA"
    assert order(service, "L3").patient.name == "GROß^BÄRBEL"
    # HL7 escapes are resolved.
    escaped = orm(accession="L4", patient_name="M\\E\\ller^Hans").replace("CT Thorax mit KM", "CT \\T\\ KM")
    assert msa(send(intake, escaped))[0] == "AA"
    assert order(service, "L4").procedures[0].description == "CT & KM"


def test_the_ack_follows_the_message_version(service: RisService, intake: Intake) -> None:
    ack = send(intake, ORM_V23.replace("DX_01", "").replace("|CR", "|XX"), "latin-1").decode("latin-1")
    header = ack.split("\r")[0].split("|")
    assert (header[2], header[3], header[4], header[5]) == ("RIS", "RADIOLOGIE", "ORBIS", "KLINIKUM")
    assert header[8] == "ACK^O01"  # v2.3: no message structure component
    assert (header[11], header[17]) == ("2.3", "8859/1")
    (err,) = [line for line in ack.split("\r") if line.startswith("ERR")]
    assert err == "ERR|OBR^1^24^102&Data type error&HL70357"


def test_omi_stores_one_item_per_ipc(service: RisService, intake: Intake) -> None:
    assert msa(send(intake, omi(accession="O1", steps=3)))[0] == "AA"
    stored = order(service, "O1")
    assert len(stored.steps) == 3
    assert {step.start for step in stored.steps} == {dt.datetime(2026, 12, 4, 9, 30, tzinfo=UTC)}


def test_patient_update_reaches_open_items_only(service: RisService, intake: Intake) -> None:
    send(intake, orm(accession="P1", patient_id="900"))
    send(intake, orm(accession="P2", patient_id="900"))
    send(intake, orm(control="CA", status="CA", accession="P2"))
    for event in ("A08", "A31"):
        name = f"NEU{event}^ANNA"
        assert msa(send(intake, adt(event, patient_id="900", name=name, sex="F")))[0] == "AA"
        items = {item["AccessionNumber"]: item["PatientName"] for item in service.export_items()}
        assert items == {"P1": name, "P2": "MÜLLER^JÜRGEN"}


def test_adt_for_a_patient_without_orders_is_aa_with_a_note(service: RisService, intake: Intake) -> None:
    ack = send(intake, adt("A08", patient_id="UNKNOWN7"))
    code, _control_id, text_ = msa(ack)
    assert (code, text_) == ("AA", "nothing to change: no patient 'UNKNOWN7' (issuer 'KLINIKUM')")
    assert err_lines(ack) == []
    code, _control_id, text_ = msa(send(intake, adt("A40", patient_id="1", prior_id="UNKNOWN8")))
    assert (code, text_) == ("AA", "nothing to change: no prior patient 'UNKNOWN8' (issuer 'KLINIKUM') to merge")


def test_merge_moves_open_items_to_the_surviving_patient(
    service: RisService, intake: Intake, settings: Settings
) -> None:
    send(intake, orm(accession="G1", patient_id="OLD1", patient_name="DOPPELT^ANNA"))
    ack = send(intake, adt("A40", patient_id="NEW1", name="RICHTIG^ANNA", prior_id="OLD1"))
    assert msa(ack)[0] == "AA"
    (item,) = service.export_items()
    assert (item["PatientID"], item["PatientName"]) == ("NEW1", "RICHTIG^ANNA")
    # The surviving patient was new here: the prior record still points at it.
    with service.db.reading() as session:
        prior = session.query(Patient).filter_by(patient_id="OLD1").one()
        survivor = session.query(Patient).filter_by(patient_id="NEW1").one()
        assert prior.merged_into_id == survivor.id


def test_a_database_failure_is_ae_207_and_stores_nothing(service: RisService, intake: Intake) -> None:
    with service.db.engine.begin() as connection:
        connection.execute(text("ALTER TABLE hl7_messages RENAME TO hl7_messages_away"))
    try:
        ack = send(intake, orm(accession="F1", control_id="FAIL1"))
    finally:
        with service.db.engine.begin() as connection:
            connection.execute(text("ALTER TABLE hl7_messages_away RENAME TO hl7_messages"))
    assert msa(ack)[0] == "AE"
    assert "207^Application internal error" in err_lines(ack)[0]
    assert "nothing was stored" in msa(ack)[2]
    assert service.find_order(OrderKey(accession_number="F1")) is None
    # The HIS sends it again once the database is back: now it is applied.
    assert msa(send(intake, orm(accession="F1", control_id="FAIL1")))[0] == "AA"


def test_an_unreachable_database_is_ae_207(settings: Settings, tmp_path: object) -> None:
    broken = RisService(Database("sqlite:////nonexistent-dir/ris.db"), settings)
    ack = Intake(broken, OrderMapping(), default_charset="UNICODE UTF-8").handle(orm().encode())
    assert msa(ack)[0] == "AE"
    assert "207" in err_lines(ack)[0]


def test_concurrent_orders_for_one_new_patient_all_apply(service: RisService, intake: Intake) -> None:
    """Connections racing to create the same patient: the loser retries on fresh data (PostgreSQL
    reported the unique key; SQLite serialises writers)."""
    messages = [orm(accession=f"RACE{number}", patient_id="NEWRACE") for number in range(8)]
    barrier = threading.Barrier(len(messages))
    acks: list[bytes] = []

    def send_after_barrier(message: str) -> None:
        barrier.wait()
        acks.append(send(intake, message))

    threads = [threading.Thread(target=send_after_barrier, args=(message,)) for message in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(msa(ack)[0] for ack in acks) == ["AA"] * len(messages)
    assert len(service.export_items()) == len(messages)


@contextlib.contextmanager
def writes_held(service: RisService) -> Iterator[None]:
    """Another connection holds the database until the block ends: an intake transaction started
    meanwhile waits (SQLite: the write lock; PostgreSQL: the patients table)."""
    blocker = Database(service.db.url)
    try:
        with blocker.transaction() as session:
            if blocker.is_sqlite:
                session.connection()  # BEGIN IMMEDIATE: the write lock
            else:
                session.execute(text("LOCK TABLE patients IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        blocker.dispose()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_orders_arriving_together_are_stored_together_and_a_bad_one_fails_alone(
    service: RisService, intake: Intake
) -> None:
    """Group commit: while one new order's transaction waits, the next ones form a group of their
    own. A duplicate accession and a replay in that group fail its shared transaction; each message
    is then received alone and gets its own answer."""
    first_ack = send(intake, orm(accession="TAKEN", control_id="FIRST"))
    group = service._new_order_messages
    acks: dict[str, bytes] = {}

    def send_in_thread(name: str, message: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: acks.setdefault(name, send(intake, message)))
        thread.start()
        return thread

    with writes_held(service):
        threads = [send_in_thread("running", orm(accession="G0"))]
        wait_until(lambda: group.running_items == 1, "the first group runs and waits for the database")
        threads += [
            send_in_thread("good", orm(accession="G1")),
            send_in_thread("duplicate", orm(accession="TAKEN", study_uid="2.25.4242")),
            send_in_thread("replay", orm(accession="TAKEN", control_id="FIRST")),
            send_in_thread("good too", orm(accession="G2")),
        ]
        wait_until(lambda: group.waiting == 4, "the others wait for the next group")
    for thread in threads:
        thread.join(30)
    assert {name: msa(ack)[0] for name, ack in acks.items()} == {
        "running": "AA",
        "good": "AA",
        "duplicate": "AE",
        "replay": "AA",
        "good too": "AA",
    }
    assert "205^Duplicate key identifier" in err_lines(acks["duplicate"])[0]
    assert acks["replay"] == first_ack
    assert sorted(item["AccessionNumber"] for item in service.export_items()) == ["G0", "G1", "G2", "TAKEN"]
    codes = journal_codes(service)
    assert sorted(code for _control_id, code in codes) == ["AA", "AA", "AA", "AA", "AE"]
    assert [control_id for control_id, _code in codes].count("FIRST") == 1


def test_orders_arriving_together_are_one_transaction(
    service: RisService, intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    """The group shares one transaction: its orders and journal rows are all there, each message
    with its own order, and the ACK of each names its own message. Each order is logged once."""
    caplog.set_level(logging.INFO, logger="ris.services")
    group = service._new_order_messages
    acks: dict[str, bytes] = {}
    with writes_held(service):
        first = threading.Thread(
            target=lambda: acks.setdefault("G10", send(intake, orm(accession="G10", control_id="G10")))
        )
        first.start()
        wait_until(lambda: group.running_items == 1, "the first group runs")
        threads = [
            threading.Thread(
                target=lambda n=number: acks.setdefault(
                    f"G{n}", send(intake, orm(accession=f"G{n}", control_id=f"G{n}"))
                )
            )
            for number in range(11, 16)
        ]
        for thread in threads:
            thread.start()
        wait_until(lambda: group.waiting == 5, "the others wait for the next group")
    for thread in [first, *threads]:
        thread.join(30)
    assert {name: msa(ack)[:2] for name, ack in acks.items()} == {f"G{n}": ["AA", f"G{n}"] for n in range(10, 16)}
    for entry in service.message_journal(limit=10):
        assert entry.order_id == order(service, entry.control_id).id
    scheduled = [record.getMessage() for record in caplog.records if record.getMessage().startswith("order scheduled")]
    for number in range(10, 16):
        expected = f"order scheduled order={order(service, f'G{number}').id} accession=G{number} steps=1 by=hl7:"
        assert sum(line.startswith(expected) for line in scheduled) == 1, (expected, scheduled)


def test_a_failing_answer_fails_only_its_own_message_of_a_group(service: RisService) -> None:
    """An error of our own while a group is stored (here: in the adapter's answer) reaches only the
    message that causes it; the group's others are received alone and stored."""

    def receive(control_id: str, answer: Answer) -> Receipt:
        message = InboundMessage("HIS", "KLINIKUM", control_id, "ORM^O01", control_id.encode())
        return service.receive_message(message, [ScheduleOrder(new_order())], Actor("hl7", "HIS"), answer)

    def applied(_outcome: Outcome) -> Reply:
        return Reply("AA", b"ack")

    def broken(_outcome: Outcome) -> Reply:
        raise RuntimeError("the answer cannot be worded")

    group = service._new_order_messages
    outcomes: dict[str, object] = {}

    def receive_in_thread(control_id: str, answer: Answer) -> threading.Thread:
        def run() -> None:
            try:
                outcomes[control_id] = receive(control_id, answer).reply.code
            except RuntimeError as error:
                outcomes[control_id] = str(error)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    with writes_held(service):
        threads = [receive_in_thread("FIRST", applied)]
        wait_until(lambda: group.running_items == 1, "the first group runs")
        threads += [
            receive_in_thread(control_id, answer)
            for control_id, answer in (("OK1", applied), ("BAD", broken), ("OK2", applied))
        ]
        wait_until(lambda: group.waiting == 3, "the others wait for the next group")
    for thread in threads:
        thread.join(30)
    assert outcomes == {"FIRST": "AA", "OK1": "AA", "BAD": "the answer cannot be worded", "OK2": "AA"}
    assert sorted(entry.control_id for entry in service.message_journal()) == ["FIRST", "OK1", "OK2"]
    assert len(service.export_items()) == 3
