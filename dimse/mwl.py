"""Modality Worklist Information Model - FIND: the C-FIND SCP.

One query = one service call = one SQL statement. The items are loaded first, then streamed as
pending responses; a C-CANCEL is checked between responses.

More matches than ``mwl_result_cap``: the first ``cap`` items (by start time) are sent as pending
responses, then the final status is A700 "Refused: Out of resources" with an Error Comment saying
the list was cut. Table K.4-1 defines no warning for a partial worklist (B001 belongs to the
paged Repository Query, C.6.4, not to the worklist) and a success would let the scanner show a cut
list as complete; A700 is the defined status for an SCP that stopped for lack of resources, and
scanners that keep what they received still show the earliest items.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from dimse.ae import DicomService, Handler
from dimse.identifier import MatchingOptions, parse_identifier, response_identifier
from dimse.status import C_FIND, RESULT_CAP_STATUS, failure_status, status_dataset
from ris.domain.errors import DomainError, FieldProblem, ValidationFailed
from ris.domain.worklist import WorklistQuery
from ris.metrics import NO_METRICS, Metrics
from ris.services import RisService
from ris.settings import Settings

log = logging.getLogger(__name__)

SUCCESS, PENDING, PENDING_WITH_UNSUPPORTED_KEYS, CANCELLED = 0x0000, 0xFF00, 0xFF01, 0xFE00
OUTGOING_QUEUE_LIMIT = 32
OUTGOING_POLL_SECONDS = 0.0001

FindResponse = tuple[int | Dataset, Dataset | None]

# SOP Class Extended Negotiation for the worklist (PS3.4 K.5.1): byte 1 reserved, byte 2 the
# date-time (combined) matching flag, byte 3 fuzzy semantic person name matching, byte 4
# timezone query adjustment. We perform combined date-time matching when asked and decline the
# others (names match literally, times are the site's local time).
_DATE_TIME_BYTE = 1
_SUPPORTED_BYTES = frozenset({0, _DATE_TIME_BYTE})


class ModalityWorklistService(DicomService):
    name = "worklist"
    sop_classes = (ModalityWorklistInformationFind,)

    def __init__(self, service: RisService, settings: Settings, metrics: Metrics = NO_METRICS) -> None:
        self.service = service
        self.metrics = metrics
        self.result_cap = settings.mwl_result_cap
        self.zone = settings.zone
        self.case_insensitive_patient_name = settings.mwl_case_insensitive_patient_name
        self.case_insensitive_modality = settings.mwl_case_insensitive_modality

    def handlers(self) -> list[tuple[evt.EventType, Handler]]:
        return [(evt.EVT_C_FIND, self.measured_find)]

    def measured_find(self, event: evt.Event) -> Iterator[FindResponse]:
        """``on_find``, timed and counted by its final status. pynetdicom stops reading the
        responses at the first status that is not pending, so that one is counted before it goes."""
        started = time.perf_counter()
        for status, identifier in self.on_find(event):
            code = status if isinstance(status, int) else int(status.Status)
            if code not in (PENDING, PENDING_WITH_UNSUPPORTED_KEYS):
                self.metrics.worklist_query(code, time.perf_counter() - started)
            yield status, identifier
            if code not in (PENDING, PENDING_WITH_UNSUPPORTED_KEYS):
                return
        self.metrics.worklist_query(SUCCESS, time.perf_counter() - started)

    def sop_class_extended(self, sop_class: str, request: bytes) -> bytes | None:
        return bytes(value if index in _SUPPORTED_BYTES else 0 for index, value in enumerate(request))

    def options(self, assoc: Association) -> MatchingOptions:
        accepted = assoc.acceptor.sop_class_extended.get(ModalityWorklistInformationFind, b"")
        return MatchingOptions(
            zone=self.zone,
            combined_datetime=len(accepted) > _DATE_TIME_BYTE and accepted[_DATE_TIME_BYTE] == 1,
            case_insensitive_patient_name=self.case_insensitive_patient_name,
            case_insensitive_modality=self.case_insensitive_modality,
        )

    def on_find(self, event: evt.Event) -> Iterator[FindResponse]:
        started = time.perf_counter()
        calling_ae = event.assoc.requestor.ae_title
        try:
            parsed = parse_identifier(event.identifier, self.options(event.assoc))
        except ValidationFailed as exc:
            log.warning("worklist query refused calling_ae=%s keys=%s", calling_ae, _keys_of(exc.problems))
            yield failure_status(C_FIND, exc, _comment_of(exc.problems)), None
            return
        except (RecursionError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # pydicom decodes lazily: a malformed or absurdly nested identifier fails here.
            log.warning("worklist query undecodable calling_ae=%s error=%s", calling_ae, type(exc).__name__)
            problem = FieldProblem("identifier", "cannot be decoded")
            yield failure_status(C_FIND, ValidationFailed([problem])), None
            return
        query = WorklistQuery(criteria=parsed.criteria, limit=self.result_cap)
        try:
            result = self.service.find_station_worklist(query, calling_ae)
        except DomainError as exc:
            log.error("worklist query failed calling_ae=%s error=%s", calling_ae, type(exc).__name__)
            yield failure_status(C_FIND, exc), None
            return
        pending = PENDING_WITH_UNSUPPORTED_KEYS if parsed.unsupported_keys else PENDING
        sent = 0
        for item in result.items:
            _wait_until_sent(event)
            if event.is_cancelled:
                log.info("worklist query cancelled calling_ae=%s sent=%d", calling_ae, sent)
                yield CANCELLED, None
                return
            yield pending, response_identifier(item, parsed.return_keys)
            sent += 1
        log.info(
            "worklist query calling_ae=%s keys=%s matches=%d truncated=%s ms=%.1f",
            calling_ae,
            ",".join(sorted({c.attribute for c in parsed.criteria})) or "-",
            sent,
            result.truncated,
            (time.perf_counter() - started) * 1000,
        )
        if result.truncated:
            yield (
                status_dataset(
                    RESULT_CAP_STATUS,
                    f"more than {self.result_cap} items match; only the first were sent: narrow the query",
                ),
                None,
            )


def _keys_of(problems: list[FieldProblem]) -> str:
    """The attributes of the problems, for the log (the messages may quote values: patient data)."""
    return ",".join(problem.field for problem in problems)


def _comment_of(problems: list[FieldProblem]) -> str:
    """For the scanner: each key by its own keyword (the path would fill the 64 characters)."""
    return "; ".join(f"{problem.field.rsplit('.', 1)[-1]} {problem.message}" for problem in problems)


def _wait_until_sent(event: evt.Event) -> None:
    """Once OUTGOING_QUEUE_LIMIT responses wait to be sent, hold the next one until pynetdicom has
    sent them. Its reactor reads the socket, and so a C-CANCEL, only when nothing waits to be sent:
    a handler that yields faster than the network takes would queue every response before a cancel
    could be read (and hold them all in memory). Waiting at every response would cost a thread
    hand-over each; waiting per batch lets a cancel in within a batch."""
    outgoing = event.assoc.dul.to_provider_queue
    if outgoing.qsize() < OUTGOING_QUEUE_LIMIT:
        return
    while not outgoing.empty() and event.assoc.is_established:
        time.sleep(OUTGOING_POLL_SECONDS)
