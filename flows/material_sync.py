"""Pull the ERP's material master into the CRM's product catalogue, incrementally."""

from __future__ import annotations

import structlog

from canonical_model.product import Product
from connectors.erp.client import ErpClient
from crm_core.services import CrmService
from flows.payloads import answers_validated
from mappings import load_mapping

log = structlog.get_logger(__name__)

CURSOR = "erp.materials"


@answers_validated("the ERP's material page")  # Product is built from it
def sync_materials(crm: CrmService, erp: ErpClient, *, page_size: int = 500) -> int:
    """Copy materials changed since the last run; returns how many products were written.

    Each page commits with its cursor, so an interrupted sync resumes where it stopped.
    """
    mapping = load_mapping("erp_material")
    written = 0
    while True:
        since = crm.cursor(CURSOR)
        batch = erp.materials_changed_since(since, max_rows=page_size)
        products = [Product.model_validate(mapping.to_canonical(item)) for item in batch.items]
        written += crm.upsert_products(products, cursor=(CURSOR, batch.last_seq))
        log.info("materials synced", page=len(products), last_seq=batch.last_seq)
        if not batch.more:
            return written


__all__ = ["CURSOR", "sync_materials"]
