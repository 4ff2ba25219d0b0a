"""Pull the ERP's material master into the CRM's product catalogue, incrementally.

A record that cannot be taken (a unit no value map knows, a name too long for the catalogue) does
not stop the pull: it is kept aside in the CRM's ``sync_rejects`` (source ``erp.materials``, key the
MATNR, the reason and the record, bounded), logged at WARNING, counted in the result, and the rest
of its page and the cursor move on.

Retrying a reject: the ERP has no read of one material by key (``ListMaterials`` reads them all,
``GetMaterialsChangedSince`` only what changed after the cursor), so after the change feed each run
maps the *stored* record again. That is the record's newest version we know: a newer one that syncs removes
the reject, a newer one that fails replaces it. Two ways out of ``sync_rejects``, then: the ERP
changes the material (it comes back in the change feed, newer, and wins), or our side changes (a
value map learns the unit) and the stored record now maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Final

import structlog
from pydantic import ValidationError

from canonical_model.errors import MappingError
from canonical_model.money import fits_currency, is_known_currency, minor_units
from canonical_model.product import Product
from canonical_model.text import clip, shown
from connectors.erp.client import ErpClient
from crm_core.schemas import NewSyncReject
from crm_core.services import CrmService
from mappings import Mapping, load_mapping

log = structlog.get_logger(__name__)

CURSOR = "erp.materials"
#: the source named in ``sync_rejects``: the same pull as the cursor
SOURCE = CURSOR
KEY_FIELD = "MATNR"

# bounds of what is kept of a bad record: the ERP's schema bounds a good one far below these
_REASON_LIMIT: Final = 1000
_KEY_LIMIT: Final = 80
_RECORD_FIELDS: Final = 40
_RECORD_TEXT_LIMIT: Final = 500


@dataclass(frozen=True)
class MaterialSyncResult:
    """What one run did: products written, records kept aside, earlier rejects that now synced."""

    #: products written to the catalogue (the recovered ones included)
    written: int = 0
    #: records refused in this run (new ones, and kept-aside ones that failed again)
    rejected: int = 0
    #: records kept aside by an earlier run that synced in this one
    recovered: int = 0

    def __str__(self) -> str:
        return f"{self.written} products synced, {self.rejected} rejected, {self.recovered} recovered"


def sync_materials(
    crm: CrmService, erp: ErpClient, *, page_size: int = 500, mapping: Mapping | None = None
) -> MaterialSyncResult:
    """Copy materials changed since the last run, then retry the records kept aside by earlier runs.

    Each page commits with its cursor and its rejects, so an interrupted sync resumes where it
    stopped. Then at most ``page_size`` kept-aside records the feed did not bring again are mapped
    again from their stored record, least recently tried first. ``mapping`` defaults to the shipped
    ``erp_material``. ERP and database errors propagate (the caller retries the whole run later);
    a bad record never does. A page over the ERP client's ``max_answer_bytes`` is read with fewer
    rows (the client halves them) and the rest of the run keeps that page size; one material alone
    over the limit raises ``AnswerOverLimit`` naming the CHSEQ after which it comes.
    """
    mapping = mapping or load_mapping("erp_material")
    written = rejected = 0
    seen: set[str] = set()  # keys the change feed brought in this run: their newest version was just tried
    rows = page_size
    while True:
        batch = erp.materials_changed_since(crm.cursor(CURSOR), max_rows=rows)
        # a page over the ERP client's answer limit was read with fewer rows: keep that size for this run
        rows = batch.max_rows or rows
        products, rejects = _map_records(mapping, [(item, None) for item in batch.items])
        written += crm.apply_sync_page(SOURCE, products, rejects, cursor=batch.last_seq)
        rejected += len(rejects)
        seen.update(product.id for product in products)
        seen.update(reject.record_key for reject in rejects)
        log.info("materials synced", page=len(products), rejected=len(rejects), last_seq=batch.last_seq)
        if not batch.more:
            break
    # After the feed, not before: a newer version in the feed decides first, and is not undone by an older one.
    retried_written, retried_rejected, recovered = _retry_rejects(crm, mapping, limit=page_size, skip=seen)
    return MaterialSyncResult(
        written=written + retried_written, rejected=rejected + retried_rejected, recovered=recovered
    )


def _retry_rejects(crm: CrmService, mapping: Mapping, *, limit: int, skip: set[str]) -> tuple[int, int, int]:
    # the ones tried in this run were seen last, so they sort last: asking for that many more is enough
    kept = [r for r in crm.sync_rejects(SOURCE, limit=limit + len(skip)) if r.record_key not in skip][:limit]
    if not kept:
        return 0, 0, 0
    products, rejects = _map_records(mapping, [(reject.record or {}, reject.record_key) for reject in kept])
    written = crm.apply_sync_page(SOURCE, products, rejects)
    if products:
        log.info("kept-aside materials synced", keys=[clip(p.id, _KEY_LIMIT) for p in products])
    return written, len(rejects), len(products)


def _map_records(
    mapping: Mapping, records: list[tuple[dict[str, Any], str | None]]
) -> tuple[list[Product], list[NewSyncReject]]:
    """Map ``(record, kept-aside key or None)`` pairs: products, and rejects for the rest."""
    products: list[Product] = []
    rejects: list[NewSyncReject] = []
    for record, kept_key in records:
        try:
            product = Product.model_validate(mapping.to_canonical(record))
            problem = _price_problem(product)
            if problem is None:
                products.append(product)
            else:
                rejects.append(_reject(record, kept_key, problem))
        except MappingError as exc:
            rejects.append(_reject(record, kept_key, str(exc)))
        except ValidationError as exc:
            rejects.append(_reject(record, kept_key, _validation_reason(exc)))
    return products, rejects


def _price_problem(product: Product) -> str | None:
    """Why the list price is not money the CRM can sell at (the money rule, see canonical_model.money), or None.

    The model checks the price's form alone (its JSON schema can say no more); this checks it against
    its currency: one with ISO 4217 minor units (not XXX, XAU ...) and no finer than they allow.
    """
    if not is_known_currency(product.currency):
        return f"currency={shown(product.currency, 10)}: not an ISO 4217 currency with minor units"
    if not fits_currency(product.list_price, product.currency):
        places = minor_units(product.currency)
        return f"list_price={product.list_price}: more decimals than {product.currency} has ({places})"
    return None


def _reject(record: dict[str, Any], kept_key: str | None, reason: str) -> NewSyncReject:
    # a kept record keeps its key: the stored copy is clipped, a key computed from it could differ
    key = kept_key or _key(record)
    reason = clip(reason, _REASON_LIMIT)
    retry = kept_key is not None
    message = "kept-aside material still refused" if retry else "material refused; kept aside for the next sync"
    log.warning(message, source=SOURCE, key=key, reason=reason)
    return NewSyncReject(record_key=key, reason=reason, record=_bounded(record))


def _key(record: dict[str, Any]) -> str:
    value = record.get(KEY_FIELD)
    # trimmed like the mapping trims it, so the reject and the product share one key
    key = str(value).strip(" ") if value is not None else ""
    return clip(key, _KEY_LIMIT - 20) if key else f"(no {KEY_FIELD}, CHSEQ {shown(record.get('CHSEQ'), 30)})"


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}={shown(error.get('input'), 60)}: {error['msg']}"
        for error in exc.errors()
    )


def _bounded(record: dict[str, Any]) -> dict[str, Any]:
    """The record as JSON, at most 40 fields, text clipped: enough to map it again and to read it."""
    return {clip(str(name), 40): _json_value(value) for name, value in list(record.items())[:_RECORD_FIELDS]}


def _json_value(value: object) -> object:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, Decimal):
        return str(value)  # the mapping reads a decimal from its text exactly
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return clip(value, _RECORD_TEXT_LIMIT)
    return shown(value, _RECORD_TEXT_LIMIT)


__all__ = ["CURSOR", "SOURCE", "MaterialSyncResult", "sync_materials"]
