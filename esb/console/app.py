"""The web console (``esb console``): FastAPI, pages rendered on the server with Jinja2, no build step.

Pages: ``/`` the open failures grouped by cause (count, first and last failure, a 24-hour sparkline), each
group's failures under it; ``/failures/{id}`` one failure (where and why, business keys, headers, the body
formatted and highlighted, the audit trail, and for an operator: replay, edit-and-replay, acknowledge,
discard); ``/orders/{id}`` the CRM order with its status and links to its failures; ``/api/groups`` and
``/api/failures/{id}`` the same as JSON. Every action is a POST carrying the session's CSRF token.

Login: a user of ``crm_core.users`` (``esb users add``); the session is a signed cookie (``esb.console.session``,
HttpOnly, SameSite=Lax). Without a session, a page redirects to ``/login`` (303) and the API answers 401; an
action without the right CSRF token answers 403; a viewer's action answers 403. The user's role is read
from the database on each request, so a changed role holds at once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from crm_core.errors import NotFound
from crm_core.failed_store import FailureFilter, FailureStatus, failure_times
from crm_core.services import CrmService
from crm_core.users import Role, User, authenticate, end_sessions, get_user
from esb.console.render import highlighted, hourly, sparkline
from esb.console.session import COOKIE, Session, SessionCodec, csrf_ok
from esb.failed import EditRefused, FailedMessages, FailureNotFound, Outcome
from esb.failed_view import detail_json, editable_body, groups_json

#: failures listed under each group on the list page
PER_GROUP = 50
#: bytes of an edited body accepted from the form (a stored body is at most 256 KiB)
EDIT_MAX = 512 * 1024
_TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class ConsoleDeps:
    """What the console works on: the CRM database's sessions, the failed-message service, the CRM."""

    sessions: sessionmaker[DbSession]
    failed: FailedMessages
    crm: CrmService
    codec: SessionCodec
    secure_cookie: bool = False
    #: the CSRF check of actions; False only with the test hook ``ESB_TEST_SAFEGUARDS_OFF=console_csrf``
    csrf_check: bool = True


class _LoginRequired(Exception):
    def __init__(self, api: bool) -> None:
        self.api = api


