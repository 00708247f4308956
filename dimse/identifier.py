"""C-FIND identifiers of the Modality Worklist: request Dataset -> :class:`WorklistQuery` and
return keys; stored :data:`Item` -> response Dataset with exactly the requested keys.

Matching (PS3.4 C.2.2.2, K.2.2.2):

- an empty key, or ``*`` alone, is universal: it only asks for the attribute back;
- a value with ``*`` or ``?`` is a wildcard on the whole value (also for PN: ``MUELL*``);
- DA, TM and DT values are single values or ranges (``dimse.ranges``); a single DA is one day, a
  single TM or DT stands for the period its precision names;
- several UID values (``1.2.3\\1.2.4``) are List of UID matching; several values of another VR
  are refused (A900), we do not negotiate multiple value matching;
- a sequence with one item is sequence matching: its keys match inside the item;
- with the date-time flag of SOP Class Extended Negotiation, SPS Start Date and Time are matched
  as one date-time (C.2.2.2.5); without it, each on its own;
- person names lose insignificant trailing ``^``/``=``, as stored names do;
- private and unknown attributes come back empty and are not matched (pending status FF01).

Strings are Unicode here: pydicom decoded them in the identifier's Specific Character Set, and
each response carries its item's own character set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import PersonName

from dimse import ranges
from ris.domain.errors import FieldProblem, ValidationFailed
from ris.domain.values import normalize_person_name
from ris.domain.worklist import (
    SPS_START_DATE,
    SPS_START_TIME,
    START_DATETIME,
    AnyOf,
    Criterion,
    Item,
    Matcher,
    Range,
    SingleValue,
    Wildcard,
    is_universal_pattern,
)

SPECIFIC_CHARACTER_SET = 0x00080005
SPECIFIC_CHARACTER_SET_TAG = Tag(SPECIFIC_CHARACTER_SET)
# Sequence matching below this depth is refused: no worklist attribute is nested deeper, and a
# bound keeps hostile identifiers from exhausting the stack.
MAX_SEQUENCE_DEPTH = 4
# Leading spaces are insignificant in these VRs (PS3.5 6.2); trailing ones are padding everywhere.
_TRIMMED_VRS = frozenset({"AE", "CS", "DA", "DT", "TM", "UI", "IS", "DS"})
_RANGE_VRS = frozenset({"DA", "TM", "DT"})
# The elements of a response dataset (pydicom's own mapping type; it also holds raw elements).
_Elements = dict[BaseTag, DataElement | RawDataElement]
# VRs whose value pydicom writes from the text itself (multi-valued ones joined with backslashes).
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})


@dataclass(frozen=True)
class MatchingOptions:
    zone: ZoneInfo  # the site's zone: DT values with a UTC offset are converted to it
    combined_datetime: bool = False  # negotiated C.2.2.2.5 combined date-time matching
    case_insensitive_patient_name: bool = False
    case_insensitive_modality: bool = False


@dataclass(frozen=True)
class ReturnKey:
    """One attribute the SCU wants back. For a sequence, ``items`` are the keys wanted inside each
    item, or ``None`` for every attribute the item has."""

    tag: BaseTag
    keyword: str  # "" for private and unknown attributes: always returned empty
    vr: str
    items: tuple[ReturnKey, ...] | None = None


@dataclass(frozen=True)
class ParsedIdentifier:
    criteria: tuple[Criterion, ...]
    return_keys: tuple[ReturnKey, ...]
    # Keys with a value that we cannot match on (private, unknown): answered with status FF01.
    unsupported_keys: tuple[str, ...]


def parse_identifier(identifier: Dataset, options: MatchingOptions) -> ParsedIdentifier:
    """Raises :class:`ValidationFailed` naming each key that cannot be used as given."""
    parser = _Parser(options)
    keys = parser.keys(identifier, prefix="", depth=0)
    parser.add_date_time()
    if parser.problems:
        raise ValidationFailed(parser.problems)
    return ParsedIdentifier(tuple(parser.criteria), keys, tuple(parser.unsupported))


class _Parser:
    def __init__(self, options: MatchingOptions) -> None:
        self.options = options
        self.criteria: list[Criterion] = []
        self.unsupported: list[str] = []
        self.problems: list[FieldProblem] = []
        self.date_time: dict[str, str] = {}  # SPS start date/time text, matched together or apart

    def keys(self, dataset: Dataset, prefix: str, depth: int) -> tuple[ReturnKey, ...]:
        keys = []
        for element in dataset:
            tag = element.tag
            if tag.element == 0 or tag == SPECIFIC_CHARACTER_SET:
                continue  # group lengths; the character set is never matched (C.2.2.2)
            if tag.is_private or not element.keyword:
                keys.append(ReturnKey(tag, "", element.VR))
                if _has_value(element):
                    self.unsupported.append(str(tag))
                continue
            path = prefix + element.keyword
            if element.VR == "SQ":
                keys.append(self.sequence_key(element, path, depth))
                continue
            keys.append(ReturnKey(tag, element.keyword, element.VR))
            try:
                self.add_criterion(path, element.VR, _texts(element))
            except ValueError as exc:
                self.problems.append(FieldProblem(path, str(exc)))
        return tuple(keys)

    def sequence_key(self, element: DataElement, path: str, depth: int) -> ReturnKey:
        items = element.value or ()
        if not items:
            return ReturnKey(element.tag, element.keyword, "SQ")
        if len(items) > 1:
            self.problems.append(FieldProblem(path, "a sequence key holds at most one item"))
        if depth + 1 >= MAX_SEQUENCE_DEPTH:
            self.problems.append(FieldProblem(path, f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels"))
            return ReturnKey(element.tag, element.keyword, "SQ")
        return ReturnKey(element.tag, element.keyword, "SQ", self.keys(items[0], path + ".", depth + 1))

    def add_criterion(self, path: str, vr: str, texts: list[str]) -> None:
        if not texts or (len(texts) == 1 and is_universal_pattern(texts[0])):
            return
        if len(texts) > 1:
            if vr != "UI":
                raise ValueError("several values are only allowed for UIDs (List of UID matching)")
            self.criteria.append(Criterion(path, AnyOf(tuple(texts))))
            return
        text = texts[0]
        if path in (SPS_START_DATE, SPS_START_TIME):
            _bounds_of(vr, text, self.options.zone)  # check it now, combine later
            self.date_time[path] = text
            return
        if vr == "PN":
            text = normalize_person_name(text)
        self.criteria.append(Criterion(path, _matcher(vr, text, self.options.zone), case_insensitive=self.folds(path)))

    def folds(self, path: str) -> bool:
        if path == "PatientName":
            return self.options.case_insensitive_patient_name
        if path == "ScheduledProcedureStepSequence.Modality":
            return self.options.case_insensitive_modality
        return False

    def add_date_time(self) -> None:
        date, time = self.date_time.get(SPS_START_DATE), self.date_time.get(SPS_START_TIME)
        if date is not None and time is not None and self.options.combined_datetime:
            self.criteria.append(Criterion(START_DATETIME, Range(*ranges.combined_bounds(date, time))))
            return
        if date is not None:
            self.criteria.append(Criterion(SPS_START_DATE, _matcher("DA", date, self.options.zone)))
        if time is not None:
            self.criteria.append(Criterion(SPS_START_TIME, _matcher("TM", time, self.options.zone)))


def _texts(element: DataElement) -> list[str]:
    """The key's values as text, without padding; [] for an empty key."""
    value = element.value
    if value is None or isinstance(value, bytes):
        return []
    values = list(value) if isinstance(value, MultiValue | list) else [value]
    strip = str.strip if element.VR in _TRIMMED_VRS else str.rstrip
    texts = [strip(str(v), " ") for v in values]
    return [] if texts == [""] else texts


