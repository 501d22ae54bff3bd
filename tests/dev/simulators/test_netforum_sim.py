"""The netFORUM simulator speaks xWeb's SOAP protocol, over real HTTP, to a real SOAP client (zeep):
tokens, queries, facade writes, faults and the limits that punish careless clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zeep
from lxml import etree
from lxml.builder import ElementMaker
from writeback_dev.simulators.netforum import ENDPOINT_PATH, NS, NetforumSim
from zeep.exceptions import Fault, TransportError

X = ElementMaker(namespace=NS, nsmap={None: NS})
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
CMA = "CustomerMessagingActivity"
OPERATIONS = {"Authenticate", "GetQuery", "GetFacadeObject", "InsertFacadeObject", "UpdateFacadeObject"}


@pytest.fixture(scope="module")
def sim() -> Iterator[NetforumSim]:
    with NetforumSim() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(sim: NetforumSim) -> Iterator[None]:
    sim.reset()
    yield
    sim.fault_limit_per_day = 100


@pytest.fixture(scope="module")
def zeep_client(sim: NetforumSim) -> zeep.Client:
    return zeep.Client(sim.wsdl_url)


class XWeb:
    """A zeep client that keeps the token each response hands back, as an adapter must."""

    def __init__(self, client: zeep.Client, sim: NetforumSim) -> None:
        self.client, self.sim, self.token = client, sim, ""

    def authenticate(self, user: str | None = None, password: str | None = None) -> Any:
        reply = self.client.service.Authenticate(
            userName=user or self.sim.user, password=self.sim.password if password is None else password
        )
        self.token = reply.header.AuthorizationToken.Token
        return reply

    def call(self, operation: str, *, token: str | None = None, **params: Any) -> etree._Element:
        headers = {"AuthorizationToken": {"Token": self.token if token is None else token}}
        reply = getattr(self.client.service, operation)(**params, _soapheaders=headers)
        self.token = reply.header.AuthorizationToken.Token
        return getattr(reply.body, f"{operation}Result")._value_1

    def query(
        self, obj: str, columns: str, where: str = "", order: str = "", **kw: Any
    ) -> list[dict[str, str]]:
        node = self.call(
            "GetQuery", szObjectName=obj, szColumnList=columns, szWhereClause=where, szOrderBy=order, **kw
        )
        assert etree.QName(node).localname == f"{obj}Objects"
        assert node.get("recordReturn") == str(len(node))
        return rows(node)

    def insert(self, obj: str, *objects: dict[str, str]) -> list[dict[str, str]]:
        return rows(
            self.call("InsertFacadeObject", szObjectName=obj, oNode={"_value_1": onode(obj, *objects)})
        )

    def update(self, obj: str, key: str, fields: dict[str, str]) -> dict[str, str]:
        node = self.call(
            "UpdateFacadeObject", szObjectName=obj, szObjectKey=key, oNode={"_value_1": onode(obj, fields)}
        )
        return rows(node)[0]

    def get(self, obj: str, key: str) -> dict[str, str]:
        return rows(self.call("GetFacadeObject", szObjectName=obj, szObjectKey=key))[0]


@pytest.fixture
def xweb(zeep_client: zeep.Client, sim: NetforumSim) -> XWeb:
    client = XWeb(zeep_client, sim)
    client.authenticate()
    return client


@pytest.fixture
def http(sim: NetforumSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5) as client:
        yield client


def onode(obj: str, *objects: dict[str, str]) -> etree._Element:
    return X(
        f"{obj}Objects", *(X(f"{obj}Object", *(X(k, v) for k, v in fields.items())) for fields in objects)
    )


def rows(node: etree._Element) -> list[dict[str, str]]:
    return [{etree.QName(c).localname: c.text or "" for c in row} for row in node]


def code(fault: Fault) -> str:
    return fault.detail.findtext(f"{{{NS}}}xWebFault/{{{NS}}}Code")


def raises(code_expected: str, func: Any, *args: Any, **kwargs: Any) -> Fault:
    with pytest.raises(Fault) as caught:
        func(*args, **kwargs)
    assert code(caught.value) == code_expected, caught.value.message
    return caught.value


def envelope(operation: str, params: dict[str, str], token: str | None = None) -> bytes:
    """A request built by hand (with lxml), for checks a WSDL-driven client would not let us make."""
    soap = ElementMaker(namespace=SOAP_ENV, nsmap={"soap": SOAP_ENV})
    header = [soap.Header(X.AuthorizationToken(X.Token(token)))] if token is not None else []
    body = soap.Body(X(operation, *(X(k, v) for k, v in params.items())))
    return etree.tostring(soap.Envelope(*header, body), xml_declaration=True, encoding="utf-8")


def post(
    http: httpx.Client,
    operation: str,
    params: dict[str, str],
    token: str | None = None,
    action: str | None = None,
) -> httpx.Response:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action or NS + operation}"'}
    return http.post(ENDPOINT_PATH, content=envelope(operation, params, token), headers=headers)


def activity(cst_key: str, date: str, **fields: str) -> dict[str, str]:
    return {"cma_cst_key": cst_key, "cma_eml_address": "ada@example.org", "cma_activity_date": date, **fields}


# -- WSDL and tokens --------------------------------------------------------------------------------


def test_wsdl_loads_in_zeep_and_describes_every_operation(
    sim: NetforumSim, zeep_client: zeep.Client, http: httpx.Client
) -> None:
    service = zeep_client.wsdl.services["netFORUMXML"]
    port = service.ports["netFORUMXMLSoap"]
    assert set(port.binding._operations) == OPERATIONS
    assert port.binding_options["address"] == sim.endpoint
    assert port.binding._operations["GetQuery"].soapaction == NS + "GetQuery"
    lowered = http.get("/xweb/secure/netforumxml.asmx?wsdl")
    assert lowered.status_code == 200 and b"AuthorizationToken" in lowered.content
    assert http.get("/xweb/secure/other.asmx?WSDL").status_code == 404


def test_authenticate_puts_the_token_in_the_header_and_every_response_rotates_it(
    xweb: XWeb, sim: NetforumSim
) -> None:
    reply = xweb.authenticate()
    first = reply.header.AuthorizationToken.Token
    assert reply.body.AuthenticateResult == NS  # the body is not the token
    seen = [first]
    for _ in range(3):
        xweb.query("Individual", "cst_key")
        seen.append(xweb.token)
    assert len(set(seen)) == 4
    assert all(len(t) == 36 and t.count("-") == 4 for t in seen)


def test_a_replaced_token_works_for_the_grace_period_then_faults(xweb: XWeb, sim: NetforumSim) -> None:
    stale = xweb.token
    xweb.query("Individual", "cst_key")
    xweb.query("Individual", "cst_key", token=stale)  # a response lost in flight: still accepted
    sim.advance_clock(sim.token_grace + 1)
    raises("InvalidToken", xweb.query, "Individual", "cst_key", token=stale)
    assert xweb.query("Individual", "cst_key") == []  # the current token still works


def test_tokens_expire_twenty_minutes_after_authenticate_and_on_demand(xweb: XWeb, sim: NetforumSim) -> None:
    assert sim.token_timeout == 20 * 60
    sim.advance_clock(19 * 60)
    xweb.query("Individual", "cst_key")  # absolute expiry: using the session does not extend it
    sim.advance_clock(61)
    raises("TokenExpired", xweb.query, "Individual", "cst_key")
    xweb.authenticate()
    xweb.query("Individual", "cst_key")
    sim.expire_tokens()
    raises("TokenExpired", xweb.query, "Individual", "cst_key")


def test_missing_or_unknown_tokens_fault(http: httpx.Client, xweb: XWeb) -> None:
    raises("InvalidToken", xweb.query, "Individual", "cst_key", token="3f0c5b7e-0000-4000-8000-000000000000")
    reply = post(http, "GetQuery", {"szObjectName": "Individual", "szColumnList": "cst_key"})
    assert reply.status_code == 500
    assert b"<Code>InvalidToken</Code>" in reply.content


def test_twenty_five_failed_logins_lock_the_credentials(xweb: XWeb, sim: NetforumSim) -> None:
    for _ in range(24):
        raises("InvalidCredentials", xweb.authenticate, password="wrong")
    xweb.authenticate()  # a success resets the run of failures
    for _ in range(24):
        raises("InvalidCredentials", xweb.authenticate, password="wrong")
    assert sim.lockout() is None
    raises("InvalidCredentials", xweb.authenticate, password="wrong")
    assert sim.lockout() == "credentials"
    fault = raises("CredentialsLockedOut", xweb.authenticate)
    assert fault.message == "Credentials Locked Out"
    sim.unlock()
    xweb.authenticate()


# -- GetQuery ----------------------------------------------------------------------------------------


def test_getquery_finds_an_individual_by_email_case_insensitively(xweb: XWeb, sim: NetforumSim) -> None:
    ada = sim.add_individual("Ada", "Lovelace", "Ada@Example.org")
    sim.add_individual("Grace", "Hopper", "grace@example.org")
    found = xweb.query("Individual", "cst_key, ind_last_name", "eml_address = 'ada@example.ORG'")
    assert found == [{"cst_key": ada, "ind_last_name": "Lovelace"}]
    assert xweb.query("Individual", "cst_key", "eml_address = 'nobody@example.org'") == []
    emails = xweb.query("Email", "eml_cst_key, eml_invalid_flag", "eml_address = 'ada@example.org'")
    assert emails == [{"eml_cst_key": ada, "eml_invalid_flag": "0"}]


def test_getquery_where_grammar(xweb: XWeb, sim: NetforumSim) -> None:
    ada = sim.add_individual("Ada", "Lovelace", "ada@example.org")
    grace = sim.add_individual("Grace", "Hopper", "grace@example.org")
    sim.add_individual(None, "O'Brien", None)
    both = xweb.query(
        "Individual", "ind_last_name", f"cst_key IN ('{ada}', '{grace.upper()}')", "ind_last_name DESC"
    )
    assert [r["ind_last_name"] for r in both] == ["Lovelace", "Hopper"]
    no_email = xweb.query(
        "Individual", "ind_last_name, eml_address", "eml_address IS NULL AND ind_last_name = 'O''Brien'"
    )
    assert no_email == [{"ind_last_name": "O'Brien"}]  # NULL columns are left out of the row
    assert len(xweb.query("Individual", "cst_key", "eml_address IS NOT NULL AND cst_no_email_flag = 0")) == 2


@pytest.mark.parametrize(
    ("columns", "where", "order", "expected"),
    [
        ("*", "", "", "InvalidColumnList"),
        ("cst_key, *", "", "", "InvalidColumnList"),
        ("", "", "", "InvalidColumnList"),
        ("cst_key, no_such_column", "", "", "InvalidColumn"),
        ("cst_key", "eml_address = 'a' OR eml_address = 'b'", "", "InvalidWhereClause"),
        ("cst_key", "eml_address LIKE '%a%'", "", "InvalidWhereClause"),
        ("cst_key", "eml_address <> 'a'", "", "InvalidWhereClause"),
        ("cst_key", "cst_key = 'not-a-guid'", "", "InvalidWhereClause"),
        ("cst_key", "nope = 'a'", "", "InvalidColumn"),
        ("cst_key", "", "ind_last_name SIDEWAYS", "InvalidOrderBy"),
    ],
)
def test_getquery_refuses_what_xweb_refuses(
    xweb: XWeb, sim: NetforumSim, columns: str, where: str, order: str, expected: str
) -> None:
    raises(expected, xweb.query, "Individual", columns, where, order)
    assert sim.fault_count() == 1


def test_a_fault_is_a_soap_fault_with_code_string_and_detail(
    http: httpx.Client, xweb: XWeb, sim: NetforumSim
) -> None:
    reply = post(http, "GetQuery", {"szObjectName": "Individual", "szColumnList": "*"}, token=xweb.token)
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(reply.content)
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert root.find(f"{{{SOAP_ENV}}}Header") is None  # faults carry no token
    assert fault.findtext("faultcode") == "soap:Server"
    assert "*" in fault.findtext("faultstring")
    assert fault.findtext(f"detail/{{{NS}}}xWebFault/{{{NS}}}Code") == "InvalidColumnList"
    assert fault.findtext(f"detail/{{{NS}}}xWebFault/{{{NS}}}Method") == "GetQuery"
    xweb.query("Individual", "cst_key")  # the token sent with the faulted call is still current


def test_unreadable_requests_are_client_faults_and_not_counted(http: httpx.Client, sim: NetforumSim) -> None:
    garbled = http.post(ENDPOINT_PATH, content=b"<soap:Envelope", headers={"Content-Type": "text/xml"})
    assert garbled.status_code == 500 and b"soap:Client" in garbled.content
    mismatch = post(http, "GetQuery", {}, action=NS + "DeleteEverything")
    assert b"<Code>UnknownOperation</Code>" in mismatch.content
    assert sim.fault_count() == 0


# -- facade writes ---------------------------------------------------------------------------------


def test_insert_several_activities_in_one_call_and_read_them_back(xweb: XWeb, sim: NetforumSim) -> None:
    ada = sim.add_individual("Ada", "Lovelace", "ada@example.org")
    inserted = xweb.insert(
        CMA,
        activity(
            ada,
            "03/12/2024 13:44:55.892",
            cma_activity_code="Informz Mailing",
            cma_activity_subcode="Open",
            cma_message_name="Mailing Action | Device Used | Client Used | Country",
        ),
        activity(
            ada,
            "2024-03-10T09:00:00",
            cma_activity_code="Informz Mailing",
            cma_activity_subcode="Sent",
            cma_message_name="Mailing was sent",
            cma_message_id="998787",
            cma_recipient_id="897",
        ),
        activity(
            ada,
            "03/11/2024",
            cma_activity_code="InformzUnsubscribe",
            cma_message_name="03/11/2024 08:00 AM via mailing link",
        ),
    )
    keys = [row["cma_key"] for row in inserted]
    assert len(set(keys)) == 3 and all(inserted[i]["cma_cst_key"] == ada for i in range(3))
    assert sim.calls("InsertFacadeObject")[-1].objects == 3
    queried = xweb.query(
        CMA, "cma_key, cma_activity_date, cma_message_name", f"cma_cst_key = '{ada}'", "cma_activity_date"
    )
    assert [r["cma_activity_date"] for r in queried] == [
        "2024-03-10T09:00:00.000",
        "2024-03-11T00:00:00.000",
        "2024-03-12T13:44:55.892",
    ]
    tab = sim.correspondence(ada)
    assert [r["cma_message_name"] for r in tab] == [
        "Mailing was sent",
        "03/11/2024 08:00 AM via mailing link",
        "Mailing Action | Device Used | Client Used | Country",
    ]
    email_key = sim.individual(ada)["eml_key"]
    assert {r["cma_eml_key"] for r in tab} == {email_key}  # the address resolved to the customer's email
    assert tab[0]["cma_message_id"] == "998787" and tab[0]["cma_add_user"] == sim.user


def test_an_insert_is_all_or_nothing(xweb: XWeb, sim: NetforumSim) -> None:
    ada = sim.add_individual("Ada", "Lovelace", "ada@example.org")
    stranger = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
    fault = raises(
        "InvalidCustomerKey", xweb.insert, CMA, activity(ada, "03/12/2024"), activity(stranger, "03/12/2024")
    )
    assert "2 of 2" in fault.message and stranger in fault.message
    assert sim.activities() == [] and sim.fault_count() == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"cma_activity_date": None}, "RequiredFieldMissing"),
        ({"cma_eml_address": None}, "RequiredFieldMissing"),
        ({"cma_link_label": "x"}, "InvalidColumn"),
        ({"cma_activity_date": "13/01/2024"}, "InvalidDateFormat"),
        ({"cma_activity_date": "2024-03-12T10:00:00+02:00"}, "InvalidDateFormat"),
        ({"cma_activity_date": "March 12, 2024"}, "InvalidDateFormat"),
        ({"cma_message_name": "x" * 256}, "StringTooLong"),
        ({"cma_key": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"}, "ReadOnlyColumn"),
        ({"cma_cst_key": "not-a-guid"}, "InvalidFieldValue"),
        ({"cma_eml_key": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"}, "InvalidFieldValue"),
    ],
)
def test_insert_validation_faults(
    xweb: XWeb, sim: NetforumSim, change: dict[str, str | None], expected: str
) -> None:
    ada = sim.add_individual("Ada", "Lovelace", "ada@example.org")
    fields = {k: v for k, v in {**activity(ada, "03/12/2024 10:00:00"), **change}.items() if v is not None}
    raises(expected, xweb.insert, CMA, fields)
    assert sim.activities() == []


def test_a_malformed_onode_faults(xweb: XWeb, sim: NetforumSim) -> None:
    wrong = X("IndividualObjects", X("IndividualObject", X("ind_last_name", "x")))
    raises("InvalidNode", xweb.call, "InsertFacadeObject", szObjectName=CMA, oNode={"_value_1": wrong})
    raises("InvalidObjectName", xweb.insert, "Invoice", {"inv_code": "x"})


def test_update_individual_flags_and_email_status(xweb: XWeb, sim: NetforumSim) -> None:
    ada = sim.add_individual("Ada", "Lovelace", "ada@example.org")
    before = sim.individual(ada)
    updated = xweb.update(
        "Individual",
        ada,
        {"cst_no_email_flag": "1", "eml_invalid_flag": "1", "eml_invalid_reason": "Bounce: mailbox unknown"},
    )
    assert updated["cst_no_email_flag"] == "1" and updated["eml_invalid_reason"] == "Bounce: mailbox unknown"
    now = sim.individual(ada)
    assert now["cst_no_email_flag"] is True and now["eml_invalid_flag"] is True
    assert xweb.get("Individual", ada)["eml_invalid_flag"] == "1"
    xweb.update(
        "Individual",
        ada,
        {"cst_key": ada, "cst_no_email_flag": "0", "eml_invalid_flag": "0", "eml_invalid_reason": ""},
    )
    after = sim.individual(ada)
    assert {k: after[k] for k in before if k != "cst_change_date"} == {
        k: before[k] for k in before if k != "cst_change_date"
    }
    raises(
        "ReadOnlyColumn", xweb.update, "Individual", ada, {"eml_key": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"}
    )
    raises("InvalidFieldValue", xweb.update, "Individual", ada, {"cst_no_email_flag": "yes"})
    raises(
        "RecordNotFound",
        xweb.update,
        "Individual",
        "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",
        {"cst_no_email_flag": "1"},
    )


def test_soft_delete_hides_an_activity_everywhere(xweb: XWeb, sim: NetforumSim) -> None:
    ada = sim.add_individual("Ada", "Lovelace", "ada@example.org")
    kept, dropped = (
        row["cma_key"] for row in xweb.insert(CMA, activity(ada, "03/10/2024"), activity(ada, "03/11/2024"))
    )
    assert xweb.update(CMA, dropped, {"cma_delete_flag": "1"})["cma_delete_flag"] == "1"
    assert [r["cma_key"] for r in xweb.query(CMA, "cma_key", f"cma_cst_key = '{ada}'")] == [kept]
    assert [r["cma_key"] for r in sim.correspondence(ada)] == [kept]
    assert len(sim.correspondence(ada, include_deleted=True)) == 2
    raises("RecordNotFound", xweb.get, CMA, dropped)
    raises("RecordNotFound", xweb.update, CMA, dropped, {"cma_delete_flag": "0"})
    assert xweb.get(CMA, kept)["cma_cst_key"] == ada


# -- limits and faults -----------------------------------------------------------------------------


def test_faults_are_counted_per_user_and_the_limit_locks_the_user(
    xweb: XWeb, sim: NetforumSim, zeep_client: zeep.Client
) -> None:
    sim.fault_limit_per_day = 3
    sim.add_user("other-xweb", "other-password")
    other = XWeb(zeep_client, sim)
    other.authenticate("other-xweb", "other-password")
    ada = sim.add_individual("Ada", "Lovelace", "ada@example.org")
    for count in (1, 2):
        raises(
            "InvalidCustomerKey",
            xweb.insert,
            CMA,
            activity("0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "03/12/2024"),
        )
        assert sim.fault_count() == count
    xweb.query("Individual", "cst_key")  # successes are not counted
    raises("InvalidColumnList", xweb.query, "Individual", "*")
    assert sim.fault_count() == 3 and sim.lockout() == "fault_limit"
    raises("MethodsFaultLimitExceeded", xweb.insert, CMA, activity(ada, "03/12/2024"))
    raises("MethodsFaultLimitExceeded", xweb.authenticate)
    assert sim.fault_count() == 3 and sim.activities() == []
    assert other.query("Individual", "cst_key") == [{"cst_key": ada}]  # only that user is refused
    sim.advance_clock(24 * 3600)
    assert sim.fault_count() == 0
    raises("MethodsFaultLimitExceeded", xweb.authenticate)  # a new day does not lift it, an admin does
    sim.unlock()
    xweb.authenticate()
    assert len(xweb.insert(CMA, activity(ada, "03/12/2024"))) == 1


def test_outage_injection_answers_http_503_without_counting_faults(
    xweb: XWeb, sim: NetforumSim, http: httpx.Client
) -> None:
    assert http.post("/__sim/faults", json={"kind": "fail_next", "count": 2}).status_code == 200
    for _ in range(2):
        with pytest.raises(TransportError) as caught:
            xweb.query("Individual", "cst_key")
        assert caught.value.status_code == 503
    xweb.query("Individual", "cst_key")
    assert [r.status for r in sim.calls("GetQuery")] == [503, 503, 200]
    assert sim.fault_count() == 0


def test_slow_injection_delays_then_answers(xweb: XWeb, sim: NetforumSim) -> None:
    sim.slow_next(1, 0.3)
    started = time.perf_counter()
    xweb.query("Individual", "cst_key")
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    xweb.query("Individual", "cst_key")
    assert time.perf_counter() - started < 0.2


def test_a_held_request_is_carried_out_after_its_client_gave_up(http: httpx.Client, xweb: XWeb, sim: NetforumSim) -> None:
    """What a kill or a timeout mid-call leaves behind: the write landed, its answer was lost."""
    ada = sim.add_individual("Ada", "Lovelace", "ada@example.org")
    sim.slow_next(1, 0.5)
    node = onode(CMA, activity(ada, "03/11/2024", cma_activity_code="InformzUnsubscribe"))
    params = {"szObjectName": CMA}
    body = envelope("InsertFacadeObject", params, xweb.token).replace(
        b"</InsertFacadeObject>", b"<oNode>" + etree.tostring(node) + b"</oNode></InsertFacadeObject>"
    )
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NS}InsertFacadeObject"'}
    with pytest.raises(httpx.ReadTimeout):
        http.post(ENDPOINT_PATH, content=body, headers=headers, timeout=0.1)
    sim.wait_idle()
    assert [r["cma_activity_code"] for r in sim.correspondence(ada)] == ["InformzUnsubscribe"]


def test_per_record_rejection_hook(xweb: XWeb, sim: NetforumSim) -> None:
    ada = sim.add_individual("Ada", "Lovelace", "ada@example.org")
    sim.fail_record("cma_activity_code", "InformzUnsubscribe", "Trigger refused the row")
    fault = raises(
        "RecordRejected",
        xweb.insert,
        CMA,
        activity(ada, "03/12/2024", cma_activity_code="InformzUnsubscribe"),
    )
    assert fault.message == "Trigger refused the row"
    assert len(xweb.insert(CMA, activity(ada, "03/12/2024", cma_activity_code="Informz Mailing"))) == 1


def test_reset_clears_data_faults_counts_locks_and_sessions(xweb: XWeb, sim: NetforumSim) -> None:
    ada = sim.add_individual("Ada", "Lovelace", "ada@example.org")
    xweb.insert(CMA, activity(ada, "03/12/2024"))
    raises("InvalidColumnList", xweb.query, "Individual", "*")
    for _ in range(25):
        raises("InvalidCredentials", xweb.authenticate, user="other")
    sim.fail_next(5)
    stale = xweb.token
    assert sim.lockout("other") == "credentials" and sim.fault_count() == 1 and len(sim.activities()) == 1
    sim.reset()
    assert sim.individuals() == [] and sim.activities() == [] and sim.request_log == []
    assert sim.fault_count() == 0 and sim.lockout("other") is None
    state = sim.state()
    assert state["faults"]["fail_next"] == [] and state["sessions"] == 0
    raises("InvalidToken", xweb.query, "Individual", "cst_key", token=stale)
    xweb.authenticate()


def test_sim_http_api_seeds_inspects_and_injects(http: httpx.Client, sim: NetforumSim, xweb: XWeb) -> None:
    created = http.post(
        "/__sim/individuals", json={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"}
    )
    assert created.status_code == 201
    cst_key = created.json()["cst_key"]
    assert xweb.query("Individual", "cst_key", "eml_address = 'ada@example.org'") == [{"cst_key": cst_key}]
    xweb.insert(CMA, activity(cst_key, "03/12/2024", cma_activity_code="Informz Mailing"))
    shown = http.get(f"/__sim/individuals/{cst_key}").json()
    assert shown["individual"]["eml_address"] == "ada@example.org"
    assert [r["cma_activity_code"] for r in shown["correspondence"]] == ["Informz Mailing"]
    assert http.post("/__sim/faults", json={"kind": "slow_next", "seconds": 0.01, "count": 2}).json()[
        "faults"
    ]["slow_next"] == [0.01, 0.01]
    assert http.delete("/__sim/faults").json()["faults"]["slow_next"] == []
    assert http.post("/__sim/faults", json={"kind": "explode"}).status_code == 400
    state = http.get("/__sim/state").json()
    assert (
        state["individuals"][0]["cst_key"] == cst_key
        and state["activities"][0]["cma_activity_date"] == "2024-03-12T00:00:00.000"
    )
    assert http.post("/__sim/faults", json={"kind": "expire_tokens"}).status_code == 200
    raises("TokenExpired", xweb.query, "Individual", "cst_key")
    assert http.post("/__sim/reset").json() == {"reset": True} and sim.individuals() == []


def test_sequential_calls_on_one_connection_are_not_stalled(xweb: XWeb, sim: NetforumSim) -> None:
    """Nagle plus delayed ACK would add ~40 ms per response: 40 calls would take over 1.6 s."""
    sim.add_individual("Ada", "Lovelace", "ada@example.org")
    xweb.query("Individual", "cst_key")
    started = time.perf_counter()
    for _ in range(40):
        xweb.query("Individual", "cst_key", "eml_address = 'ada@example.org'")
    assert time.perf_counter() - started < 1.0


def test_python_dash_m_serves_the_wsdl() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dev = Path(__file__).resolve().parents[3] / "dev"
    env = {**os.environ, "PYTHONPATH": f"{dev}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "writeback_dev.simulators.netforum", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}{ENDPOINT_PATH}?WSDL", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.05)
        assert reply.status_code == 200 and b"netFORUMXMLSoap" in reply.content
    finally:
        process.terminate()
        process.wait(timeout=10)