def create_app(deps: ConsoleDeps) -> FastAPI:
    """The console's ASGI application over ``deps``."""
    app = FastAPI(title="crm-esb console", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(_TEMPLATES))

    @app.exception_handler(RequestValidationError)
    def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's default answer echoes each invalid input: a login form's password among them
        fields = sorted({".".join(str(part) for part in error.get("loc", ())[1:])[:100] for error in exc.errors()})
        return JSONResponse({"error": "invalid request", "fields": fields[:20]}, status_code=422)

    @app.exception_handler(_LoginRequired)
    def _login_required(request: Request, exc: _LoginRequired) -> Response:
        if exc.api:
            return JSONResponse({"error": "login required"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    def session_of(request: Request) -> Session | None:
        return deps.codec.load(request.cookies.get(COOKIE))

    def user_of(request: Request, *, api: bool = False) -> tuple[User, Session]:
        session = session_of(request)
        user = get_user(deps.sessions, session.user) if session is not None and session.user else None
        if user is None or session is None:
            raise _LoginRequired(api)
        if user.sessions_after is not None and session.issued <= user.sessions_after:
            raise _LoginRequired(api)  # logged out: a copy of the old cookie is no session
        return user, session

    def operator(request: Request, csrf: str | None) -> tuple[User, Session]:
        user, session = user_of(request)
        if deps.csrf_check and not csrf_ok(session, csrf):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        if user.role != Role.OPERATOR:
            raise HTTPException(403, f"a {user.role.value} cannot do this")
        return user, session

    def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def with_cookie(response: Response, session: Session) -> Response:
        response.set_cookie(
            COOKIE,
            deps.codec.dump(session),
            max_age=deps.codec.max_age,
            httponly=True,
            samesite="lax",
            secure=deps.secure_cookie,
            path="/",
        )
        return response

    # -- login

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        session = session_of(request) or deps.codec.new()
        return with_cookie(page(request, "login.html", {"csrf": session.csrf, "error": None}), session)

    @app.post("/login")
    def login(
        request: Request,
        name: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        csrf: Annotated[str | None, Form(max_length=100)] = None,
    ) -> Response:
        session = session_of(request)
        if not csrf_ok(session, csrf):
            raise HTTPException(403, "missing or wrong CSRF token: reload the login page")
        user = authenticate(deps.sessions, name, password)
        if user is None:
            assert session is not None
            context = {"csrf": session.csrf, "error": "unknown user or wrong password"}
            return page(request, "login.html", context, status_code=401)
        # a new session (and CSRF token) at login: a token seen before login is worth nothing after
        return with_cookie(RedirectResponse("/", status_code=303), deps.codec.new(user.name))

    @app.post("/logout")
    def logout(request: Request, csrf: Annotated[str | None, Form(max_length=100)] = None) -> Response:
        user, session = user_of(request)
        if not csrf_ok(session, csrf):
            raise HTTPException(403, "missing or wrong CSRF token")
        end_sessions(deps.sessions, user.name, time.time())
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages

    def grouped(now: datetime) -> list[dict[str, Any]]:
        groups = deps.failed.groups(FailureFilter())
        times: dict[str, list[datetime]] = defaultdict(list)
        day = FailureFilter(since=now - timedelta(hours=24), statuses=())
        for key, moment in failure_times(deps.sessions, day):
            times[key].append(moment)
        return [
            {
                "group": g,
                "spark": sparkline(hourly(times[g.key], now)),
                "failures": deps.failed.list_failures(FailureFilter(group=g.key), limit=PER_GROUP),
            }
            for g in groups
        ]

    @app.get("/", response_class=HTMLResponse)
    def failures_page(request: Request) -> Response:
        user, session = user_of(request)
        now = datetime.now(UTC)
        context = {"user": user, "csrf": session.csrf, "groups": grouped(now), "now": now}
        return page(request, "list.html", context)

    def detail_page(
        request: Request,
        failure_id: int,
        *,
        edited: str | None = None,
        errors: list[dict[str, str]] | None = None,
        refusal: str | None = None,
        outcomes: list[Outcome] | None = None,
        status_code: int = 200,
    ) -> Response:
        user, session = user_of(request)
        try:
            detail = deps.failed.show(failure_id)
        except FailureNotFound as exc:
            raise HTTPException(404, f"no failed message {failure_id}") from exc
        body = editable_body(detail.failure.body)
        context = {
            "user": user,
            "csrf": session.csrf,
            "f": detail.failure,
            "actions": detail.actions,
            "headers": sorted(detail.failure.headers.items()),
            "body": highlighted(body),
            "edited": body if edited is None else edited,
            "errors": errors or [],
            "refusal": refusal,
            "outcomes": outcomes or [],
            "open": detail.failure.status in (FailureStatus.FAILED, FailureStatus.ACKNOWLEDGED),
        }
        return page(request, "detail.html", context, status_code=status_code)

    @app.get("/failures/{failure_id}", response_class=HTMLResponse)
    def failure_page(request: Request, failure_id: int) -> Response:
        return detail_page(request, failure_id)

    @app.get("/orders/{order_id}", response_class=HTMLResponse)
    def order_page(request: Request, order_id: str) -> Response:
        user, session = user_of(request)
        try:
            order = deps.crm.get_order(order_id[:40])
        except NotFound as exc:
            raise HTTPException(404, "no such order") from exc
        failures = deps.failed.list_failures(FailureFilter(order_id=order.id, statuses=()), limit=PER_GROUP)
        return page(request, "order.html", {"user": user, "csrf": session.csrf, "order": order, "failures": failures})

    # -- actions (operator, CSRF)

    @app.post("/failures/{failure_id}/replay")
    def replay(request: Request, failure_id: int, csrf: Annotated[str | None, Form(max_length=100)] = None) -> Response:
        user, _ = operator(request, csrf)
        outcomes = deps.failed.replay([failure_id], actor=user.name)
        return detail_page(request, failure_id, outcomes=outcomes)

    @app.post("/failures/{failure_id}/discard")
    def discard(
        request: Request, failure_id: int, csrf: Annotated[str | None, Form(max_length=100)] = None
    ) -> Response:
        user, _ = operator(request, csrf)
        return detail_page(request, failure_id, outcomes=deps.failed.discard([failure_id], actor=user.name))

    @app.post("/failures/{failure_id}/acknowledge")
    def acknowledge(
        request: Request, failure_id: int, csrf: Annotated[str | None, Form(max_length=100)] = None
    ) -> Response:
        user, _ = operator(request, csrf)
        return detail_page(request, failure_id, outcomes=deps.failed.acknowledge([failure_id], actor=user.name))

    @app.post("/failures/{failure_id}/edit")
    def edit(
        request: Request,
        failure_id: int,
        body: Annotated[str, Form(max_length=EDIT_MAX)] = "",
        csrf: Annotated[str | None, Form(max_length=100)] = None,
    ) -> Response:
        user, _ = operator(request, csrf)
        try:
            outcome = deps.failed.edit(failure_id, body.encode("utf-8"), actor=user.name)
        except FailureNotFound as exc:
            raise HTTPException(404, f"no failed message {failure_id}") from exc
        except EditRefused as exc:
            errors = [{"field": e.field, "message": e.message} for e in exc.errors]
            return detail_page(request, failure_id, edited=body, errors=errors, refusal=str(exc), status_code=422)
        return detail_page(request, failure_id, outcomes=[outcome])

    @app.post("/groups/{group}/{action}")
    def group_action(
        request: Request, group: str, action: str, csrf: Annotated[str | None, Form(max_length=100)] = None
    ) -> Response:
        user, session = operator(request, csrf)
        ids = deps.failed.ids_in_group(group[:16])
        if action == "replay":
            outcomes = deps.failed.replay(ids, actor=user.name)
        elif action == "discard":
            outcomes = deps.failed.discard(ids, actor=user.name)
        elif action == "acknowledge":
            outcomes = deps.failed.acknowledge(ids, actor=user.name)
        else:
            raise HTTPException(404, "no such action")
        now = datetime.now(UTC)
        context = {"user": user, "csrf": session.csrf, "groups": grouped(now), "now": now, "outcomes": outcomes}
        return page(request, "list.html", context)

    # -- API (JSON, read-only)

    @app.get("/api/groups")
    def api_groups(request: Request) -> Response:
        user_of(request, api=True)
        return Response(groups_json(deps.failed.groups(FailureFilter())), media_type="application/json")

    @app.get("/api/failures/{failure_id}")
    def api_failure(request: Request, failure_id: int) -> Response:
        user_of(request, api=True)
        try:
            detail = deps.failed.show(failure_id)
        except FailureNotFound as exc:
            raise HTTPException(404, f"no failed message {failure_id}") from exc
        return Response(detail_json(detail), media_type="application/json")

    return app


__all__ = ["ConsoleDeps", "create_app"]
