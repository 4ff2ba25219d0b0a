"""Definition files: the shipped ones compile, and a bad one is refused once, naming file and entry."""

from __future__ import annotations

import inspect
import textwrap
from importlib.resources import files
from pathlib import Path

import pytest

import mappings
from mappings import Catalog, MappingDefinitionError, load_mapping
from mappings.catalog import default_catalog

SHIPPED = ["erp_customer", "erp_material", "erp_sales_order"]

# A small valid definition; each test below breaks one thing in it.
GOOD = """
    model: Customer
    system: erp
    fields:
      - canonical: id
        system: EXTREF
        required: true
      - canonical: name
        system: NAME1
      - canonical: addresses[0].country
        system: LAND1
        value_map: country
"""


def _compile(root: Path, text: str, name: str = "crm_thing") -> mappings.Mapping:
    path = root / "definitions" / f"{name}.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return Catalog(root / "definitions", root / "value_maps").mapping(name)


def _refused(root: Path, text: str, name: str = "crm_thing") -> str:
    with pytest.raises(MappingDefinitionError) as caught:
        _compile(root, text, name)
    message = str(caught.value)
    assert message.startswith(str(root)), f"the message must name the file: {message}"
    return message


def test_the_small_definition_used_below_is_valid(catalog_dir: Path) -> None:
    mapping = _compile(catalog_dir, GOOD)
    assert mapping.to_target({"id": "C-1", "name": "ACME", "addresses": [{"country": "FR"}]}) == {
        "EXTREF": "C-1",
        "NAME1": "ACME",
        "LAND1": "FRA",
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_definition_compiles_from_package_data(name: str) -> None:
    assert (files("mappings") / "definitions" / f"{name}.yaml").is_file()
    mapping = load_mapping(name)
    assert mapping.name == name
    assert load_mapping(name) is mapping, "compiled once, then cached"


def test_the_shipped_folder_holds_exactly_the_shipped_definitions() -> None:
    assert default_catalog().mapping_names() == SHIPPED


def test_unknown_value_map(catalog_dir: Path) -> None:
    message = _refused(catalog_dir, GOOD.replace("value_map: country", "value_map: contry"))
    assert "crm_thing.yaml: fields[2] (addresses[0].country <-> LAND1): unknown value map 'contry'" in message
    assert "did you mean 'country'?" in message


def test_duplicate_target(catalog_dir: Path) -> None:
    text = GOOD.replace("system: EXTREF", "system: NAME1")
    message = _refused(catalog_dir, text)
    assert "fields[1] (name <-> NAME1): duplicate target: to_target writes NAME1" in message
    assert "fields[0] (id <-> NAME1) already writes" in message


def test_a_target_inside_another_target_is_a_duplicate_too(catalog_dir: Path) -> None:
    text = GOOD + "      - canonical: addresses\n        system: ADDRESSES\n"
    message = _refused(catalog_dir, text)
    assert "fields[3] (addresses <-> ADDRESSES): duplicate target: to_canonical writes addresses" in message


def test_ambiguous_way_back_of_a_value_map_in_use(catalog_dir: Path) -> None:
    (catalog_dir / "value_maps" / "country.yaml").write_text("to_target:\n  DE: DEU\n  XX: DEU\n", encoding="utf-8")
    message = _refused(catalog_dir, GOOD)
    assert "value_maps/country.yaml: to_target: DEU: 'DEU' is the target of 'DE' and 'XX'" in message


def test_misspelt_key(catalog_dir: Path) -> None:
    message = _refused(catalog_dir, GOOD.replace("value_map: country", "valuemap: country"))
    assert "fields[2] (addresses[0].country <-> LAND1): unknown key 'valuemap' (did you mean 'value_map'?)" in message


def test_canonical_path_checked_against_the_model(catalog_dir: Path) -> None:
    message = _refused(catalog_dir, GOOD.replace("canonical: name", "canonical: nmae"))
    assert "fields[1] (nmae <-> NAME1): Customer has no field 'nmae' (did you mean 'name'?)" in message
    message = _refused(catalog_dir, GOOD.replace("addresses[0].country", "addresses.country"))
    assert "addresses is a list: name a position, e.g. addresses[0].country" in message
    message = _refused(catalog_dir, GOOD.replace("canonical: name", "canonical: name.first"))
    assert "fields[1] (name.first <-> NAME1): name has no fields" in message


def test_bad_path_syntax(catalog_dir: Path) -> None:
    message = _refused(catalog_dir, GOOD.replace("system: NAME1", "system: NAME1..X"))
    assert "fields[1]: bad path 'NAME1..X'" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("model: Customer", "model: Cusotmer"),
            "model: 'Cusotmer' is not a canonical model (did you mean 'Customer'?)",
        ),
        (("system: erp", "system: erp\n    name: other"), "name: 'other' does not match the file name 'crm_thing'"),
        (("system: NAME1", "system: NAME1\n        type: text"), "fields[1] (name <-> NAME1): unknown type 'text'"),
        (("system: NAME1", "system: NAME1\n        places: 2"), "'places' applies to 'type: decimal' only"),
        (("system: NAME1", "system: NAME1\n        invert: true"), "'invert' negates a boolean"),
        (("system: NAME1", "system: NAME1\n        constant: X"), "a constant fills one side"),
        (("system: NAME1", "system: NAME1\n        direction: sideways"), "'direction' must be"),
        (("system: NAME1", "system: NAME1\n        required: yes please"), "'required' must be true or false"),
        (("        system: NAME1\n", ""), "fields[1] (name): nothing to map from"),
    ],
)
def test_other_definition_mistakes(catalog_dir: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in GOOD
    assert expected in _refused(catalog_dir, GOOD.replace(old, new, 1))


def test_a_file_that_is_not_yaml(catalog_dir: Path) -> None:
    message = _refused(catalog_dir, "fields:\n  - canonical: id\n   system: EXTREF\n")
    assert "crm_thing.yaml: line 3: not valid YAML" in message


def test_an_unknown_mapping_name_suggests_the_close_one() -> None:
    with pytest.raises(MappingDefinitionError, match=r"no mapping named 'erp_custmer'; did you mean 'erp_customer'\?"):
        load_mapping("erp_custmer")


def test_a_mapping_name_is_never_a_path() -> None:
    with pytest.raises(MappingDefinitionError, match="is not a mapping name"):
        load_mapping("../definitions/erp_customer")


def test_the_public_surface_is_all_of_dunder_all() -> None:
    public = {
        name for name, value in vars(mappings).items() if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(mappings.__all__)
    assert {"load_mapping", "Mapping"} <= public
