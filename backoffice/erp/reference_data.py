"""The ERP's customising (countries, currencies, units, payment terms) and its seed materials.

The seed material numbers are FIXED: the demo, the mappings and other tests rely on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

#: ISO 3166-1 alpha-3 -> name (the ERP's own country codes, table T005 in SAP terms)
COUNTRIES: dict[str, str] = {
    "ARE": "United Arab Emirates",
    "ARG": "Argentina",
    "AUS": "Australia",
    "AUT": "Austria",
    "BEL": "Belgium",
    "BRA": "Brazil",
    "CAN": "Canada",
    "CHE": "Switzerland",
    "CHL": "Chile",
    "CHN": "China",
    "CZE": "Czechia",
    "DEU": "Germany",
    "DNK": "Denmark",
    "EGY": "Egypt",
    "ESP": "Spain",
    "FIN": "Finland",
    "FRA": "France",
    "GBR": "United Kingdom",
    "GRC": "Greece",
    "HKG": "Hong Kong",
    "HUN": "Hungary",
    "IDN": "Indonesia",
    "IND": "India",
    "IRL": "Ireland",
    "ISR": "Israel",
    "ITA": "Italy",
    "JPN": "Japan",
    "KOR": "Korea, Republic of",
    "LUX": "Luxembourg",
    "MEX": "Mexico",
    "MYS": "Malaysia",
    "NLD": "Netherlands",
    "NOR": "Norway",
    "NZL": "New Zealand",
    "POL": "Poland",
    "PRT": "Portugal",
    "ROU": "Romania",
    "SAU": "Saudi Arabia",
    "SGP": "Singapore",
    "SWE": "Sweden",
    "THA": "Thailand",
    "TUR": "Türkiye",
    "TWN": "Taiwan",
    "USA": "United States of America",
    "VNM": "Viet Nam",
    "ZAF": "South Africa",
}

#: ISO 4217 codes the ERP accepts
CURRENCIES: dict[str, str] = {
    "AUD": "Australian dollar",
    "CAD": "Canadian dollar",
    "CHF": "Swiss franc",
    "CNY": "Renminbi",
    "DKK": "Danish krone",
    "EUR": "Euro",
    "GBP": "Pound sterling",
    "JPY": "Yen",
    "NOK": "Norwegian krone",
    "PLN": "Zloty",
    "SEK": "Swedish krona",
    "USD": "US dollar",
}

#: the ERP's units of measure (not UN/ECE codes: mappings translate)
UNITS: dict[str, str] = {"ST": "piece", "KG": "kilogram", "M": "metre", "L": "litre", "PAK": "pack"}

#: payment terms key -> days net
PAYMENT_TERMS: dict[str, int] = {"NT00": 0, "NT14": 14, "NT30": 30, "NT45": 45, "NT60": 60, "NT90": 90}

DEFAULT_CURRENCY = "EUR"
DEFAULT_PAYMENT_TERMS = "NT30"
#: the only sales document type the reference ERP knows (standard order)
ORDER_TYPES = frozenset({"TA"})


@dataclass(frozen=True)
class SeedMaterial:
    matnr: str
    maktx: str
    meins: str
    netpr: Decimal
    waers: str = DEFAULT_CURRENCY


SEED_MATERIALS: tuple[SeedMaterial, ...] = (
    SeedMaterial("MAT-1001", "Industrial pump P200", "ST", Decimal("1250.00")),
    SeedMaterial("MAT-1002", "Pressure valve V15", "ST", Decimal("89.50")),
    SeedMaterial("MAT-1003", "Hydraulic oil HLP46", "L", Decimal("4.20")),
    SeedMaterial("MAT-1004", "Steel pipe 2in", "M", Decimal("12.80")),
    SeedMaterial("MAT-1005", "Sealing kit", "PAK", Decimal("24.90")),
    SeedMaterial("MAT-1006", "Copper wire", "KG", Decimal("9.75")),
    SeedMaterial("MAT-1007", "Flow meter FM-3", "ST", Decimal("430.00")),
    SeedMaterial("MAT-1008", "Pump control unit PCU-1", "ST", Decimal("780.00")),
    SeedMaterial("MAT-1009", "Hose DN25", "M", Decimal("6.40")),
    SeedMaterial("MAT-1010", "Bearing grease", "KG", Decimal("18.30")),
)

__all__ = [
    "COUNTRIES",
    "CURRENCIES",
    "DEFAULT_CURRENCY",
    "DEFAULT_PAYMENT_TERMS",
    "ORDER_TYPES",
    "PAYMENT_TERMS",
    "SEED_MATERIALS",
    "UNITS",
    "SeedMaterial",
]
