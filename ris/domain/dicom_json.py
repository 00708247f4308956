"""Datasets as the DICOM JSON model (PS3.18 F.2): a plain, lossless form the domain can read.

A dataset is a mapping from the tag as eight upper-case hex digits (``"00400252"``) to an element
``{"vr": "CS", "Value": [...]}``; an empty element has no ``"Value"``; a sequence's values are
datasets; a person name's value is ``{"Alphabetic": "FAMILY^GIVEN"}``. The DICOM adapter converts
to and from pydicom; stored MPPS attributes and outbox payloads use this form, so nothing a
modality sent is lost and the VR of every element travels with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DicomJson = dict[str, Any]


@dataclass(frozen=True)
class Attribute:
    """A tag with the keyword used in messages ("PerformedProcedureStepStatus is missing")."""

    tag: str
    keyword: str
    vr: str


def has(dataset: DicomJson, attribute: Attribute) -> bool:
    return attribute.tag in dataset


def values(dataset: DicomJson, attribute: Attribute) -> list[Any]:
    element = dataset.get(attribute.tag)
    if not isinstance(element, dict):
        return []
    found = element.get("Value", [])
    return found if isinstance(found, list) else []


def text(dataset: DicomJson, attribute: Attribute) -> str:
    """The first value as text ("" when absent or empty); a person name's alphabetic group."""
    found = values(dataset, attribute)
    if not found or found[0] is None:
        return ""
    first = found[0]
    if isinstance(first, dict):
        return str(first.get("Alphabetic", "")).strip()
    return str(first).strip()


def items(dataset: DicomJson, attribute: Attribute) -> list[DicomJson]:
    """The items of a sequence (an empty list when absent or empty)."""
    return [item for item in values(dataset, attribute) if isinstance(item, dict)]


def element(attribute: Attribute, *element_values: Any) -> DicomJson:
    """One element in the JSON model; no values makes an empty (zero-length) element."""
    if not element_values:
        return {"vr": attribute.vr}
    return {"vr": attribute.vr, "Value": list(element_values)}


def dataset(*pairs: tuple[Attribute, Any]) -> DicomJson:
    """A dataset from (attribute, value) pairs; a list gives all values (datasets for a sequence),
    an empty list an empty element."""
    built: DicomJson = {}
    for attribute, value in pairs:
        built[attribute.tag] = element(attribute, *value) if isinstance(value, list) else element(attribute, value)
    return built
