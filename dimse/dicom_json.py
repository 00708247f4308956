"""pydicom datasets <-> the DICOM JSON model the service layer keeps (ris.domain.dicom_json).

pydicom's value validation is switched off for these conversions: the domain checks what it needs
and keeps the rest as sent (a modality's odd but harmless value must not lose the step), and
pydicom's warnings quote the value, which can be a patient's name. Its switch is process-wide, so
conversions take a lock to restore it correctly.
"""

from __future__ import annotations

import threading

from pydicom import config
from pydicom.dataset import Dataset

from ris.domain.dicom_json import DicomJson

_validation_switch = threading.Lock()


class UnreadableDataset(ValueError):
    """The received data set cannot be decoded (broken encoding, absurdly deep nesting)."""


def to_json(dataset: Dataset) -> DicomJson:
    try:
        with _validation_switch, config.disable_value_validation():
            result: DicomJson = dataset.to_json_dict()
    except (ValueError, TypeError, KeyError, LookupError, RecursionError, UnicodeError) as exc:
        # The message of the cause may quote a value (a patient's name): it stays out of the log.
        raise UnreadableDataset(f"the data set cannot be decoded ({type(exc).__name__})") from exc
    return result


def from_json(document: DicomJson) -> Dataset:
    with _validation_switch, config.disable_value_validation():
        return Dataset.from_json(document)
