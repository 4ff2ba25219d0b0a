"""The reference ERP: a real SOAP 1.1 server (WSDL ``erp.wsdl``) with its own SQLite storage.

Run it with ``python -m backoffice.erp serve --port 0 --db erp.db``, or from Python/tests with
``backoffice.erp.process.ErpServerProcess``. The contract is docs/erp-service.md.
"""

from __future__ import annotations

from pathlib import Path

#: the frozen contract; served at ``GET <service-url>?wsdl`` with its address rewritten
WSDL_PATH = Path(__file__).with_name("erp.wsdl")
NAMESPACE = "urn:crm-esb:erp:v1"
#: path of the SOAP endpoint under the server's base URL
SERVICE_PATH = "/erp"

__all__ = ["NAMESPACE", "SERVICE_PATH", "WSDL_PATH"]
