"""How to reach the ERP: address, credentials, timeouts, the retry budget and the answer size limit."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.urls import check_url

#: default ``max_answer_bytes``: more than twice the largest page the reference ERP returns at its default
#: page size (500 records, and it stops a page at about 4 MiB: backoffice/erp/records.py PAGE_BYTES);
#: docs/architecture.md has the figures
MAX_ANSWER_BYTES = 10 * 1024 * 1024
#: default ``max_answer_elements``: a parsed answer costs about 350 bytes an element (lxml tree and zeep's
#: objects, measured on a ListMaterials answer of 100,000 elements: +34 MB), so 8 threads each holding
#: 50,000 take about 140 MB over the worker's ~65 MB; the reference ERP ends a page at half this
#: (backoffice/erp/records.py PAGE_ELEMENTS)
MAX_ANSWER_ELEMENTS = 50_000


class ErpSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the SOAP service URL, e.g. http://127.0.0.1:8081/erp; every call goes here, whatever the WSDL says
    url: str
    #: where the WSDL is read from (once, on first use); default: ``url + "?wsdl"``
    wsdl_url: str = ""
    username: str | None = None
    password: SecretStr | None = None
    #: seconds to establish a TCP connection
    connect_timeout: float = Field(default=3.0, gt=0)
    #: seconds one socket read may wait (requests' read timeout; also used for reading the WSDL)
    operation_timeout: float = Field(default=10.0, gt=0)
    #: seconds for one HTTP exchange in all: connect, send and the whole answer (a dripped answer
    #: is cut here); the WSDL is read within the same limit
    call_deadline: float = Field(default=10.0, gt=0)
    #: seconds for one operation in all, every attempt and pause between them included; kept under
    #: the embedded transport's 30 s lease minus the consumer's 8 s requeue pause (connectors/consumer.py)
    retry_budget: float = Field(default=20.0, gt=0)
    #: bytes of one answer (after decompression), counted while reading; more is refused
    #: (RequestRejected; a changed-since read halves its page size instead). At least twice the
    #: largest page measured on the reference ERP at 500 rows, orders of 60 items (docs/architecture.md)
    max_answer_bytes: int = Field(default=MAX_ANSWER_BYTES, ge=4096)
    #: elements of one answer (and of the WSDL and each schema document), estimated from its bytes
    #: before parsing (every ``<`` but end tags): 10 MiB of ``<x/>`` would cost 500 MB as a tree.
    #: More is refused like ``max_answer_bytes`` (a changed-since read halves its page size)
    max_answer_elements: int = Field(default=MAX_ANSWER_ELEMENTS, ge=1000)
    #: bytes of the WSDL and of each schema document it includes, counted while reading
    max_wsdl_bytes: int = Field(default=4 * 1024 * 1024, ge=4096)
    #: attempts in all for a call that fails in transport (1 = no retry)
    retries: int = Field(default=3, ge=1)
    #: first pause between attempts in seconds; doubles each time, up to ``retry_wait_max``
    retry_wait: float = Field(default=0.1, ge=0)
    retry_wait_max: float = Field(default=2.0, ge=0)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        # refused at load time, not at the first call: `http://`, `http://[::1/erp`, `not a url`
        return check_url(value, schemes=("http", "https"))

    @field_validator("wsdl_url")
    @classmethod
    def _http_or_derived(cls, value: str) -> str:
        # empty: derived from url below, once url is known to be good (a bad url is reported once)
        return check_url(value, schemes=("http", "https")) if value else value

    @model_validator(mode="after")
    def _default_wsdl_url(self) -> ErpSettings:
        if not self.wsdl_url:
            object.__setattr__(self, "wsdl_url", self.url + "?wsdl")  # frozen: set once, while validating
        return self


__all__ = ["MAX_ANSWER_BYTES", "MAX_ANSWER_ELEMENTS", "ErpSettings"]
