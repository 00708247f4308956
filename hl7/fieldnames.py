"""Field names from hl7apy's HL7 v2 reference ("OBR-24" → "Diagnostic Serv Sect ID").

Used off the hot path only: in the text of ERR segments and in the mapping view of ``ris hl7
mapping``. Lookups are cached; Z segments and fields hl7apy does not know have no name.
"""

from __future__ import annotations

from functools import lru_cache

from hl7apy import SUPPORTED_LIBRARIES, load_reference
from hl7apy.exceptions import HL7apyException

from hl7.er7 import FieldPath

FALLBACK_VERSION = "2.5.1"
# Abbreviations hl7apy writes in capitals that read better that way.
_KEEP_UPPER = frozenset({"ID", "AE", "UID", "DT", "HL7"})


@lru_cache(maxsize=2048)
def field_name(segment: str, field: int, version: str = FALLBACK_VERSION) -> str:
    """The standard's name of field ``segment``-``field`` in ``version`` (or in 2.5.1 when hl7apy has
    no such version, or the field only exists there); "" when unknown."""
    for candidate in dict.fromkeys((version if version in SUPPORTED_LIBRARIES else FALLBACK_VERSION, FALLBACK_VERSION)):
        try:
            reference = load_reference(f"{segment}_{field}", "Field", candidate)
        except HL7apyException:
            continue
        return " ".join(word if word in _KEEP_UPPER else word.capitalize() for word in str(reference[3]).split("_"))
    return ""


def describe(path: FieldPath, version: str = FALLBACK_VERSION) -> str:
    """``path`` with the name of its field, e.g. "OBR-24 (Diagnostic Serv Sect ID)"."""
    name = field_name(path.segment, path.field, version)
    return f"{path} ({name})" if name else str(path)
