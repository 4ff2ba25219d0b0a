"""The ERP connector (SOAP via zeep): see ``client.ErpClient`` and docs/erp-service.md."""

from connectors.erp.client import ErpClient
from connectors.erp.results import ChangeBatch, CustomerCreated, MaterialSaved, SalesOrderResult
from connectors.erp.settings import ErpSettings

__all__ = ["ChangeBatch", "CustomerCreated", "ErpClient", "ErpSettings", "MaterialSaved", "SalesOrderResult"]
