"""The failed-message service: what an operator (``esb failed``, later a web console) can do with the store.

Typed functions over ``crm_core.failed_store`` and the transport, no I/O of their own beyond those:
``list_failures``, ``groups``, ``show``, ``ids_in_group``, ``replay``, ``edit``, ``discard``,
``acknowledge``. Every action on a failure is recorded with who, when and the result.

A replay publishes the stored message to the queue (shard) it failed in, and only there
(``Transport.send_to_queue``: RabbitMQ's default exchange), never through the topic exchange (the
other routes bound to its event type already handled it), with its original message id and
``x-esb-replay-of: <failure id>``; the headers the dead-lettering added (``x-esb-error-*``,
``x-death``, the attempt count) are left out, so the route starts the message afresh. Idempotent
routes make a replay of a message that in fact succeeded harmless (the ERP call carries the CRM id).

An edit replaces the body and replays it. The new body must be an envelope with the same id and type
as the stored one, whose ``data`` is valid for the route's model (``flows.failed_messages.EVENT_MODELS``).
An edited ``order.placed`` must keep the order id and the CRM order's lines: the CRM is the system of
record for what was ordered, and an ERP order whose lines differ from the CRM's would leave the two
systems disagreeing with no trace in the CRM. Such an edit is refused (change the order in the CRM and
place it again instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from canonical_model import events
from canonical_model.envelope import Envelope
from canonical_model.errors import EsbError, InvalidMessage
from canonical_model.order import SalesOrder
from canonical_model.truncation import truncate
from connectors.base import HEADER_REPLAY_OF, OutgoingMessage, Transport
from crm_core.errors import NotFound
from crm_core.failed_store import (
    Action,
    Failure,
    FailureFilter,
    FailureGroup,
    FailureStatus,
    actions_of,
    get_failure,
    list_failures,
    list_groups,
    record_action,
)
from crm_core.services import CrmService
from flows.failed_messages import EVENT_MODELS

#: the statuses a failure may be replayed, discarded or acknowledged from
OPEN = (FailureStatus.FAILED, FailureStatus.ACKNOWLEDGED)
#: the most failures one bulk action takes (a group larger than this is done in several runs)
BULK_MAX = 10_000
#: headers of the stored message that a replay leaves out: those the dead-lettering and retries added
_DROPPED_PREFIXES = ("x-esb-", "x-death", "x-first-death", "x-last-death", "x-delivery-count")
#: characters of a validation message shown per field
MESSAGE_MAX = 200


class FailureNotFound(NotFound):
    """No stored failure has this id."""


@dataclass(frozen=True)
class FieldError:
    """One validation error of an edited body: ``field`` is a dotted path (``data.lines.0.quantity``)."""

    field: str
    message: str


class EditRefused(EsbError):
    """An edited body that cannot be replayed: ``errors`` name the fields (empty when the refusal is about
    the message as a whole, e.g. a changed id)."""

    def __init__(self, message: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.errors = tuple(errors)


@dataclass(frozen=True)
class Outcome:
    """What an action did to one failure: ``result`` ``replayed`` / ``discarded`` / ``acknowledged`` /
    ``would replay`` (dry run) / ``refused`` / ``error``; ``detail`` says why or where (bounded)."""

    failure_id: int
    result: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.result not in ("refused", "error")


@dataclass(frozen=True)
class FailureDetail:
    failure: Failure
    actions: list[Action] = field(default_factory=list)


def replay_headers(stored: dict[str, object], failure_id: int) -> dict[str, str | int]:
    """The headers of a replay: the stored message's own (text and integers), without those the
    dead-lettering and the retries added, with ``x-esb-replay-of``."""
    kept: dict[str, str | int] = {
        name: value
        for name, value in stored.items()
        if not name.lower().startswith(_DROPPED_PREFIXES)
        and isinstance(value, (str, int))
        and not isinstance(value, bool)
    }
    kept[HEADER_REPLAY_OF] = str(failure_id)
    return kept


class FailedMessages:
    """The service over the store in ``sessions`` (the CRM database), replaying through ``transport``;
    ``crm`` is asked for an order's lines when an ``order.placed`` is edited."""

    def __init__(self, sessions: sessionmaker[Session], transport: Transport, crm: CrmService) -> None:
        self._sessions = sessions
        self._transport = transport
        self._crm = crm

    # -- reading

    def list_failures(self, where: FailureFilter, *, limit: int = 100) -> list[Failure]:
        """Failures matching ``where``, the most recent first, at most ``limit``."""
        return list_failures(self._sessions, where, limit=limit)

    def groups(self, where: FailureFilter) -> list[FailureGroup]:
        """Failures matching ``where`` grouped by cause, the largest group first."""
        return list_groups(self._sessions, where)

    def ids_in_group(self, group: str, *, statuses: tuple[FailureStatus, ...] = OPEN) -> list[int]:
        """The ids of a group's failures in ``statuses``, oldest failure first (at most ``BULK_MAX``)."""
        failures = list_failures(self._sessions, FailureFilter(group=group, statuses=statuses), limit=BULK_MAX)
        return [f.id for f in sorted(failures, key=lambda f: (f.first_failed_at, f.id))]

    def show(self, failure_id: int) -> FailureDetail:
        """A failure with its audit trail; ``FailureNotFound``."""
        try:
            return FailureDetail(get_failure(self._sessions, failure_id), actions_of(self._sessions, failure_id))
        except NotFound as exc:
            raise FailureNotFound("failed message", str(failure_id)) from exc

    # -- acting

    def _audit(
        self,
        failure_id: int,
        action: str,
        actor: str,
        result: str,
        detail: str,
        *,
        status: FailureStatus | None = None,
        body: bytes | None = None,
    ) -> None:
        record_action(
            self._sessions,
            [failure_id],
            action=action,
            actor=actor,
            result=result,
            detail=detail,
            status=status,
            body=body,
        )

    def replay(self, failure_ids: Sequence[int], *, actor: str, dry_run: bool = False) -> list[Outcome]:
        """Replay each failure to the queue it failed in, in the order given; one outcome each, recorded
        (not with ``dry_run``, which only checks). A failure not found, not open (already replayed or
        discarded) or with a body the store cut short is refused; a transport failure is an ``error``
        outcome and leaves the failure as it was."""
        return [self._replay_one(failure_id, actor=actor, dry_run=dry_run) for failure_id in failure_ids]

    def _replay_one(self, failure_id: int, *, actor: str, dry_run: bool, body: bytes | None = None) -> Outcome:
        try:
            failure = get_failure(self._sessions, failure_id)
        except NotFound:
            return Outcome(failure_id, "refused", "no such failed message")
        refusal = self._refusal(failure, body)
        if refusal is not None:
            if not dry_run:
                record_action(
                    self._sessions, [failure_id], action="replay", actor=actor, result="refused", detail=refusal
                )
            return Outcome(failure_id, "refused", refusal)
        if dry_run:
            return Outcome(failure_id, "would replay", f"to queue {failure.queue}")
        message = OutgoingMessage(
            routing_key=failure.event_type,
            body=body if body is not None else failure.body,
            message_id=failure.message_id,
            headers=replay_headers(failure.headers, failure.id),
            partition_key=failure.customer_id,
        )
        try:
            self._transport.send_to_queue(failure.queue, message)
        except EsbError as exc:  # Unroutable (the queue is gone) or TransportError
            detail = truncate(f"not published to {failure.queue}: {exc}", 500)
            self._audit(failure_id, "replay", actor, "error", detail)
            return Outcome(failure_id, "error", detail)
        detail = f"published to queue {failure.queue}"
        self._audit(
            failure_id,
            "edit" if body is not None else "replay",
            actor,
            "ok",
            detail,
            status=FailureStatus.REPLAYED,
            body=body,
        )
        return Outcome(failure_id, "replayed", detail)

    @staticmethod
    def _refusal(failure: Failure, body: bytes | None) -> str | None:
        if failure.status not in OPEN:
            return f"it is {failure.status.value}"
        if body is None and failure.body_truncated:
            return "its body was cut short by the store; edit it to replay"
        if failure.queue in ("", "?"):
            return "the queue it failed in is unknown"
        return None

    def discard(self, failure_ids: Sequence[int], *, actor: str) -> list[Outcome]:
        """Mark failures ``discarded`` (nothing is published; the row stays, with the action recorded)."""
        return self._close(failure_ids, FailureStatus.DISCARDED, "discard", actor)

    def acknowledge(self, failure_ids: Sequence[int], *, actor: str) -> list[Outcome]:
        """Mark failures ``acknowledged``: seen, left as they are, out of the default list; still replayable."""
        return self._close(failure_ids, FailureStatus.ACKNOWLEDGED, "acknowledge", actor)

    def _close(self, failure_ids: Sequence[int], status: FailureStatus, action: str, actor: str) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for failure_id in failure_ids:
            try:
                failure = get_failure(self._sessions, failure_id)
            except NotFound:
                outcomes.append(Outcome(failure_id, "refused", "no such failed message"))
                continue
            if failure.status not in OPEN or failure.status == status:
                outcomes.append(Outcome(failure_id, "refused", f"it is {failure.status.value}"))
                continue
            record_action(
                self._sessions,
                [failure_id],
                action=action,
                actor=actor,
                result="ok",
                detail=status.value,
                status=status,
            )
            outcomes.append(Outcome(failure_id, status.value, f"was {failure.status.value}"))
        return outcomes

    def edit(self, failure_id: int, body: bytes, *, actor: str, dry_run: bool = False) -> Outcome:
        """Validate ``body`` as the failure's new message, then replay it (``replay``'s rules).

        Raises ``FailureNotFound``, or ``EditRefused`` (recorded as a refused edit) naming the fields: not an
        envelope; another id or type than the stored message; ``data`` invalid for the route's model; an
        ``order.placed`` naming another order or other lines than the CRM order.
        """
        failure = self.show(failure_id).failure
        try:
            self.validate_edit(failure, body)
        except EditRefused as exc:
            if not dry_run:
                record_action(
                    self._sessions, [failure_id], action="edit", actor=actor, result="refused", detail=str(exc)
                )
            raise
        return self._replay_one(failure_id, actor=actor, dry_run=dry_run, body=body)

    def validate_edit(self, failure: Failure, body: bytes) -> Envelope:
        """``body`` as the envelope replacing ``failure``'s; ``EditRefused`` naming what is wrong."""
        try:
            envelope = Envelope.from_bytes(body)
        except InvalidMessage as exc:
            raise EditRefused(truncate(str(exc), 500), [FieldError("envelope", truncate(str(exc), 500))]) from exc
        if envelope.id != failure.message_id:
            raise EditRefused(
                "the edit changed the message id (a replay keeps its id)", [FieldError("id", "must stay unchanged")]
            )
        if envelope.type != failure.event_type:
            raise EditRefused("the edit changed the event type", [FieldError("type", "must stay unchanged")])
        model = EVENT_MODELS.get(failure.event_type)
        if model is None:
            raise EditRefused(f"no model is known for event type {truncate(failure.event_type, 80)}: cannot edit")
        try:
            data = model.model_validate(envelope.data)
        except ValidationError as exc:
            errors = [
                FieldError(
                    "data." + ".".join(str(part)[:40] for part in error["loc"]),
                    truncate(str(error["msg"]), MESSAGE_MAX),
                )
                for error in exc.errors(include_url=False, include_input=False)[:20]
            ]
            shown = "; ".join(f"{e.field}: {e.message}" for e in errors[:3])
            raise EditRefused(truncate(f"the body is not a valid {failure.event_type}: {shown}", 500), errors) from exc
        if failure.event_type == events.ORDER_PLACED and isinstance(data, SalesOrder):
            self._check_order_edit(failure, data)
        return envelope

    def _check_order_edit(self, failure: Failure, order: SalesOrder) -> None:
        if failure.order_id is not None and order.id != failure.order_id:
            raise EditRefused("the edit names another order", [FieldError("data.id", "must stay unchanged")])
        try:
            crm_order = self._crm.get_sales_order(order.id)
        except NotFound as exc:
            raise EditRefused("the CRM has no such order", [FieldError("data.id", "not a CRM order")]) from exc
        if _lines(order) != _lines(crm_order):
            raise EditRefused(
                "the edited lines differ from the CRM order's: change the order in the CRM instead",
                [FieldError("data.lines", "must equal the CRM order's lines")],
            )


def _lines(order: SalesOrder) -> list[dict[str, Any]]:
    # Python values, not JSON: amounts compare as numbers (the outbox wrote "1", the CRM database gives 1.000)
    return [line.model_dump() for line in order.lines]


def since_of(text: str, now: datetime) -> datetime:
    """``--since``: an ISO 8601 time (UTC if it names no zone) or a duration back from ``now``: ``30m``,
    ``2h``, ``7d``. Raises ``ValueError``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) >= 2 and text[-1] in units and text[:-1].isdigit() and len(text) <= 8:
        return now - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


__all__ = [
    "BULK_MAX",
    "OPEN",
    "EditRefused",
    "FailedMessages",
    "FailureDetail",
    "FailureNotFound",
    "FieldError",
    "Outcome",
    "replay_headers",
    "since_of",
]
