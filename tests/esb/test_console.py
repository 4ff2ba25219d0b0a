"""The web console (issue 10, acceptance points 2 and 6), served by uvicorn in this process over a real
store: embedded transport + SQLite, the reference ERP requiring a password, the worker running.

The browser test drives Debian's headless Chromium through its chromium-driver (Selenium): an operator
logs in, finds the failed order under its cause, opens it, edits the body (a validation error first, shown
on the field), replays it and sees it leave the list while the CRM order becomes confirmed; a viewer sees
the list without replay or discard. It writes screenshots of the list and the detail page. The HTTP test
checks that without login every page redirects to the login and every API call answers 401, and that an
action without the CSRF token (or by a viewer) is refused and changes nothing.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import uvicorn

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from crm_core.failed_store import FailureFilter, FailureStatus, NewFailure, record_failure
from crm_core.users import Role, add_user
from esb.app import Application
from esb.config import EsbSettings
from esb.console.app import ConsoleDeps, create_app
from esb.console.session import SessionCodec
from esb.demo import new_order
from esb.failed import FailedMessages
from esb.test_hooks import TestHooks
from esb.worker import Worker
from tests.conftest import missing_service
from tests.flows.guarantees import customers, wait_for, wait_settled

ERP_USER = "esb"
ERP_PASSWORD = "right-password"
LINE = ("MAT-1002", "1", "H87", "10.00")
WAIT = 60.0
OPERATOR = ("anna", "anna-password")
VIEWER = ("vic", "vic-password")
CHROMIUM = "/usr/bin/chromium"
ORDER_ROUTE = "erp.order_placed"
ORDER_GROUP = f"section.group[data-route='{ORDER_ROUTE}']"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _settings(tmp_path: Path, namespace: str, erp_url: str, password: str) -> EsbSettings:
    return EsbSettings(  # type: ignore[call-arg]
        data_dir=tmp_path,
        namespace=namespace,
        transport="embedded",
        erp={"url": erp_url, "username": ERP_USER, "password": password, "retries": 1, "retry_wait": 0},
        worker={"material_sync_seconds": 0, "retry_schedule": [0.1], "breaker_failures": 1000, "shards": 1},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Console:
    url: str
    app: Application


@contextmanager
def serve(app: Application) -> Iterator[str]:
    """The console over ``app``, served by uvicorn on a free port in a thread; its base URL."""
    deps = ConsoleDeps(
        sessions=app.sessions,
        failed=FailedMessages(app.sessions, app.transport, app.crm),
        crm=app.crm,
        codec=SessionCodec(b"test-secret", 1.0),
        csrf_check=not app.hooks.safeguard_off("console_csrf"),
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(deps), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for("the console to listen", lambda: server.started, WAIT)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(WAIT)


def add_users(app: Application) -> None:
    add_user(app.sessions, OPERATOR[0], Role.OPERATOR, OPERATOR[1])
    add_user(app.sessions, VIEWER[0], Role.VIEWER, VIEWER[1])


# -- the browser test


@pytest.fixture(scope="module")
def locked_erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    """The reference ERP answering 401 to any request without the right user and password."""
    db = tmp_path_factory.mktemp("erp") / "erp.db"
    with ErpServerProcess(db_path=db, seed=True, user=ERP_USER, password=ERP_PASSWORD) as server:
        yield server


@pytest.fixture
def browser() -> Iterator[object]:
    """Debian's headless Chromium through its chromium-driver; no browser download."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        missing_service(f"Chromium ({CHROMIUM}) and its driver ({CHROMEDRIVER})")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-proxy-server",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def test_an_operator_fixes_and_replays_a_failed_order_in_the_browser_and_a_viewer_only_sees(
    tmp_path: Path, unique_name: str, locked_erp: ErpServerProcess, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    driver = browser
    # two orders dead-lettered: the ERP answers 401 to the worker's wrong password
    with Application(_settings(tmp_path, unique_name, locked_erp.url, "wrong-password"), hooks=TestHooks()) as app:
        customer = customers(app, 1, prefix="Console")[0]
        orders = [app.crm.place_order(new_order(customer, LINE)).id for _ in range(2)]
        with Worker(app):
            wait_settled(app, orders, WAIT, settled=[OrderStatus.FAILED])
            wait_for("both orders' failures stored", lambda: len(app_failures(app)) == 2, WAIT)
    fixed, kept = orders

    shots = tmp_path / "screenshots"
    shots.mkdir()
    settings = _settings(tmp_path, unique_name, locked_erp.url, ERP_PASSWORD)
    with Application(settings, hooks=TestHooks()) as app, Worker(app), serve(app) as url:
        add_users(app)
        wait = WebDriverWait(driver, WAIT)
        login(driver, wait, url, *OPERATOR)

        # the list: both orders under one cause naming the ERP's 401
        group = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ORDER_GROUP)))
        assert "401" in group.find_element(By.TAG_NAME, "h2").text
        assert group.find_element(By.CSS_SELECTOR, ".count").text == "2"
        assert group.find_element(By.CSS_SELECTOR, "svg.spark"), "the 24 h sparkline"
        assert fixed in group.text and kept in group.text
        driver.save_screenshot(str(shots / "list.png"))

        # the failure of the first order: headers, highlighted body, actions
        row = group.find_element(By.XPATH, f".//tr[contains(., '{fixed}')]")
        row.find_element(By.CSS_SELECTOR, "a.open-failure").click()
        wait.until(seen.presence_of_element_located((By.ID, "edit-body")))
        assert driver.find_element(By.CSS_SELECTOR, "#body .j-key"), "the body is highlighted"
        assert "x-esb-error-reason" in driver.find_element(By.ID, "headers").text
        driver.set_window_size(1280, 2400)  # the whole page: facts, headers, body, edit form, audit trail
        driver.save_screenshot(str(shots / "detail.png"))
        driver.set_window_size(1280, 1000)

        # an edit with a quantity that is no number: refused, the error shown on the field
        original = driver.find_element(By.ID, "edit-body").get_property("value")
        assert isinstance(original, str)
        document = json.loads(original)
        document["data"]["lines"][0]["quantity"] = "abc"
        set_body(driver, json.dumps(document, indent=2))
        driver.find_element(By.ID, "edit-submit").click()
        error = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".field-error")))
        assert error.get_attribute("data-field") == "data.lines.0.quantity", error.text
        assert driver.find_element(By.ID, "edit-body").get_attribute("aria-invalid") == "true"
        assert app.crm.get_order(fixed).status == OrderStatus.FAILED

        # fixed (the quantity back, the order date moved) and replayed
        document["data"]["lines"][0]["quantity"] = json.loads(original)["data"]["lines"][0]["quantity"]
        document["data"]["order_date"] = "2026-12-01"
        set_body(driver, json.dumps(document, indent=2))
        driver.find_element(By.ID, "edit-submit").click()
        outcome = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#outcomes .outcome")))
        assert outcome.get_attribute("data-result") == "replayed", outcome.text
        audit = driver.find_element(By.ID, "audit").text
        assert "anna edit refused" in audit and "anna edit ok" in audit, audit

        # the CRM order is confirmed; it left the list; its order page shows it and links to the failure
        wait_settled(app, [fixed], WAIT, settled=[OrderStatus.CONFIRMED])
        driver.get(url + "/")
        group = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ORDER_GROUP)))
        assert group.find_element(By.CSS_SELECTOR, ".count").text == "1"
        assert fixed not in group.text and kept in group.text
        driver.get(f"{url}/orders/{fixed}")
        assert wait.until(seen.presence_of_element_located((By.ID, "order-status"))).text == "confirmed"
        assert "replayed" in driver.find_element(By.ID, "order-failures").text

        # a viewer sees the list and the failure, with no replay, edit or discard
        driver.find_element(By.CSS_SELECTOR, "header form button").click()  # log out
        login(driver, wait, url, *VIEWER)
        group = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ORDER_GROUP)))
        assert kept in group.text
        assert not driver.find_elements(By.CSS_SELECTOR, "button.replay, button.discard")
        group.find_element(By.CSS_SELECTOR, "a.open-failure").click()
        wait.until(seen.presence_of_element_located((By.ID, "audit")))
        assert kept in driver.find_element(By.ID, "facts").text
        assert not driver.find_elements(By.CSS_SELECTOR, "#replay, #discard, #edit")


