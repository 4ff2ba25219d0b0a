"""How ``esb failed`` shows stored failures: fixed-width tables (long values cut) or JSON (whole values)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from crm_core.failed_store import Failure, FailureGroup
from esb.failed import FailureDetail


def _cut(text: str | None, width: int) -> str:
    text = " ".join((text or "-").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render_failures(failures: Sequence[Failure]) -> str:
    """One failure a line: id, status, last failure (UTC), attempts, route, customer, order, group, reason."""
    lines = [
        f"{'ID':>6}  {'STATUS':<12}  {'LAST FAILED (UTC)':<19}  {'N':>3}  {'ROUTE':<20}  {'CUSTOMER':<14}  "
        f"{'ORDER':<14}  {'GROUP':<12}  REASON"
    ]
    for f in failures:
        lines.append(
            f"{f.id:>6}  {f.status.value:<12}  {f.last_failed_at.strftime('%Y-%m-%d %H:%M:%S'):<19}  "
            f"{f.attempts:>3}  {_cut(f.route, 20):<20}  {_cut(f.customer_id, 14):<14}  {_cut(f.order_id, 14):<14}  "
            f"{f.group_key:<12}  {_cut(f.reason, 100)}"
        )
    lines.append(f"{len(failures)} failed message(s)")
    return "\n".join(lines)


def render_groups(groups: Sequence[FailureGroup]) -> str:
    """One cause a line: group key, count, first and last failure (UTC), the cause's title."""
    lines = [f"{'GROUP':<12}  {'COUNT':>6}  {'FIRST FAILED (UTC)':<19}  {'LAST FAILED (UTC)':<19}  CAUSE"]
    for g in groups:
        lines.append(
            f"{g.key:<12}  {g.count:>6}  {g.first_failed_at.strftime('%Y-%m-%d %H:%M:%S'):<19}  "
            f"{g.last_failed_at.strftime('%Y-%m-%d %H:%M:%S'):<19}  {_cut(g.title, 140)}"
        )
    lines.append(f"{len(groups)} cause(s), {sum(g.count for g in groups)} failed message(s)")
    return "\n".join(lines)


def _failure_json(f: Failure, *, body: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": f.id,
        "message_id": f.message_id,
        "status": f.status.value,
        "route": f.route,
        "queue": f.queue,
        "event_type": f.event_type,
        "customer_id": f.customer_id,
        "order_id": f.order_id,
        "group": f.group_key,
        "cause": f.group_title,
        "exception_type": f.exception_type,
        "reason": f.reason,
        "by_broker": f.by_broker,
        "attempts": f.attempts,
        "first_failed_at": f.first_failed_at.isoformat(),
        "last_failed_at": f.last_failed_at.isoformat(),
    }
    if body:
        data["headers"] = f.headers
        data["stack"] = f.stack
        data["body"] = f.body.decode("utf-8", "replace")
        data["body_truncated"] = f.body_truncated
    return data


def failures_json(failures: Sequence[Failure]) -> str:
    return json.dumps([_failure_json(f) for f in failures], indent=2)


def groups_json(groups: Sequence[FailureGroup]) -> str:
    return json.dumps(
        [
            {
                "group": g.key,
                "cause": g.title,
                "route": g.route,
                "exception_type": g.exception_type,
                "count": g.count,
                "first_failed_at": g.first_failed_at.isoformat(),
                "last_failed_at": g.last_failed_at.isoformat(),
            }
            for g in groups
        ],
        indent=2,
    )


def editable_body(body: bytes) -> str:
    """The body as text to edit: indented JSON when it parses, else as it is (undecodable bytes replaced)."""
    text = body.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    except (ValueError, RecursionError):
        return text


def detail_json(detail: FailureDetail) -> str:
    data = _failure_json(detail.failure, body=True)
    data["actions"] = [
        {"action": a.action, "actor": a.actor, "at": a.at.isoformat(), "result": a.result, "detail": a.detail}
        for a in detail.actions
    ]
    return json.dumps(data, indent=2)


def render_detail(detail: FailureDetail) -> str:
    f = detail.failure
    what = f"order {f.order_id} of customer {f.customer_id}" if f.order_id else f"customer {f.customer_id or '-'}"
    lines = [
        f"failed message {f.id}: {f.event_type} {f.message_id} ({f.status.value})",
        f"concerns:   {what}",
        f"route:      {f.route or '-'} (queue {f.queue})",
        f"cause:      {f.group_key}  {f.group_title}",
        f"error:      {f.exception_type}{' (dead-lettered by the broker)' if f.by_broker else ''}",
        f"reason:     {f.reason}",
        f"failures:   {f.attempts}, first {f.first_failed_at.isoformat()}, last {f.last_failed_at.isoformat()}",
        "headers:",
        *(f"  {name}: {value}" for name, value in f.headers.items()),
        "body" + (" (cut short by the store)" if f.body_truncated else "") + ":",
        editable_body(f.body).rstrip("\n"),
    ]
    if f.stack:
        lines += ["stack:", f.stack.rstrip("\n")]
    lines.append("audit trail:" if detail.actions else "audit trail: none")
    lines += [f"  {a.at.isoformat()}  {a.actor}  {a.action}  {a.result}  {a.detail}" for a in detail.actions]
    return "\n".join(lines)


__all__ = [
    "detail_json",
    "editable_body",
    "failures_json",
    "groups_json",
    "render_detail",
    "render_failures",
    "render_groups",
]
