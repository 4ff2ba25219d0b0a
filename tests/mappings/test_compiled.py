"""The compiled mapping functions give exactly what the interpreter they replace gave: values, their types, errors.

The interpreter is kept in tests/mappings/reference_engine.py. Both run on the same inputs: records built
from each shipped definition's own paths with values of every kind (right, wrong type, empty, padded,
text XML cannot carry, wrong shapes), and valid canonical models, which the compiled side reads by
attribute instead of dumping them.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError, computed_field, model_serializer

from canonical_model.errors import MappingError
from canonical_model.order import OrderLine, SalesOrder
from canonical_model.party import Customer
from canonical_model.product import Product
from canonical_model.text import xml_unsafe
from mappings import Catalog, Mapping, load_mapping
from mappings.definition import Definition, Direction, Rule
from mappings.model_read import plain_fields
from mappings.paths import FieldPath, PathStructureError, write
from tests.mappings import reference_engine

SHIPPED = ["erp_customer", "erp_material", "erp_sales_order"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _definition(mapping: Mapping) -> Definition:
    definition: Definition = mapping._definition
    return definition


def _typed(value: Any) -> Any:
    """``value`` with the type of every leaf, so that Decimal("2") and Decimal("2.000"), 1 and True differ."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_typed(item) for item in value])
    return (type(value).__name__, repr(value))


def _outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("result", _typed(call()))
    except MappingError as exc:
        chained = (exc.__cause__ is None, exc.__suppress_context__)
        return ("MappingError", exc.path, _typed(exc.value), exc.reason, exc.mapping, str(exc), chained)
    except (TypeError, PathStructureError) as exc:
        return (type(exc).__name__, str(exc))


# -- values of every kind --------------------------------------------------------------------------------

REALISTIC = st.sampled_from(
    [
        "EUR", "eur", "JPY", "DE", "DEU", "FR", "FRA", "XK", "H87", "KGM", "PK", "C62", "ST", "KG ", "PAK", "FASS",
        "NT30", "NT99", 30, 21, 0, "30", "MAT-1001", "MAT-1001  ", "CRM-C-000042", "Müller GmbH", "   ",
        "Nordlicht\x0bTechnik", "tab\there", "x" * 36, "x" * 41, "12.5", "1.2345", "19.9", "abc", "1,250.00",
        Decimal("2.000"), Decimal("12.50"), Decimal("100.005"), Decimal("1E+3"), Decimal("NaN"), Decimal("Infinity"),
        Decimal("1E+30"), 1.5, 0.1, True, False, "X", "true", "no", 1, 2,
        date(2024, 5, 17), datetime(2024, 5, 17, 8, 0), "2024-05-17", "2024-13-01", "0000100007",
    ]
)  # fmt: skip
ODD = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=12),
    st.integers(-(10**6), 10**20),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
SCALARS = st.one_of(REALISTIC, REALISTIC, ODD)