def app_failures(app: Application) -> list[int]:
    """The stored failures of the order route (the customer's sync failed too, under its own cause)."""
    where = FailureFilter(route=ORDER_ROUTE)
    return [f.id for f in FailedMessages(app.sessions, app.transport, app.crm).list_failures(where)]


def login(driver: object, wait: object, url: str, name: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(driver, WebDriver) and isinstance(wait, WebDriverWait)
    driver.get(url + "/")  # not logged in: sent to the login page
    wait.until(seen.presence_of_element_located((By.ID, "login")))
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "header .who")))


def set_body(driver: object, text: str) -> None:
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(driver, WebDriver)
    driver.execute_script("document.getElementById('edit-body').value = arguments[0];", text)


# -- the HTTP test


@pytest.fixture(params=["on", "off"])
def stored(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[tuple[Application, int]]:
    """An application with one stored failure of an order, and the console's users; the CSRF check on, or
    off (the test hook), to show the test catches what it prevents."""
    settings = EsbSettings(data_dir=tmp_path, namespace=unique_name, transport="embedded")  # type: ignore[call-arg]
    hooks = TestHooks(safeguards_off=frozenset({"console_csrf"}) if request.param == "off" else frozenset())
    with Application(settings, hooks=hooks) as app:
        customer = customers(app, 1, prefix="Console Http")[0]
        order = app.crm.place_order(new_order(customer, LINE))
        queue = f"{app.queue_of(next(r for r in app.routes if r.name == 'erp.order_placed'))}.0"
        failure_id, _ = record_failure(
            app.sessions,
            NewFailure(
                message_id=f"m-{order.id}",
                queue=queue,
                route="erp.order_placed",
                event_type="order.placed",
                reason="erp.CreateSalesOrder: HTTP 500",
                exception_type="RequestRejected",
                stack=None,
                by_broker=False,
                mark="esb:1",
                failed_at=datetime.now(UTC),
                headers={},
                body=b"{}",
                customer_id=customer,
                order_id=order.id,
            ),
        )
        add_users(app)
        yield app, failure_id


def session_of(url: str, name: str, password: str) -> tuple[requests.Session, str]:
    """A logged-in HTTP session and its CSRF token."""
    http = requests.Session()
    http.trust_env = False
    page = http.get(url + "/login", timeout=WAIT).text
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = http.post(url + "/login", data={"name": name, "password": password, "csrf": token}, timeout=WAIT)
    assert answer.status_code == 200 and "Open failures" in answer.text, answer.status_code
    home = http.get(url + "/", timeout=WAIT).text
    return http, home.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_without_login_pages_redirect_and_the_api_answers_401_and_actions_need_the_csrf_token_and_an_operator(
    stored: tuple[Application, int],
) -> None:
    app, failure_id = stored
    order_id = app.crm.list_orders()[0].id
    with serve(app) as url:
        anonymous = requests.Session()
        anonymous.trust_env = False
        for path in ("/", f"/failures/{failure_id}", f"/orders/{order_id}"):
            answer = anonymous.get(url + path, allow_redirects=False, timeout=WAIT)
            assert (answer.status_code, answer.headers.get("location")) == (303, "/login"), path
        for path in ("/api/groups", f"/api/failures/{failure_id}"):
            assert anonymous.get(url + path, timeout=WAIT).status_code == 401, path
        for action in ("replay", "discard", "acknowledge", "edit"):
            answer = anonymous.post(f"{url}/failures/{failure_id}/{action}", allow_redirects=False, timeout=WAIT)
            assert answer.status_code == 303, action
        # a forged cookie is no session
        anonymous.cookies.set("esb_console", "eyJ1IjogImFubmEifQ.0000")
        assert anonymous.get(url + "/api/groups", timeout=WAIT).status_code == 401

        # an invalid login form is refused without its input echoed (FastAPI's default answer carries it)
        secret = "SecretP" * 200
        answer = anonymous.post(url + "/login", data={"name": "anna", "password": secret, "csrf": "x"}, timeout=WAIT)
        assert answer.status_code == 422 and "SecretP" not in answer.text, answer.text[:300]

        operator, token = session_of(url, *OPERATOR)
        if app.hooks.safeguard_off("console_csrf"):
            # without the check, a form posted from anywhere acts as the logged-in operator
            answer = operator.post(f"{url}/failures/{failure_id}/discard", data={}, timeout=WAIT)
            assert answer.status_code == 200 and 'data-result="discarded"' in answer.text
            return
        assert operator.cookies.get("esb_console")
        cookie_header = operator.get(url + "/login", timeout=WAIT).headers["set-cookie"].lower()
        assert "httponly" in cookie_header and "samesite=lax" in cookie_header, cookie_header
        assert json.loads(operator.get(url + "/api/groups", timeout=WAIT).text)[0]["count"] == 1
        for action in ("replay", "discard", "acknowledge", "edit"):
            for data in ({}, {"csrf": "not-the-token"}):
                answer = operator.post(f"{url}/failures/{failure_id}/{action}", data=data, timeout=WAIT)
                assert answer.status_code == 403, (action, data, answer.status_code)
        answer = operator.post(f"{url}/groups/{app_failures_group(app)}/discard", data={}, timeout=WAIT)
        assert answer.status_code == 403

        viewer, viewer_token = session_of(url, *VIEWER)
        for action in ("replay", "discard", "edit"):
            answer = viewer.post(f"{url}/failures/{failure_id}/{action}", data={"csrf": viewer_token}, timeout=WAIT)
            assert answer.status_code == 403, action
        assert FailedMessages(app.sessions, app.transport, app.crm).show(failure_id).actions == [], "nothing done"

        # with the token, the operator's action is done
        answer = operator.post(f"{url}/failures/{failure_id}/acknowledge", data={"csrf": token}, timeout=WAIT)
        assert answer.status_code == 200 and 'data-result="acknowledged"' in answer.text
        status = FailedMessages(app.sessions, app.transport, app.crm).show(failure_id).failure.status
        assert status == FailureStatus.ACKNOWLEDGED

        # logout ends the session: a copy of its cookie (a shared machine, a leaked header) is no login after it
        kept = operator.cookies.get("esb_console")
        answer = operator.post(url + "/logout", data={"csrf": token}, allow_redirects=False, timeout=WAIT)
        assert answer.status_code == 303
        replayed = requests.Session()
        replayed.trust_env = False
        replayed.cookies.set("esb_console", kept)
        assert replayed.get(url + "/api/groups", timeout=WAIT).status_code == 401
        again, _ = session_of(url, *OPERATOR)  # a new login works
        assert again.get(url + "/api/groups", timeout=WAIT).status_code == 200


def app_failures_group(app: Application) -> str:
    return FailedMessages(app.sessions, app.transport, app.crm).groups(FailureFilter())[0].key
