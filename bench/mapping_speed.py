"""The erp_sales_order mapping of a 7-line order against the same transform written by hand, in the same run.

    python bench/mapping_speed.py [--lines 7] [--calls 20000] [--runs 7] [--interpreter]

- hand: ``hand_written_request`` below, one plain function that calls no product code: it reads the
  order's attributes, makes the checks the definition asks for (present, text, length, XML 1.0 text,
  upper case, decimals without rounding, the unit table, a date that is no date-time, a non-empty list)
  and builds the same request dict (checked equal before timing);
- ours: ``load_mapping("erp_sales_order").to_target(order, context={"kunnr": ...})``, as the order route
  calls it, on the same validated ``SalesOrder``;
- with ``--interpreter``, the interpreter the compiled functions replaced (tests/mappings/reference_engine.py).

Each run times --calls calls of each side back to back, the side that goes first alternating from run to
run, and gives the ratio hand/ours of that run (1.0: as fast as by hand). Printed: each run, then the median
and min..max of the per-call times and of the paired ratios. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from canonical_model.order import SalesOrder
from mappings import load_mapping

KUNNR = "0000100007"
UNITS = ("H87", "KGM", "MTR", "LTR", "PK", "C62")

# what the hand-written side knows, written out: the ERP's units and XML 1.0's characters
_ERP_UNIT = {"H87": "ST", "C62": "ST", "KGM": "KG", "MTR": "M", "LTR": "L", "PK": "PAK"}
_XML_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_THREE_PLACES = Decimal("0.001")
_TWO_PLACES = Decimal("0.01")


def hand_written_request(order: Any, kunnr: object) -> dict[str, Any]:
    """The CreateSalesOrder request for ``order`` with the definition's checks; ValueError names the field."""
    order_id = order.id
    if order_id is None or order_id == "":
        raise ValueError("id: required")
    if not isinstance(order_id, str) or _XML_UNSAFE.search(order_id):
        raise ValueError(f"id={order_id!r}: not XML text")
    if len(order_id) > 35:  # BSTKD is the shorter of its two fields (IDEMPOTENCY_KEY: 40)
        raise ValueError(f"id={order_id!r}: longer than 35 characters")
    if kunnr is None or kunnr == "":
        raise ValueError("context.kunnr: required")
    if not isinstance(kunnr, str) or len(kunnr) > 10 or _XML_UNSAFE.search(kunnr):
        raise ValueError(f"context.kunnr={kunnr!r}: not XML text of at most 10 characters")
    currency = order.currency
    if currency is None or currency == "":
        raise ValueError("currency: required")
    if not isinstance(currency, str):
        raise ValueError(f"currency={currency!r}: not text")
    currency = currency.upper()
    if len(currency) > 3 or _XML_UNSAFE.search(currency):
        raise ValueError(f"currency={currency!r}: not XML text of at most 3 characters")
    order_date = order.order_date
    if not isinstance(order_date, date) or isinstance(order_date, datetime):
        raise ValueError(f"order_date={order_date!r}: not a date")
    lines = order.lines
    if not lines:
        raise ValueError("lines: required")
    items = []
    for index, line in enumerate(lines):
        product_id = line.product_id
        if product_id is None or product_id == "":
            raise ValueError(f"lines[{index}].product_id: required")
        if not isinstance(product_id, str) or len(product_id) > 18 or _XML_UNSAFE.search(product_id):
            raise ValueError(f"lines[{index}].product_id={product_id!r}: not XML text of at most 18 characters")
        quantity = line.quantity
        if not isinstance(quantity, Decimal) or not quantity.is_finite():
            raise ValueError(f"lines[{index}].quantity={quantity!r}: not a decimal number")
        try:
            fixed_quantity = quantity.quantize(_THREE_PLACES)
        except InvalidOperation:
            raise ValueError(f"lines[{index}].quantity={quantity!r}: too many digits") from None
        if fixed_quantity != quantity:
            raise ValueError(f"lines[{index}].quantity={quantity!r}: more than 3 decimal places")
        unit = line.unit
        if unit is None or unit == "":
            unit = "H87"
        erp_unit = _ERP_UNIT.get(unit.upper()) if isinstance(unit, str) else None
        if erp_unit is None:
            raise ValueError(f"lines[{index}].unit={unit!r}: no ERP unit")
        item = {"MATNR": product_id, "KWMENGE": fixed_quantity, "VRKME": erp_unit}
        price = line.unit_price
        if price is not None:
            if not isinstance(price, Decimal) or not price.is_finite():
                raise ValueError(f"lines[{index}].unit_price={price!r}: not a decimal number")
            try:
                fixed_price = price.quantize(_TWO_PLACES)
            except InvalidOperation:
                raise ValueError(f"lines[{index}].unit_price={price!r}: too many digits") from None
            if fixed_price != price:
                raise ValueError(f"lines[{index}].unit_price={price!r}: more than 2 decimal places")
            item["NETPR"] = fixed_price
        items.append(item)
    return {
        "IDEMPOTENCY_KEY": order_id,
        "HEADER": {"KUNNR": kunnr, "AUART": "TA", "WAERS": currency, "BSTKD": order_id, "AUDAT": order_date},
        "ITEMS": {"ITEM": items},
    }


