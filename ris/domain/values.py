"""DICOM value representation rules (PS3.5 6.2) for the values we store and send.

Each ``*_problem`` function returns ``None`` for a good value or a short phrase saying what is
wrong ("is longer than 64 characters"), so that callers can prefix the field's own name.
"""

from __future__ import annotations

import datetime as dt
import re

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_CS_CHARS = re.compile(r"[A-Z0-9 _]*")
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")

SEXES = frozenset({"M", "F", "O"})
PRIORITIES = frozenset({"STAT", "HIGH", "ROUTINE", "MEDIUM", "LOW"})

# Modality (0008,0060) defined terms, PS3.3 C.7.3.1.1.1, the current ones.
MODALITIES = frozenset(
    """
    AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DOC DX ECG EPS ES FID GM HC HD IO IOL IVOCT IVUS KER KO
    LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PA PLAN POS PR PT PX REG RESP RF RG
    RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP
    TG US VA XA XAPS XC
    """.split()  # noqa: SIM905 - a word list reads best as text
)


def text_problem(value: str, max_length: int) -> str | None:
    """LO/SH/LT-style single-valued text: length and no control characters or backslash."""
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    if "\\" in value:
        return "must not contain a backslash"
    if _CONTROL_CHARS.search(value):
        return "must not contain control characters"
    return None


def lo_problem(value: str) -> str | None:
    return text_problem(value, 64)


def sh_problem(value: str) -> str | None:
    return text_problem(value, 16)


def cs_problem(value: str) -> str | None:
    if len(value) > 16:
        return "is longer than 16 characters"
    if not _CS_CHARS.fullmatch(value):
        return "may only hold upper-case letters, digits, space and underscore"
    return None


def ae_title_problem(value: str) -> str | None:
    stripped = value.strip(" ")
    if not stripped:
        return "must not be empty"
    if len(value) > 16:
        return "is longer than 16 characters"
    if "\\" in value or _CONTROL_CHARS.search(value):
        return "must not contain a backslash or control characters"
    return None


def person_name_problem(value: str) -> str | None:
    """PN: up to three component groups (alphabetic=ideographic=phonetic) of up to five
    ``^``-separated components, each group at most 64 characters."""
    if "\\" in value or _CONTROL_CHARS.search(value.replace("\x1b", "")):
        return "must not contain a backslash or control characters"
    groups = value.split("=")
    if len(groups) > 3:
        return "has more than three component groups"
    for group in groups:
        if len(group) > 64:
            return "has a component group longer than 64 characters"
        if group.count("^") > 4:
            return "has more than five components (family^given^middle^prefix^suffix)"
    return None


def date_problem(value: str) -> str | None:
    try:
        parse_da(value)
    except ValueError:
        return "is not a date YYYYMMDD"
    return None


def time_problem(value: str) -> str | None:
    try:
        parse_tm(value)
    except ValueError:
        return "is not a time HHMM[SS[.FFFFFF]]"
    return None


def uid_problem(value: str) -> str | None:
    if len(value) > 64:
        return "is longer than 64 characters"
    if not _UID.fullmatch(value):
        return "is not a UID (digits and dots, no leading zeros, e.g. 1.2.840.10008.1.2)"
    return None


def modality_problem(value: str) -> str | None:
    if value not in MODALITIES:
        return "is not a DICOM modality code (e.g. CT, MR, US, CR, DX, MG, NM, PT, XA)"
    return None


def sex_problem(value: str) -> str | None:
    if value and value not in SEXES:
        return "must be M, F, O or empty"
    return None


def priority_problem(value: str) -> str | None:
    if value and value not in PRIORITIES:
        return "must be one of STAT, HIGH, ROUTINE, MEDIUM, LOW"
    return None


def parse_da(value: str) -> dt.date:
    if len(value) != 8 or not value.isdigit():
        raise ValueError(f"not a DICOM date: {value!r}")
    return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))


def parse_tm(value: str) -> dt.time:
    """DICOM TM with the optional parts PS3.5 allows: HH, HHMM, HHMMSS, HHMMSS.F{1,6}."""
    whole, _, fraction = value.partition(".")
    if len(whole) not in (2, 4, 6) or not whole.isdigit() or (fraction and (len(whole) != 6 or not fraction.isdigit())):
        raise ValueError(f"not a DICOM time: {value!r}")
    if len(fraction) > 6:
        raise ValueError(f"not a DICOM time: {value!r}")
    hour, minute, second = int(whole[:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
    second = min(second, 59)  # PS3.5 allows a leap second "60"
    return dt.time(hour, minute, second, int(fraction.ljust(6, "0")) if fraction else 0)


def normalize_person_name(value: str) -> str:
    """A PN value without trailing component (``^``) and group (``=``) separators or padding:
    PS3.5 6.2 makes them insignificant, so ``MUELLER^HANS^^`` and ``MUELLER^HANS`` are one name and
    must match each other as whole strings."""
    return value.rstrip("^= ")


def fold_case(text: str) -> str:
    """Upper-case folding that keeps the length (so ``?`` still matches one character):
    characters whose upper case is longer, like ``ß``, stay as they are."""
    upper = text.upper()
    if len(upper) == len(text):
        return upper
    return "".join(upper if len(upper := ch.upper()) == 1 else ch for ch in text)
