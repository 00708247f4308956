"""HL7 v2 test messages: realistic orders and ADT messages in the shapes HIS systems send them.

Builders take only what a test cares about; identifiers are unique per call unless given.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator

from hl7.mllp import Frame, MllpDecoder, frame

_numbers = itertools.count(1)


def segment(name: str, fields: dict[int, str]) -> str:
    """One segment from {field number: ER7 text}; fields not given stay empty."""
    return "|".join([name] + [fields.get(number, "") for number in range(1, max(fields, default=0) + 1)])


def msh(
    control_id: str,
    message_type: str = "ORM^O01^ORM_O01",
    *,
    version: str = "2.5.1",
    charset: str = "UNICODE UTF-8",
    sender: str = "HIS",
    facility: str = "KLINIKUM",
) -> str:
    return (
        f"MSH|^~\\&|{sender}|{facility}|RIS|RADIOLOGIE|20261123083000||{message_type}|{control_id}|P|{version}"
        f"|||||DEU|{charset}"
    ).rstrip("|")


def message(*segments: str) -> str:
    return "\r".join(segments) + "\r"


def unique(prefix: str) -> str:
    return f"{prefix}{next(_numbers):06d}"


def orm(
    *,
    control_id: str | None = None,
    control: str = "NW",
    status: str = "SC",
    accession: str | None = None,
    patient_id: str = "4711",
    patient_name: str = "MÜLLER^JÜRGEN^^^^^L",
    start: str = "20261204164500",
    modality: str = "CT",
    station: str = "CT_RAD_01",
    priority: str = "R",
    version: str = "2.5.1",
    charset: str = "UNICODE UTF-8",
    sender: str = "HIS",
    study_uid: str | None = None,
    number: int | None = None,
    extra: tuple[str, ...] = (),
) -> str:
    """An ORM^O01 the way the benchmark and most v2.5 senders write it: start in ORC-7.4 and OBR-27.4,
    ZDS-1 study UID. The identifiers derive from ``number`` (pass the same to talk about the same
    order again, e.g. XO after NW); ``extra`` segments are appended."""
    number = number or next(_numbers)
    control_id = control_id or unique("MSG")
    accession = accession if accession is not None else f"A{number:08d}"
    timing = f"^^^{start}^^{priority}"
    message_type = "ORM^O01^ORM_O01" if version >= "2.3.1" else "ORM^O01"
    segments = [
        msh(control_id, message_type, version=version, charset=charset, sender=sender),
        segment("PID", {1: "1", 3: f"{patient_id}^^^KLINIKUM^PI", 5: patient_name, 7: "19600101", 8: "M"}),
        segment("PV1", {1: "1", 2: "I", 3: "RAD^201^1^KLINIKUM", 8: "10001^WEBER^KLAUS^^^DR.", 19: f"V{number}"}),
        segment("ORC", {1: control, 2: f"PL{number}^HIS", 5: status, 7: timing, 12: "10002^BRAUN^ANDREA^^^DR."}),
        segment(
            "OBR",
            {
                1: "1",
                2: f"PL{number}^HIS",
                4: "CTTHXKM^CT Thorax mit KM^99RAD",
                16: "10002^BRAUN^ANDREA^^^DR.",
                18: accession,
                19: f"RP{number}",
                20: f"SPS{number}",
                21: station,
                24: modality,
                27: timing,
                31: "^V.a. Pneumonie",
                34: "20003&KRÜGER&STEFAN&&&DR.",
            },
        ),
        segment("ZDS", {1: f"{study_uid or f'2.25.{number}'}^RIS^Application^DICOM"}),
        *extra,
    ]
    return message(*segments)


def omi(*, control_id: str | None = None, accession: str | None = None, steps: int = 2) -> str:
    """An OMI^O23 v2.5.1: TQ1-7 start with a UTC offset, one IPC per scheduled step."""
    number = next(_numbers)
    control_id = control_id or f"OMI{number:08d}"
    accession = accession or f"B{number:08d}"
    ipcs = [
        segment(
            "IPC",
            {
                1: accession,
                2: f"RP{number}",
                3: f"2.25.{number}77",
                4: f"SPS{number}-{index}",
                5: "MR",
                6: f"MRKNIE{index}^MRT Knie Sequenz {index}^99RAD",
                7: "MR3T1",
                8: "RAD UG R1",
                9: "MR_3T_01",
            },
        )
        for index in range(1, steps + 1)
    ]
    return message(
        msh(control_id, "OMI^O23^OMI_O23"),
        segment("PID", {1: "1", 3: "5150^^^KLINIKUM^PI", 5: "SCHRÖDER^ANNA", 7: "19820304", 8: "F"}),
        segment("PV1", {1: "1", 2: "O", 3: "AMB^^^KLINIKUM"}),
        segment("ORC", {1: "NW", 2: f"PL{number}^HIS", 5: "SC"}),
        segment("TQ1", {1: "1", 7: "20261204093000+0000", 9: "S"}),
        segment("OBR", {1: "1", 2: f"PL{number}^HIS", 4: "MRKNIE^MRT Knie links^99RAD"}),
        *ipcs,
    )


def adt(
    event: str,
    *,
    control_id: str | None = None,
    patient_id: str = "4711",
    name: str = "MÜLLER^JÜRGEN",
    birth_date: str = "19600101",
    sex: str = "M",
    prior_id: str = "",
) -> str:
    """ADT^A08/A31 (PID) or ADT^A40 (PID + MRG with ``prior_id``)."""
    control_id = control_id or unique(f"ADT{event}")
    segments = [
        msh(control_id, f"ADT^{event}^ADT_{'A39' if event == 'A40' else 'A01'}"),
        segment("EVN", {1: event, 2: "20261123083000"}),
        segment("PID", {1: "1", 3: f"{patient_id}^^^KLINIKUM^PI", 5: name, 7: birth_date, 8: sex}),
    ]
    if prior_id:
        segments.append(segment("MRG", {1: f"{prior_id}^^^KLINIKUM^PI"}))
    return message(*segments)


def read_frames(connection: socket.socket, count: int, timeout: float = 30.0) -> list[bytes]:
    """The next ``count`` frames from ``connection``."""
    connection.settimeout(timeout)
    decoder = MllpDecoder()
    frames: list[bytes] = []
    while len(frames) < count:
        data = connection.recv(65536)
        if not data:
            break
        frames += [event.payload for event in decoder.feed(data) if isinstance(event, Frame)]
    return frames


def framed(*messages: str) -> bytes:
    return b"".join(frame(text.encode("utf-8")) for text in messages)


def msa(ack: bytes) -> list[str]:
    """MSA-1, MSA-2 and MSA-3 of an ACK."""
    line = next(line for line in ack.decode("utf-8").split("\r") if line.startswith("MSA|"))
    return ([*line.split("|"), "", "", ""])[1:4]


def err_lines(ack: bytes) -> list[str]:
    return [line for line in ack.decode("utf-8").split("\r") if line.startswith("ERR|")]


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# Real-world variance, one message per HL7 version (as text; segments end with CR).
# v2.3 from a German HIS in Latin-1: no seconds in the start (ORC-7.4 only), no ZDS, a procedure
# code without coding system, an escaped '&' in the description, priority S.
ORM_V23 = message(
    "MSH|^~\\&|ORBIS|KLINIKUM|RIS|RADIOLOGIE|200403241532||ORM^O01|MSG00001|P|2.3||||||8859/1",
    "PID|1||0012345^^^KLINIKUM^PI||Schröder^Hans-Peter^^^Dr.^^L||19501203|M|||Hauptstr. 1^^Köln^^50667^D",
    "PV1|1|I|STAT3^201^1^RAD|||||0815^Wagner^Eva^^^Dr.|||||||||||4711",
    "ORC|NW|10001^ORBIS|20001^RIS||SC||^^^200403251000^^S||200403241530|||0815^Wagner^Eva^^^Dr.",
    "OBR|1|10001^ORBIS|20001^RIS|RTHO^Thorax p.a. \\T\\ seitlich^|||200403241530|||||||||0815^Wagner^Eva^^^Dr.||"
    "ACC0001|RP0001|SPS0001|DX_01|||CR",
)
# v2.4 (ASCII): the patient only in PID-2, the start only in OBR-27.4 with a UTC offset, no station
# (a station rule decides), two notes with a line break escape, priority A, a ZDS study UID.
ORM_V24 = message(
    "MSH|^~\\&|SAP|KH|RIS|RAD|20110512083000||ORM^O01^ORM_O01|SAP0000042|P|2.4|||AL|NE||ASCII",
    "PID|1|7654321^^^KH|||Mayer^Anna^Maria||19821130|F",
    "PV1||O|NOTAUF^^^KH",
    "ORC|NW|P42^SAP|F42^RIS||SC",
    "OBR|1|P42^SAP|F42^RIS|CTSCHN^CT Schaedel nativ^99KH||||||||||||||A42|RP42|SPS42||||CT|||^^^20110513093000+0200^^A",
    "NTE|1||Patient hat Platzangst\\.br\\bitte Sedierung",
    "NTE|2||Kontrastmittelallergie",
    "ZDS|1.2.276.0.7230010.3.1.2.42^RIS^Application^DICOM",
)
# v2.5.1 (UTF-8): the start in TQ1-7 with an offset and no ORC-7, performing physician in OBR-34.
ORM_V251 = message(
    "MSH|^~\\&|HIS|KLINIKUM|RIS|RADIOLOGIE|20261123083729||ORM^O01^ORM_O01|IWTGT300000000|P|2.5.1|||||DEU|"
    "UNICODE UTF-8",
    "PID|1||PIWTGT3000000^^^KLINIKUM^PI||ŞAHİN^AYŞE^^^^^L||20020722|F|||Gartenweg 25^^Berlin^^10115^DEU^H",
    "PV1|1|I|RAD^^^KLINIKUM|||||10004^ÖZDEMIR^AYLIN^^^DR.|||||||||||VIWTGT30000000",
    "ORC|NW|PLIWTGT30000000^HIS|||SC||||20261123083729|||10004^ÖZDEMIR^AYLIN^^^DR.",
    "TQ1|1||||||20261204164500+0100||R",
    "OBR|1|PLIWTGT30000000^HIS||USABD^Sonographie Abdomen^99RAD||||||||||||10004^ÖZDEMIR^AYLIN^^^DR.||"
    "AIWTGT30000000|RPIWTGT30000000|SPSIWTGT30000000|US_GYN_01|||US|||||||^V.a. Pneumonie|||"
    "20003&KRÜGER&STEFAN&&&DR.||||||||||USABD^Sonographie Abdomen^99RAD",
    "ZDS|2.25.312048616278825272194188783533814962390^RIS^Application^DICOM",
)