def _has_value(element: DataElement) -> bool:
    value = element.value
    if isinstance(value, bytes):  # UN: a private tag in implicit VR
        return bool(value.strip(b" \x00"))
    return value is not None and value != "" and value != []


def _bounds_of(vr: str, text: str, zone: ZoneInfo) -> ranges.Bounds:
    if vr == "DA":
        return ranges.date_bounds(text)
    if vr == "TM":
        return ranges.time_bounds(text)
    return ranges.datetime_bounds(text, zone)


def _matcher(vr: str, text: str, zone: ZoneInfo) -> Matcher:
    if vr in _RANGE_VRS:
        low, high = _bounds_of(vr, text, zone)
        return SingleValue(text) if vr == "DA" and ranges.split_range(text) is None else Range(low, high)
    if vr != "UI" and ("*" in text or "?" in text):
        return Wildcard(text)
    return SingleValue(text)


# --- responses ----------------------------------------------------------------------------


def response_identifier(item: Item, keys: Iterable[ReturnKey]) -> Dataset:
    """The C-FIND response for ``item``: its Specific Character Set and exactly ``keys``, the
    ones the item does not have empty."""
    elements: _Elements = {}
    character_set = item.get("SpecificCharacterSet", "")
    if character_set:
        elements[SPECIFIC_CHARACTER_SET_TAG] = _element(SPECIFIC_CHARACTER_SET_TAG, "CS", character_set)
    _fill(elements, item, keys)
    # A Dataset over a ready dict of elements: Dataset.add() checks each element on its way in,
    # which a response of fresh, well-formed elements does not need (one per match and key).
    return Dataset(elements)


def _fill(elements: _Elements, source: Item, keys: Iterable[ReturnKey]) -> None:
    for key in keys:
        value = source.get(key.keyword) if key.keyword else None
        if key.vr == "SQ":
            items = value if isinstance(value, list) else []
            elements[key.tag] = DataElement(key.tag, "SQ", Sequence([_sequence_item(i, key.items) for i in items]))
        else:
            elements[key.tag] = _element(key.tag, key.vr, value if isinstance(value, str) else None)


def _sequence_item(source: Item, keys: tuple[ReturnKey, ...] | None) -> Dataset:
    elements: _Elements = {}
    _fill(elements, source, keys if keys is not None else _every_key(tuple(source)))
    return Dataset(elements)


def _every_key(keywords: tuple[str, ...]) -> tuple[ReturnKey, ...]:
    return tuple(key for key in map(_key_for, keywords) if key is not None)


@lru_cache(maxsize=512)
def _key_for(keyword: str) -> ReturnKey | None:
    tag = tag_for_keyword(keyword)
    return None if tag is None else ReturnKey(Tag(tag), keyword, dictionary_VR(tag))


def _element(tag: BaseTag, vr: str, value: str | None) -> DataElement:
    # Stored values were validated when they were stored: they go in as they are, without
    # pydicom's conversion (splitting at backslashes, parsing) and checks, which would only cost
    # time per response. Text VRs are written from a str as is; a person name needs its object.
    if value and vr in _TEXT_VRS:
        return DataElement(tag, vr, value, already_converted=True)
    if value and vr == "PN":
        return DataElement(tag, vr, PersonName(value), already_converted=True)
    return DataElement(tag, vr, value or None, validation_mode=pydicom_config.IGNORE)
