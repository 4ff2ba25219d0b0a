from __future__ import annotations

import re
from pathlib import Path

import pytest

from mappings import Catalog, MappingDefinitionError, load_value_map
from mappings.convert import Rejected
from mappings.value_map import compile_value_map

REQUIRED_COUNTRIES = {
    "DE": "DEU", "FR": "FRA", "IT": "ITA", "ES": "ESP", "NL": "NLD", "BE": "BEL", "AT": "AUT", "CH": "CHE",
    "PL": "POL", "SE": "SWE", "GB": "GBR", "IE": "IRL", "US": "USA", "CA": "CAN", "MX": "MEX", "BR": "BRA",
    "CN": "CHN", "JP": "JPN", "KR": "KOR", "IN": "IND", "SG": "SGP", "AU": "AUS", "NZ": "NZL", "ZA": "ZAF",
    "AE": "ARE", "NO": "NOR",
}  # fmt: skip


def test_country_map_covers_at_least_40_countries_alpha2_to_alpha3() -> None:
    country = load_value_map("country")
    assert len(country.forward) >= 40
    for alpha2, alpha3 in REQUIRED_COUNTRIES.items():
        assert country.to_target(alpha2) == alpha3
    assert all(
        re.fullmatch(r"[A-Z]{2}", str(k)) and re.fullmatch(r"[A-Z]{3}", str(v)) for k, v in country.forward.items()
    )


def test_country_way_back_is_derived_for_every_entry() -> None:
    country = load_value_map("country")
    assert country.to_canonical("DEU") == "DE"
    assert {country.to_canonical(alpha3) for alpha3 in country.forward.values()} == set(country.forward)


def test_unit_map_and_its_declared_way_back() -> None:
    unit = load_value_map("unit")
    assert {code: unit.to_target(code) for code in ("H87", "KGM", "MTR", "LTR", "PK")} == {
        "H87": "ST", "KGM": "KG", "MTR": "M", "LTR": "L", "PK": "PAK",
    }  # fmt: skip
    assert unit.to_target("C62") == "ST"
    assert unit.to_canonical("ST") == "H87", "ST is shared by H87 and C62; the file says H87 wins"
    assert unit.to_canonical("PAK") == "PK"


def test_payment_terms_map_days_to_zterm_and_back_to_integers() -> None:
    terms = load_value_map("payment_terms")
    assert [terms.to_target(days) for days in (0, 14, 30, 45, 60, 90)] == [
        "NT00",
        "NT14",
        "NT30",
        "NT45",
        "NT60",
        "NT90",
    ]
    assert terms.to_canonical("NT30") == 30
    with pytest.raises(Rejected, match="payment_terms"):
        terms.to_target(21)
    with pytest.raises(Rejected):
        terms.to_target("30")  # types matter: the caller converts first (the definition's ``type: int``)


def test_a_boolean_is_never_taken_for_the_code_1() -> None:
    flags = compile_value_map({"to_target": {1: "ONE"}}, name="flags", source="flags.yaml")
    assert flags.to_target(1) == "ONE"
    with pytest.raises(Rejected):
        flags.to_target(True)


def test_an_ambiguous_way_back_is_a_definition_error_naming_file_and_entry() -> None:
    raw = {"to_target": {"H87": "ST", "C62": "ST", "KGM": "KG"}}
    with pytest.raises(MappingDefinitionError) as caught:
        compile_value_map(raw, name="unit", source="value_maps/unit.yaml")
    message = str(caught.value)
    assert message.startswith("value_maps/unit.yaml: to_target: ST: ")
    assert "'H87' and 'C62'" in message and "to_canonical" in message


def test_declaring_the_way_back_resolves_the_ambiguity() -> None:
    raw = {"to_target": {"H87": "ST", "C62": "ST"}, "to_canonical": {"ST": "C62", "STK": "H87"}}
    unit = compile_value_map(raw, name="unit", source="unit.yaml")
    assert unit.to_canonical("ST") == "C62"
    assert unit.to_canonical("STK") == "H87", "to_canonical may accept extra system spellings"


def test_a_declared_way_back_must_point_at_a_known_canonical_code() -> None:
    raw = {"to_target": {"H87": "ST"}, "to_canonical": {"ST": "H78"}}
    with pytest.raises(MappingDefinitionError, match=r"unit.yaml: to_canonical: ST: .*'H78'"):
        compile_value_map(raw, name="unit", source="unit.yaml")


def _catalog_with_value_map(root: Path, name: str, text: str) -> Catalog:
    (root / "value_maps" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return Catalog(root / "definitions", root / "value_maps")


def test_an_unquoted_yaml_boolean_key_gets_a_hint(catalog_dir: Path) -> None:
    catalog = _catalog_with_value_map(catalog_dir, "country2", "to_target:\n  DE: DEU\n  NO: NOR\n")
    with pytest.raises(MappingDefinitionError, match=r"country2.yaml: to_target: False: .*quote it"):
        catalog.value_map("country2")


def test_a_duplicate_key_is_refused_with_its_line(catalog_dir: Path) -> None:
    catalog = _catalog_with_value_map(catalog_dir, "country2", "to_target:\n  DE: DEU\n  FR: FRA\n  DE: DNK\n")
    with pytest.raises(MappingDefinitionError, match=r"country2.yaml: line 4: duplicate key 'DE'"):
        catalog.value_map("country2")