def _record(rules: tuple[Rule, ...], direction: Direction, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Records holding a value (or none) at each path the rules read, now and then something else in its place."""
    parts = []
    for rule in rules:
        source = rule.source(direction)
        if source is None or direction not in rule.directions:
            continue
        if rule.items is not None and depth < 2:
            item = _record(rule.items, direction, depth + 1)
            value = st.one_of(
                st.lists(item, min_size=1, max_size=4),
                st.lists(item, max_size=4),
                item,  # a single repeated element, as XML-to-dict converters give it
                st.lists(st.one_of(item, SCALARS), max_size=3),
                SCALARS,
            )
        else:
            value = SCALARS
        parts.append(st.tuples(st.just(source), value, st.integers(0, 9).map(bool)))
        for length in range(1, len(source.segments)):
            # now and then the wrong shape on the way: a scalar where an object or a list belongs
            prefix = FieldPath(source.segments[:length])
            parts.append(st.tuples(st.just(prefix), SCALARS, st.integers(0, 15).map(lambda roll: roll == 0)))
    return st.tuples(*parts).map(_build)


def _build(parts: tuple[tuple[FieldPath, Any, bool], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value, present in parts:
        if not present:
            continue
        with contextlib.suppress(PathStructureError, TypeError, AttributeError):
            write(out, path, value)
    return out


CONTEXTS = st.one_of(
    st.none(),
    st.just({}),
    st.fixed_dictionaries({}, optional={"kunnr": SCALARS, "id": SCALARS, "customer_id": SCALARS}),
)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("direction", list(Direction))
@SETTINGS
@given(data=st.data())
def test_records_of_every_kind_map_exactly_as_the_interpreter_mapped_them(
    name: str, direction: Direction, data: st.DataObject
) -> None:
    mapping = load_mapping(name)
    definition = _definition(mapping)
    record = data.draw(_record(definition.rules, direction), label="record")
    context = data.draw(CONTEXTS, label="context")
    if direction is Direction.TO_TARGET:
        ours = _outcome(lambda: mapping.to_target(record, context))
        before = _outcome(lambda: reference_engine.to_target(definition, record, context))
    else:
        ours = _outcome(lambda: mapping.to_canonical(record, context))
        before = _outcome(lambda: reference_engine.to_canonical(definition, record, context))
    assert ours == before


# -- canonical models, read by attribute ---------------------------------------------------------------

CODES = st.sampled_from(["H87", "KGM", "MTR", "LTR", "PK", "C62", "XYZ", "ST"])
TEXT = st.one_of(st.sampled_from(["MAT-1001", "Müller GmbH", "x" * 18, "a\x0bb", "Hauptstr. 1"]), st.text(max_size=20))
AMOUNTS = st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False) | st.sampled_from(
    [Decimal("12.5"), Decimal("1E+3"), Decimal("0.001")]
)


@st.composite
def _orders(draw: st.DrawFn) -> SalesOrder:
    line = st.fixed_dictionaries(
        {"product_id": TEXT, "quantity": AMOUNTS, "unit_price": AMOUNTS},
        optional={"unit": CODES},
    )
    raw = {
        "id": draw(TEXT),
        "customer_id": "CRM-C-1",
        "currency": draw(st.sampled_from(["EUR", "USD", "JPY", "KWD"])),
        "order_date": draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31))),
        "lines": draw(st.lists(line, min_size=1, max_size=8)),
    }
    try:
        return SalesOrder.model_validate(raw)
    except ValidationError:
        return SalesOrder.model_validate(
            {**raw, "id": "ORD-1", "lines": [{"product_id": "M", "quantity": "1", "unit_price": "1"}]}
        )


@st.composite
def _customers(draw: st.DrawFn) -> Customer:
    address = {
        "street": draw(TEXT),
        "city": draw(TEXT),
        "postal_code": draw(st.sampled_from(["10115", "24103", "x" * 11])),
        "country": draw(st.sampled_from(["DE", "FR", "XK", "NO"])),
    }
    raw: dict[str, Any] = {
        "id": draw(TEXT),
        "name": draw(TEXT),
        "addresses": [address],
        "tax_id": draw(st.none() | TEXT),
        "email": draw(st.none() | st.sampled_from(["a@b.example", "einkauf@mueller.example"])),
        "phone": draw(st.none() | st.sampled_from(["+49 30 1234567"])),
        "currency": draw(st.sampled_from(["EUR", "USD"])),
        "credit_limit": draw(AMOUNTS),
        "payment_terms_days": draw(st.sampled_from([0, 14, 21, 30, 90])),
    }
    try:
        return Customer.model_validate(raw)
    except ValidationError:
        return Customer.model_validate(
            {"id": "C-1", "name": "N", "addresses": [{"street": "s", "city": "c", "postal_code": "1", "country": "DE"}]}
        )


@st.composite
def _products(draw: st.DrawFn) -> Product:
    raw = {
        "id": draw(TEXT),
        "name": draw(TEXT),
        "unit": draw(CODES),
        "list_price": draw(AMOUNTS),
        "active": draw(st.booleans()),
    }
    try:
        return Product.model_validate(raw)
    except ValidationError:
        return Product(id="M", name="n", list_price=Decimal(1))


MODELS: dict[str, st.SearchStrategy[BaseModel]] = {
    "erp_sales_order": _orders(),
    "erp_customer": _customers(),
    "erp_material": _products(),
}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_mapping_reads_its_model_by_attribute(name: str) -> None:
    assert load_mapping(name)._to_target_model is not None


@pytest.mark.parametrize("name", SHIPPED)
@SETTINGS
@given(data=st.data())
def test_canonical_models_map_exactly_as_their_dump_did(name: str, data: st.DataObject) -> None:
    mapping = load_mapping(name)
    model = data.draw(MODELS[name], label="model")
    context = data.draw(CONTEXTS, label="context")
    before = _outcome(lambda: reference_engine.to_target(_definition(mapping), model, context))
    assert _outcome(lambda: mapping.to_target(model, context)) == before
    assert _outcome(lambda: mapping.to_target(model.model_dump(), context)) == before


def _order(**line: Any) -> SalesOrder:
    """An order built without validation, holding what its line says: as a model_construct() would."""
    values = {"product_id": "MAT-1", "quantity": Decimal(1), "unit": "H87", "unit_price": Decimal("1.00")} | line
    return SalesOrder.model_construct(
        id="ORD-1",
        customer_id="C",
        currency="EUR",
        order_date=date(2026, 11, 30),
        lines=[OrderLine.model_construct(**values)],
    )


class _Code(str):
    """Text of a type the dump might give differently: the compiled side maps the dump instead."""


KWMENGE = "[erp field ITEMS.ITEM[0].KWMENGE]"
VRKME = "[erp field ITEMS.ITEM[0].VRKME]"
NETPR = "[erp field ITEMS.ITEM[0].NETPR]"


@pytest.mark.filterwarnings("ignore::UserWarning")  # the dump warns about the values a model should not hold
@pytest.mark.parametrize(
    ("line", "path", "reason"),
    [
        ({"quantity": Decimal("1.2345")}, "lines[0].quantity", f"more than 3 decimal places {KWMENGE}"),
        ({"unit": _Code("XYZ")}, "lines[0].unit", f"no system code for it in value map 'unit' {VRKME}"),
        ({"product_id": "M" * 19}, "lines[0].product_id", "longer than 18 characters [erp field ITEMS.ITEM[0].MATNR]"),
        ({"product_id": None}, "lines[0].product_id", "required, but missing [erp field ITEMS.ITEM[0].MATNR]"),
        ({"unit_price": Decimal("NaN")}, "lines[0].unit_price", f"expected a finite decimal number {NETPR}"),
    ],
)  # fmt: skip
def test_a_bad_value_in_an_unvalidated_model_fails_as_before(line: dict[str, Any], path: str, reason: str) -> None:
    mapping = load_mapping("erp_sales_order")
    order = _order(**line)
    with pytest.raises(MappingError) as caught:
        mapping.to_target(order, {"kunnr": "1"})
    assert (caught.value.path, caught.value.reason) == (path, reason)
    assert _outcome(lambda: mapping.to_target(order, {"kunnr": "1"})) == _outcome(
        lambda: reference_engine.to_target(_definition(mapping), order, {"kunnr": "1"})
    )


def test_a_value_the_dump_could_not_compute_with_is_now_named_by_the_mapping() -> None:
    """The one difference: the interpreter dumped the whole model, and a text quantity broke the line's
    net_amount (TypeError) before the mapping saw it; read by attribute, the mapping names the field."""
    mapping = load_mapping("erp_sales_order")
    order = _order(quantity="1.2345")
    with pytest.raises(TypeError):
        reference_engine.to_target(_definition(mapping), order, {"kunnr": "1"})
    with pytest.raises(MappingError) as caught:
        mapping.to_target(order, {"kunnr": "1"})
    assert (caught.value.path, caught.value.value, caught.value.reason) == (
        "lines[0].quantity",
        "1.2345",
        f"more than 3 decimal places {KWMENGE}",
    )


def test_a_value_of_a_subclass_is_mapped_from_the_dump_with_the_same_result() -> None:
    mapping = load_mapping("erp_sales_order")
    order = _order(unit=_Code("KGM"))
    assert mapping.to_target(order, {"kunnr": "1"})["ITEMS"]["ITEM"][0]["VRKME"] == "KG"


def test_a_subclass_of_the_model_is_mapped_from_its_dump() -> None:
    class Special(SalesOrder):
        pass

    order = Special.model_validate(_order().model_dump())
    mapping = load_mapping("erp_sales_order")
    assert mapping.to_target(order, {"kunnr": "1"}) == reference_engine.to_target(
        _definition(mapping), order, {"kunnr": "1"}
    )


# -- which fields read the same by attribute -----------------------------------------------------------


class _Inner(BaseModel):
    code: str


class _Serialized(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plain: str
    json_only: Annotated[Decimal, PlainSerializer(str, return_type=str, when_used="json")]
    always: Annotated[Decimal, PlainSerializer(str, return_type=str)]
    excluded: str = Field(default="x", exclude=True)
    inner: _Inner | None = None
    inners: list[_Inner] = []
    nested_always: list[Annotated[int, PlainSerializer(str, return_type=str)]] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def derived(self) -> int:
        return 1


class _OwnSerializer(BaseModel):
    plain: str

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        return {"plain": self.plain.upper()}


def test_plain_fields_are_those_the_dump_gives_unchanged() -> None:
    assert plain_fields(_Serialized) == {"plain", "json_only", "inner", "inners", "derived"}
    assert plain_fields(_OwnSerializer) == frozenset()
    assert {"id", "currency", "order_date", "lines"} <= plain_fields(SalesOrder)
    assert "stated_total" not in plain_fields(SalesOrder), "excluded from the dump"
    assert {"product_id", "quantity", "unit", "unit_price", "net_amount"} <= plain_fields(OrderLine)


def test_the_compiled_source_names_no_rule() -> None:
    """Applying runs straight code: no Rule is consulted per call (the functions' globals hold none)."""
    for name in SHIPPED:
        mapping = load_mapping(name)
        for function in (mapping._to_target, mapping._to_canonical, mapping._to_target_model):
            assert function is not None
            assert not any(isinstance(value, Rule) for value in function.__globals__.values())


def test_every_character_xml_cannot_carry_is_unprintable() -> None:
    """The compiled XML check asks the pattern only about text that is not printable: sound only if this holds."""
    carried_but_printable = [
        code for code in range(0x110000) if xml_unsafe(chr(code)) is not None and chr(code).isprintable()
    ]
    assert carried_but_printable == []


def test_text_of_a_definition_never_becomes_code(catalog_dir: Path) -> None:
    """Keys and constants reach the generated source only as literals or escaped comments."""
    text = """
        model: Customer
        system: erp
        fields:
          - canonical: id
            system: EXTREF
          - system: KUNNR
            context: "x\\nraise SystemExit('injected')"
          - system: NOTE
            constant: "a\\nraise SystemExit('injected')"
    """
    (catalog_dir / "definitions" / "crm_inject.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    mapping = Catalog(catalog_dir / "definitions", catalog_dir / "value_maps").mapping("crm_inject")
    key = "x\nraise SystemExit('injected')"
    assert mapping.to_target({"id": "C-1"}, {key: "K"}) == {
        "EXTREF": "C-1",
        "KUNNR": "K",
        "NOTE": "a\nraise SystemExit('injected')",
    }
