"""The ERP readiness probe (``ErpClient.probe``, behind ``/readyz``) against the real reference ERP with a
login: a refused login is not ready, as every call would fail with it (a fresh operator's trial found
``/readyz`` ready while every ERP call failed with HTTP 401)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from backoffice.erp.process import ErpServerProcess
from connectors.erp import ErpClient, ErpSettings

USER, PASSWORD = "esb", "right-pw-S3cret"


@pytest.fixture(scope="module")
def erp_with_login(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(tmp_path_factory.mktemp("erp") / "erp.db", seed=True, user=USER, password=PASSWORD) as erp:
        yield erp


@pytest.mark.parametrize(("password", "ready"), [(PASSWORD, True), ("wrong-pw", False), (None, False)])
def test_a_refused_login_is_not_ready(erp_with_login: ErpServerProcess, password: str | None, ready: bool) -> None:
    settings = ErpSettings(
        url=erp_with_login.url, username=USER, password=SecretStr(password) if password is not None else None
    )
    client = ErpClient(settings)
    if ready:
        client.probe()
    else:
        with pytest.raises(ConnectionError, match=r"HTTP 401 \(check the ERP user and password\)"):
            client.probe()
