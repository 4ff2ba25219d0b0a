"""A changed-since page of the reference ERP stops at about PAGE_BYTES of XML, whatever MAX_ROWS allows
(500 sales orders of 999 items would be a 68 MB answer): the client's answer limit can be twice the
largest page. Checked on the function that builds every changed-since page, with an in-memory table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Connection, Integer, MetaData, Row, String, Table, create_engine, insert

from backoffice.erp.records import PAGE_BYTES, PAGE_ELEMENTS, Record, changed_since, xml_elements, xml_size
from connectors.erp.settings import MAX_ANSWER_BYTES, MAX_ANSWER_ELEMENTS

metadata = MetaData()
things = Table("things", metadata, Column("chseq", Integer, primary_key=True), Column("text", String))


def _render(conn: Connection, row: Row[Any]) -> Record:
    return {"CHSEQ": row.chseq, "TEXT": row.text}


def test_a_page_stops_at_its_byte_budget_and_says_there_is_more() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    record_text = "x" * 1000
    with engine.begin() as conn:
        conn.execute(insert(things), [{"chseq": n, "text": record_text} for n in range(1, 41)])
        one = xml_size({"CHSEQ": 1, "TEXT": record_text}, "THING")
        budget = 10 * one + one // 2  # room for ten records and a half
        page = changed_since(conn, things, 0, 500, _render, "THINGS", "THING", page_bytes=budget)
        assert [r["CHSEQ"] for r in page["THINGS"]["THING"]] == list(range(1, 11))
        assert (page["LAST_SEQ"], page["MORE"]) == (10, True)
        # the next page goes on from there; a record larger than the budget still comes, alone
        page = changed_since(conn, things, 10, 500, _render, "THINGS", "THING", page_bytes=one // 2)
        assert ([r["CHSEQ"] for r in page["THINGS"]["THING"]], page["LAST_SEQ"], page["MORE"]) == ([11], 11, True)
        # MAX_ROWS still bounds it, and the last page says there is no more
        page = changed_since(conn, things, 30, 500, _render, "THINGS", "THING")
        assert (len(page["THINGS"]["THING"]), page["LAST_SEQ"], page["MORE"]) == (10, 40, False)


def test_the_size_estimate_counts_tags_and_text() -> None:
    # <R> </R>, <A>xy</A>, and each <B> element with its <C>
    assert xml_size({"A": "xy", "B": [{"C": 1}, {"C": 22}]}, "R") == 7 + (7 + 2) + (7 + 7 + 1) + (7 + 7 + 2)
    assert PAGE_BYTES * 2 <= MAX_ANSWER_BYTES  # the client's default answer limit holds two such pages


def test_a_page_stops_at_its_element_budget() -> None:
    # small records, many elements: the element budget ends the page long before the byte budget
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(things), [{"chseq": n, "text": "t"} for n in range(1, 41)])
        one = xml_elements({"CHSEQ": 1, "TEXT": "t"}, "THING")
        assert one == 3
        page = changed_since(conn, things, 0, 500, _render, "THINGS", "THING", page_elements=10 * one + 1)
        assert ([r["CHSEQ"] for r in page["THINGS"]["THING"]], page["LAST_SEQ"], page["MORE"]) == (
            list(range(1, 11)),
            10,
            True,
        )
        # a record with more elements than the budget still comes, alone
        page = changed_since(conn, things, 10, 500, _render, "THINGS", "THING", page_elements=1)
        assert ([r["CHSEQ"] for r in page["THINGS"]["THING"]], page["LAST_SEQ"]) == ([11], 11)


def test_the_element_estimate_and_the_client_limit() -> None:
    # <R>, <A>, and each <B> element with its <C>
    assert xml_elements({"A": "xy", "B": [{"C": 1}, {"C": 22}]}, "R") == 1 + 1 + 2 + 2
    # the client's default element limit holds two such pages: a legit page is never halved for it
    assert PAGE_ELEMENTS * 2 <= MAX_ANSWER_ELEMENTS
