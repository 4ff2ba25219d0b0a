from __future__ import annotations

import pytest

from mappings.paths import MISSING, FieldPath, PathStructureError, read, write


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("NAME1", ("NAME1",)),
        ("HEADER.KUNNR", ("HEADER", "KUNNR")),
        ("addresses[0].street", ("addresses", 0, "street")),
        ("ITEMS.ITEM[12].MATNR", ("ITEMS", "ITEM", 12, "MATNR")),
    ],
)
def test_a_path_parses_into_segments_and_prints_back(text: str, segments: tuple[str | int, ...]) -> None:
    path = FieldPath.parse(text)
    assert path.segments == segments
    assert str(path) == text


@pytest.mark.parametrize("text", ["", "a..b", ".a", "a.", "[0]", "a.[0]", "a[x]", "a b", "a[-1]"])
def test_bad_path_syntax_is_refused_with_the_path_in_the_message(text: str) -> None:
    with pytest.raises(ValueError, match="path"):
        FieldPath.parse(text)


def test_read_gives_missing_for_absent_keys_none_parents_and_short_lists() -> None:
    data = {"a": [{"b": 1}], "n": None}
    assert read(data, FieldPath.parse("a[0].b")) == 1
    assert read(data, FieldPath.parse("a[1].b")) is MISSING
    assert read(data, FieldPath.parse("x.y")) is MISSING
    assert read(data, FieldPath.parse("n.y")) is MISSING


def test_read_through_a_value_of_the_wrong_shape_says_where() -> None:
    with pytest.raises(PathStructureError, match=r"^a: expected a list"):
        read({"a": {"b": 1}}, FieldPath.parse("a[0].b"))
    with pytest.raises(PathStructureError, match=r"^a\[0\]: expected an object"):
        read({"a": ["text"]}, FieldPath.parse("a[0].b"))


def test_write_builds_objects_and_lists_and_pads_lists_with_objects() -> None:
    out: dict[str, object] = {}
    write(out, FieldPath.parse("ITEMS.ITEM[1].MATNR"), "M-2")
    write(out, FieldPath.parse("ITEMS.ITEM[0].MATNR"), "M-1")
    write(out, FieldPath.parse("HEADER.KUNNR"), "100")
    assert out == {"ITEMS": {"ITEM": [{"MATNR": "M-1"}, {"MATNR": "M-2"}]}, "HEADER": {"KUNNR": "100"}}
