"""One received HL7 message → its stored outcome → the ACK bytes to send back.

``Intake.handle`` decodes the message (MSH-18), splits it with our ER7 reader, routes it by MSH-9,
turns it into service commands through the site's mapping (`hl7.commands`) and hands them to
``RisService.receive_message``, which journals the raw message, applies the commands and stores the
ACK in one transaction. The ACK is returned only after that transaction has committed; a message
seen before (same MSH-3, MSH-4 and MSH-10) gets its stored ACK again.

ACK codes (original mode):

- AA: the message was applied and is stored (also for an ADT message about a patient with nothing
  here to change: MSA-3 says so);
- AE: the message parses but cannot be applied — unknown order, missing required field, bad value,
  unknown order control code, a conflict; ERR names the segment and field. The message and its AE
  are journaled, nothing else changes. Also AE (ERR 207), without storing anything, when the
  database fails: the sender should send the message again;
- AR: the message cannot be read or is not supported — not HL7, bad character set, MSH-9 or MSH-10
  missing, unsupported message type, too large.

`ERROR_ACKS` is the one table from domain errors to MSA-1 and ERR-3 codes.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hl7 import er7
from hl7.charsets import CharsetError, UnknownCharsetError, canonical_charset, decode_message
from hl7.commands import KEY, Location, MessageKind, Problem, Rejected, Translation, translate
from hl7.er7 import AckError, ErrorCode, FieldPath, Header
from hl7.fieldnames import describe
from hl7.mapping import OrderMapping
from ris.db.models import utcnow
from ris.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
    InvalidTransition,
    NotFound,
    StorageUnavailable,
    ValidationFailed,
)
from ris.domain.inbound import Applied, InboundMessage, OrderCommand, Outcome, Reply
from ris.domain.model import Actor
from ris.metrics import NO_METRICS, Metrics
from ris.services import RisService

log = logging.getLogger(__name__)

# MSH-9 (message type, trigger event) → what the message asks for. Anything else is answered AR.
SUPPORTED_MESSAGES: dict[tuple[str, str], MessageKind] = {
    ("ORM", "O01"): MessageKind.ORDER,
    ("OMI", "O23"): MessageKind.ORDER,
    ("ADT", "A08"): MessageKind.PATIENT_UPDATE,
    ("ADT", "A31"): MessageKind.PATIENT_UPDATE,
    ("ADT", "A40"): MessageKind.PATIENT_MERGE,
}

# Domain error → (MSA-1, ERR-3). The first row the error is an instance of applies. A validation
# problem that says "is required" gets ERR-3 101 instead of 102.
ERROR_ACKS: tuple[tuple[type[DomainError], str, ErrorCode], ...] = (
    (ValidationFailed, "AE", ErrorCode.DATA_TYPE_ERROR),
    (NotFound, "AE", ErrorCode.UNKNOWN_KEY_IDENTIFIER),
    (AlreadyExists, "AE", ErrorCode.DUPLICATE_KEY_IDENTIFIER),
    (ConcurrentUpdate, "AE", ErrorCode.APPLICATION_RECORD_LOCKED),
    (InvalidTransition, "AE", ErrorCode.APPLICATION_INTERNAL_ERROR),
    (StorageUnavailable, "AE", ErrorCode.APPLICATION_INTERNAL_ERROR),
    (DomainError, "AE", ErrorCode.APPLICATION_INTERNAL_ERROR),
)
# Patient messages about a patient (or prior patient) with nothing here: nothing to change, AA.
NOTHING_TO_CHANGE = frozenset({MessageKind.PATIENT_UPDATE, MessageKind.PATIENT_MERGE})

MSA_TEXT_LENGTH = 80  # MSA-3 is ST 80; ERR-8 carries the full text
# Journal key columns (hl7_messages): longer values cannot be stored, so they are rejected.
MAX_CONTROL_ID = 199
MAX_SENDER = 227
_MSH_9 = FieldPath.parse("MSH-9")
_MSH_10 = FieldPath.parse("MSH-10")
_MSH_18 = FieldPath.parse("MSH-18")
_MSH_3 = FieldPath.parse("MSH-3")


@dataclass(frozen=True)
class _Context:
    """What is known about the message being answered."""

    header: Header
    payload: bytes
    peer: str
    codec: str


class Intake:
    """Answers HL7 messages for one site; safe to share between connection threads."""

    def __init__(
        self,
        service: RisService,
        mapping: OrderMapping,
        *,
        default_charset: str,
        clock: Callable[[], dt.datetime] = utcnow,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        try:
            self.default_charset = canonical_charset(default_charset)
        except UnknownCharsetError as error:
            raise ValueError(f"hl7_default_charset: {error}") from None
        self.service = service
        self.mapping = mapping
        self.clock = clock
        self.metrics = metrics

    # --- entry points (called by the server) --------------------------------------------------

    def handle(self, payload: bytes, peer: str = "") -> bytes:
        """The ACK for one message payload (no MLLP framing). Never raises: a failure of our own is
        answered AE with ERR 207 and nothing stored."""
        started = time.perf_counter()
        try:
            context, reply, journal = self._answer(payload, peer)
        except StorageUnavailable as error:
            context, journal = _raw_context(payload, peer), None
            reply = self._not_stored(context, f"the database is unavailable, nothing was stored: {error}")
        except Exception:
            context, journal = _raw_context(payload, peer), None
            log.exception("hl7 message failed control_id=%s", context.header.control_id)
            reply = self._not_stored(context, "the broker failed to handle the message, nothing was stored")
        log.info(
            "hl7 message control_id=%s type=%s^%s ack=%s journal=%s peer=%s ms=%.1f",
            context.header.control_id,
            context.header.message_type,
            context.header.trigger_event,
            reply.code,
            journal,
            peer,
            (time.perf_counter() - started) * 1000,
        )
        self.metrics.hl7_message(reply.code)
        return reply.body

    def reject_oversize(self, prefix: bytes, limit: int, peer: str = "") -> bytes | None:
        """The AR for a message larger than ``limit`` bytes, of which ``prefix`` arrived; None when
        the prefix holds no MSH segment to answer."""
        if not prefix.startswith(b"MSH"):
            return None
        context = _raw_context(prefix, peer)
        message = f"the message is larger than {limit} bytes (setting hl7_max_message_bytes)"
        log.warning("hl7 message too large control_id=%s limit=%d peer=%s", context.header.control_id, limit, peer)
        self.metrics.hl7_message("AR")
        return self._reply(context, "AR", [AckError(code=ErrorCode.APPLICATION_INTERNAL_ERROR, message=message)]).body

    # --- the steps ----------------------------------------------------------------------------

    def _answer(self, payload: bytes, peer: str) -> tuple[_Context, Reply, int | None]:
        try:
            decoded = decode_message(payload, self.default_charset)
        except CharsetError as error:
            code = (
                ErrorCode.TABLE_VALUE_NOT_FOUND if isinstance(error, UnknownCharsetError) else ErrorCode.DATA_TYPE_ERROR
            )
            return self._reject(_raw_context(payload, peer), "AR", [AckError.at(_MSH_18, code, f"MSH-18: {error}")])
        try:
            message = er7.parse(decoded.text)
        except er7.Er7Error as error:
            context = _Context(er7.read_header(decoded.text), payload, peer, decoded.codec)
            return self._reject(context, "AR", [AckError(code=ErrorCode.SEGMENT_SEQUENCE_ERROR, message=str(error))])
        header = Header.from_msh(message.msh)
        context = _Context(header, payload, peer, decoded.codec)
        problem = _header_problem(header)
        if problem is not None:
            return self._reject(context, "AR", [problem])
        kind = SUPPORTED_MESSAGES[(header.message_type, header.trigger_event)]
        character_set = decoded.dicom_charset if header.charset else ""
        try:
            translation = translate(message, kind, character_set, self.mapping, self.service.zone)
        except Rejected as rejected:
            return self._reject(
                context, "AE", [self._located(problem, header.version) for problem in rejected.problems]
            )

        def answer(outcome: Outcome) -> Reply:
            return self._outcome_reply(context, kind, translation, outcome)

        return self._receive(context, translation.commands, answer)

    def _receive(
        self, context: _Context, commands: Sequence[OrderCommand], answer: Callable[[Outcome], Reply]
    ) -> tuple[_Context, Reply, int | None]:
        header = context.header
        message = InboundMessage(
            sending_application=header.sending_application,
            sending_facility=header.sending_facility,
            control_id=header.control_id,
            message_type=f"{header.message_type}^{header.trigger_event}"[:30],
            raw=context.payload,
            peer=context.peer[:80],
        )
        actor = Actor("hl7", f"{header.msh.get(3)}/{header.msh.get(4)}"[:60])
        receipt = self.service.receive_message(message, commands, actor, answer)
        return context, receipt.reply, receipt.journal_id

    def _reject(self, context: _Context, code: str, errors: Sequence[AckError]) -> tuple[_Context, Reply, int | None]:
        """Answer a message that did not become commands; journaled when it can be (MSH-10 present)."""
        reply = self._reply(context, code, errors)
        header = context.header
        if not header.control_id or len(header.control_id) > MAX_CONTROL_ID or not _storable_sender(header):
            return context, reply, None
        return self._receive(context, (), lambda _outcome: reply)

    def _outcome_reply(self, context: _Context, kind: MessageKind, translation: Translation, outcome: Outcome) -> Reply:
        if isinstance(outcome, Applied):
            return self._reply(context, "AA", [])
        error = outcome.error
        if isinstance(error, NotFound) and kind in NOTHING_TO_CHANGE:
            note = f"nothing to change: {error}"
            return Reply("AA", self._ack(context, "AA", [], note), note)
        locations = translation.locations[outcome.index] if outcome.index is not None else {}
        ack_code, errors = _errors_for(error, locations, context.header.version)
        return self._reply(context, ack_code, errors)

    def _reply(self, context: _Context, code: str, errors: Sequence[AckError]) -> Reply:
        text = errors[0].message if errors else ""
        return Reply(code, self._ack(context, code, errors, text), "; ".join(error.message for error in errors))

    def _ack(self, context: _Context, code: str, errors: Sequence[AckError], text: str) -> bytes:
        if len(text) > MSA_TEXT_LENGTH:
            text = text[: MSA_TEXT_LENGTH - 3] + "..."
        ack = er7.build_ack(
            context.header.msh,
            code,
            control_id=f"A{secrets.token_hex(8)}",
            timestamp=self.clock().astimezone(self.service.zone).strftime("%Y%m%d%H%M%S%z"),
            text=text,
            errors=errors,
        )
        return ack.encode(context.codec, errors="replace")

    def _not_stored(self, context: _Context, message: str) -> Reply:
        log.warning("hl7 message not stored control_id=%s: %s", context.header.control_id, message)
        return self._reply(context, "AE", [AckError(code=ErrorCode.APPLICATION_INTERNAL_ERROR, message=message)])

    def _located(self, problem: Problem, version: str) -> AckError:
        return _error_at(problem.location, problem.code, problem.message, version)


def _raw_context(payload: bytes, peer: str) -> _Context:
    """The context of a message known only as bytes: its MSH read as Latin-1 (which never fails)."""
    return _Context(er7.read_header(payload.decode("latin-1")), payload, peer, "latin-1")


def _header_problem(header: Header) -> AckError | None:
    """Why the MSH does not let us answer and store the message, or None."""
    if not header.message_type:
        return AckError.at(_MSH_9, ErrorCode.REQUIRED_FIELD_MISSING, "MSH-9 (message type) is required")
    if not header.control_id:
        return AckError.at(_MSH_10, ErrorCode.REQUIRED_FIELD_MISSING, "MSH-10 (message control ID) is required")
    if len(header.control_id) > MAX_CONTROL_ID:
        return AckError.at(_MSH_10, ErrorCode.DATA_TYPE_ERROR, f"MSH-10 is longer than {MAX_CONTROL_ID} characters")
    if not _storable_sender(header):
        return AckError.at(_MSH_3, ErrorCode.DATA_TYPE_ERROR, f"MSH-3 and MSH-4 may hold {MAX_SENDER} characters each")
    if (header.message_type, header.trigger_event) not in SUPPORTED_MESSAGES:
        supported = ", ".join(f"{kind}^{event}" for kind, event in SUPPORTED_MESSAGES)
        known_type = any(kind == header.message_type for kind, _ in SUPPORTED_MESSAGES)
        code = ErrorCode.UNSUPPORTED_EVENT_CODE if known_type else ErrorCode.UNSUPPORTED_MESSAGE_TYPE
        return AckError.at(
            _MSH_9,
            code,
            f"unsupported message type {header.message_type}^{header.trigger_event} (supported: {supported})",
        )
    return None


def _storable_sender(header: Header) -> bool:
    return len(header.sending_application) <= MAX_SENDER and len(header.sending_facility) <= MAX_SENDER


def _errors_for(error: DomainError, locations: dict[str, Location], version: str) -> tuple[str, list[AckError]]:
    """MSA-1 and the ERR entries for a domain error, located through the command's ``locations``."""
    ack_code, code = next((ack, code) for kind, ack, code in ERROR_ACKS if isinstance(error, kind))
    if isinstance(error, ValidationFailed):
        return ack_code, [
            _error_at(
                _problem_location(locations, problem.field),
                ErrorCode.REQUIRED_FIELD_MISSING if problem.message == "is required" else code,
                f"{_meaning(problem.field)} {problem.message}",
                version,
            )
            for problem in error.problems
        ]
    location = locations.get(KEY) if isinstance(error, NotFound) else None
    return ack_code, [_error_at(location, code, str(error), version)]


def _problem_location(locations: dict[str, Location], field_path: str) -> Location | None:
    """The location of ``field_path`` ("procedures[0].code.value"), or of the nearest enclosing value
    that has one ("procedures[0].code")."""
    path = field_path
    while path:
        if path in locations:
            return locations[path]
        path = path.rpartition(".")[0]
    return None


def _meaning(field_path: str) -> str:
    """The domain name of a field path in words: "procedures[0].steps[0].sps_id" → "sps id"."""
    last = field_path.rpartition(".")[2].split("[")[0]
    return last.replace("_", " ")


def _error_at(location: Location | None, code: ErrorCode, message: str, version: str) -> AckError:
    if location is None:
        return AckError(code=code, message=message)
    return AckError.at(
        location.path, code, f"{describe(location.path, version)}: {message}", sequence=location.sequence
    )
