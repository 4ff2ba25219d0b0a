"""Run the reference ERP in a child process: for the demo and for tests that cross real HTTP.

Typical use::

    with ErpServerProcess(db_path=tmp / "erp.db", seed=True) as erp:  # limits=RequestLimits(...) to change them
        client = ErpClient(ErpSettings(url=erp.url))
        erp.set_faults(outage=True)
        erp.calls("CreateSalesOrder")
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import requests

from backoffice.erp import SERVICE_PATH
from backoffice.erp.limits import RequestLimits

READY_PREFIX = "ERP listening on "


class ErpServerError(RuntimeError):
    """The ERP process did not start (its stderr is in the message) or its admin API failed."""


class ErpServerProcess:
    """``python -m backoffice.erp serve ...`` as a subprocess; stops it on exit (terminate, then kill)."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        seed: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        fault_rate: float = 0.0,
        latency_ms: int = 0,
        outage: bool = False,
        user: str | None = None,
        password: str | None = None,
        threads: int = 8,
        limits: RequestLimits | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.db_path = Path(db_path)
        self._args = [sys.executable, "-m", "backoffice.erp", "serve", "--host", host, "--port", str(port)]
        self._args += ["--db", str(self.db_path), "--threads", str(threads)]
        self._args += ["--fault-rate", str(fault_rate), "--latency-ms", str(latency_ms)]
        if limits is not None:
            self._args += ["--max-body-bytes", str(limits.max_body_bytes), "--max-elements", str(limits.max_elements)]
            self._args += ["--max-depth", str(limits.max_depth), "--max-attributes", str(limits.max_attributes)]
            self._args += ["--max-total-attributes", str(limits.max_total_attributes)]
        self._args += ["--seed"] if seed else []
        self._args += ["--outage"] if outage else []
        self._args += ["--user", user] if user else []
        self._password = password
        self._auth = (user, password or "") if user else None
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._base_url: str | None = None
        self._admin = requests.Session()
        self._admin.auth = self._auth

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ErpServerProcess:
        if self._process is not None:
            raise ErpServerError("already started")
        env = dict(os.environ)
        if self._password is not None:
            env["ERP_PASSWORD"] = self._password  # not on the command line, where `ps` would show it
        # stderr goes to a file: nobody reads it while the server runs, and a full pipe would block it
        self._stderr = tempfile.TemporaryFile("w+", prefix="erp-stderr-")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            self._args, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env, bufsize=1
        )
        try:
            self._base_url = self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_drain, args=(self._process.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + self._startup_timeout
        url: str | None = None
        while url is None:
            try:
                line = lines.get(timeout=0.05)
            except queue.Empty:
                line = ""
            if line.startswith(READY_PREFIX):
                url = line[len(READY_PREFIX) :].strip()
            self._check_alive(deadline)
        base = url.removesuffix(SERVICE_PATH)
        while True:
            try:
                if requests.get(f"{base}/health", timeout=1).status_code == 200:
                    return base
            except requests.RequestException:
                pass
            self._check_alive(deadline)
            time.sleep(0.05)

    def _check_alive(self, deadline: float) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise ErpServerError(
                f"the ERP exited with status {self._process.returncode} before it was ready:\n{self.stderr_text()}"
            )
        if time.monotonic() > deadline:
            raise ErpServerError(f"the ERP did not answer within {self._startup_timeout} s:\n{self.stderr_text()}")

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._admin.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> ErpServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- where it is -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``"""
        if self._base_url is None:
            raise ErpServerError("not started")
        return self._base_url

    @property
    def url(self) -> str:
        """The SOAP service URL, ``http://HOST:PORT/erp``."""
        return self.base_url + SERVICE_PATH

    @property
    def wsdl_url(self) -> str:
        return self.url + "?wsdl"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stderr_text(self) -> str:
        """What the server wrote to stderr so far (its log)."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read()
        self._stderr.seek(0, os.SEEK_END)
        return text

    # -- admin -----------------------------------------------------------------------------

    def set_faults(
        self,
        *,
        fault_rate: float | None = None,
        latency_ms: int | None = None,
        outage: bool | None = None,
        timeout_rate: float | None = None,
        timeout_ms: int | None = None,
        malformed_rate: float | None = None,
        late_answer_rate: float | None = None,
        late_answer_ms: int | None = None,
        fault_keys: Sequence[str] | None = None,
        fault_operations: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Change the injected misbehaviour (arguments left out keep their values); returns the new setting.

        What each setting does and its bounds: ``backoffice.erp.misbehaviour.FaultSettings``. A value out
        of bounds raises ``ErpServerError`` with the ERP's reason (HTTP 400).
        """
        given = {
            "fault_rate": fault_rate,
            "latency_ms": latency_ms,
            "outage": outage,
            "timeout_rate": timeout_rate,
            "timeout_ms": timeout_ms,
            "malformed_rate": malformed_rate,
            "late_answer_rate": late_answer_rate,
            "late_answer_ms": late_answer_ms,
            "fault_keys": None if fault_keys is None else list(fault_keys),
            "fault_operations": None if fault_operations is None else list(fault_operations),
        }
        return self._admin_call("POST", "/admin/faults", json={k: v for k, v in given.items() if v is not None})

    def set_wrong_answers(self, rules: dict[str, dict[str, str | None]]) -> dict[str, Any]:
        """Answer wrong on purpose (replaces earlier rules; ``{}`` clears them), e.g.
        ``{"CreateSalesOrder": {"SALES_ORDER/NETWR": "1250.125"}}``: see ``misbehaviour.WrongAnswers``."""
        return self._admin_call("POST", "/admin/wrong-answers", json=rules)

    def faults(self) -> dict[str, Any]:
        return self._admin_call("GET", "/admin/faults")

    def stats(self) -> dict[str, Any]:
        """``{"operations": {"CreateCustomer": 2, ...}, "wsdl": n, "invalid": n, "unauthorized": n,
        "injected": {"fault": n, "timeout": n, "malformed": n, "late": n, "poison": n}}``"""
        return self._admin_call("GET", "/admin/stats")

    def injected(self) -> dict[str, int]:
        """How often each kind of misbehaviour was injected since start (or the last ``reset_stats``)."""
        return dict(self.stats()["injected"])

    def calls(self, operation: str) -> int:
        """How many requests ``operation`` received since start (or the last ``reset_stats``)."""
        return int(self.stats()["operations"].get(operation, 0))

    def customer_changes(self, kunnr: str | None = None, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """The ERP's customer change record, oldest first: ``[{"seq": int, "kunnr": str, "version": int | None,
        "message_id": str | None, "operation": "CreateCustomer" | "UpdateCustomer", "applied_at": ISO 8601}]``;
        of customer ``kunnr`` (or all), seq > ``after``, at most ``limit`` (1..10,000) rows."""
        params: dict[str, str | int] = {"after": after, "limit": limit}
        if kunnr is not None:
            params["kunnr"] = kunnr
        response = self._admin.get(self.base_url + "/admin/customer-changes", params=params, timeout=5)
        if response.status_code != 200:
            raise ErpServerError(f"GET /admin/customer-changes: HTTP {response.status_code} {response.text[:200]}")
        rows: list[dict[str, Any]] = response.json()
        return rows

    def reset_stats(self) -> None:
        self._admin_call("DELETE", "/admin/stats")

    def _admin_call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._admin.request(method, self.base_url + path, timeout=5, **kwargs)
        if response.status_code != 200:
            raise ErpServerError(f"{method} {path}: HTTP {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result


def _drain(stream: IO[str], lines: queue.Queue[str]) -> None:
    # keeps reading stdout for the life of the process, so the server can never block on it
    for line in stream:
        lines.put(line)


__all__ = ["ErpServerError", "ErpServerProcess"]