def build_order(lines: int) -> SalesOrder:
    return SalesOrder.model_validate(
        {
            "id": "ORD-2026-000042",
            "customer_id": "CRM-C-000042",
            "currency": "EUR",
            "order_date": "2026-11-30",
            "lines": [
                {
                    "product_id": f"MAT-{1001 + index}",
                    "quantity": Decimal(index + 2),
                    "unit": UNITS[index % len(UNITS)],
                    "unit_price": "12.5",
                }
                for index in range(lines)
            ],
        }
    )


def per_call_us(function: Callable[[], object], calls: int) -> float:
    """Microseconds of this process's CPU per call: on a shared machine, time waiting for a core is not ours."""
    start = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - start) / calls * 1e6


def spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--interpreter", action="store_true", help="also time the interpreter of before (tests/)")
    args = parser.parse_args()

    mapping = load_mapping("erp_sales_order")
    order = build_order(args.lines)
    context = {"kunnr": KUNNR}
    sides: dict[str, Callable[[], object]] = {
        "hand": lambda: hand_written_request(order, KUNNR),
        "ours": lambda: mapping.to_target(order, context=context),
    }
    expected = hand_written_request(order, KUNNR)
    if mapping.to_target(order, context=context) != expected:
        raise SystemExit("the two sides disagree: not the same transform")
    if args.interpreter:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.mappings import reference_engine

        definition = mapping._definition  # the rules the interpreter walks
        sides["interpreter"] = lambda: reference_engine.to_target(definition, order, context)
        if sides["interpreter"]() != expected:
            raise SystemExit("the interpreter disagrees")

    for function in sides.values():
        per_call_us(function, max(1, args.calls // 10))  # warm up
    times: dict[str, list[float]] = {name: [] for name in sides}
    ratios: list[float] = []
    print(f"erp_sales_order.to_target, {args.lines}-line order, {args.calls} calls per side per run")
    print(f"load before: {os.getloadavg()}")
    for run in range(args.runs):
        order_of_sides = list(sides) if run % 2 == 0 else list(reversed(sides))
        for name in order_of_sides:
            times[name].append(per_call_us(sides[name], args.calls))
        ratios.append(times["hand"][-1] / times["ours"][-1])
        figures = ", ".join(f"{name} {times[name][-1]:.1f} us" for name in sides)
        print(f"run {run + 1} ({' first, '.join(order_of_sides[:1])} first): {figures}, hand/ours {ratios[-1]:.2f}")
    print("per call, median (min..max):")
    for name in sides:
        print(f"  {name:12} {spread(times[name], 1)} us")
    print(f"hand/ours (paired per run): {spread(ratios, 2)}")
    if args.interpreter:
        gains = [old / new for old, new in zip(times["interpreter"], times["ours"], strict=True)]
        print(f"interpreter/ours (paired per run): {spread(gains, 1)}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
