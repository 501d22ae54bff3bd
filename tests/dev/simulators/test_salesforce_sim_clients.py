"""The Salesforce simulator accepts the clients people use: simple-salesforce drives it here as it
would drive an org (client-credentials login over an HTTP Basic header, sObject rows, upsert by
external id, SOQL with ORDER BY and COUNT(), limits and the Sforce-Limit-Info header), plus raw
HTTP checks of the chunk limit, trailing slashes and routing errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)
from writeback_dev.simulators.salesforce import (
    MAX_CHUNKS,
    SalesforceSim,
    simple_salesforce_session,
)

API = "/services/data/v60.0"
NOT_FOUND = [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


def _login(sim: SalesforceSim, secret: str | None = None) -> Salesforce:
    """The recipe in the simulator's docstring."""
    return Salesforce(
        consumer_key=sim.client_id,
        consumer_secret=sim.client_secret if secret is None else secret,
        domain="sim.my",
        session=simple_salesforce_session(sim.login_url),
    )


@pytest.fixture
def sf(sim: SalesforceSim) -> Salesforce:
    return _login(sim)


@pytest.fixture
def api(sim: SalesforceSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.login_url, timeout=5) as client:
        token = client.post(
            "/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": sim.client_id,
                "client_secret": sim.client_secret,
            },
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


# -- login ----------------------------------------------------------------------------------------


def test_simple_salesforce_logs_in_with_client_credentials_in_a_basic_header(
    sim: SalesforceSim, sf: Salesforce
) -> None:
    assert sf.auth_type == "client-credentials"
    assert sf.sf_instance == f"127.0.0.1:{sim.port}"
    assert [(r.method, r.path, r.status) for r in sim.request_log] == [
        ("POST", "/services/oauth2/token", 200)
    ]
    with pytest.raises(SalesforceAuthenticationFailed, match="invalid_client"):
        _login(sim, secret="wrong")


def test_token_endpoint_reads_basic_credentials_and_refuses_malformed_ones(sim: SalesforceSim) -> None:
    grant = {"grant_type": "client_credentials"}
    with httpx.Client(base_url=sim.login_url, timeout=5) as http:

        def token(authorization: str) -> httpx.Response:
            return http.post("/services/oauth2/token", data=grant, headers={"Authorization": authorization})

        assert token(_basic(sim.client_id, sim.client_secret)).json()["token_type"] == "Bearer"
        assert token(_basic("nobody", sim.client_secret)).json()["error"] == "invalid_client_id"
        assert token(_basic(sim.client_id, "wrong")).json()["error"] == "invalid_client"
        for malformed in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
            response = token(malformed)
            assert response.status_code == 400 and response.json()["error"] == "invalid_client"


# -- sObject rows ---------------------------------------------------------------------------------


def test_create_get_update_delete_one_contact(sim: SalesforceSim, sf: Salesforce) -> None:
    created = sf.Contact.create({"LastName": "Lovelace", "Email": "ada@example.org"})
    assert created["success"] is True and created["errors"] == [] and len(created["id"]) == 18
    record = sf.Contact.get(created["id"])
    url = f"/services/data/v59.0/sobjects/Contact/{created['id']}"  # simple-salesforce's default version
    assert record["attributes"] == {"type": "Contact", "url": url}
    assert (record["Id"], record["LastName"], record["HasOptedOutOfEmail"]) == (
        created["id"],
        "Lovelace",
        False,
    )
    assert sf.Contact.get(created["id"][:15], params={"fields": "Email"}) == {
        "attributes": record["attributes"],
        "Email": "ada@example.org",
    }

    assert sf.Contact.update(created["id"], {"HasOptedOutOfEmail": True}) == 204
    assert sim.record(created["id"])["HasOptedOutOfEmail"] is True

    assert sf.Contact.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound) as deleted:
        sf.Contact.get(created["id"])
    assert deleted.value.content == [
        {"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}
    ]


def test_single_record_errors_are_error_arrays(sim: SalesforceSim, sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as missing:
        sf.Contact.create({"Email": "x@example.org"})
    assert missing.value.content == [
        {
            "message": "Required fields are missing: [LastName]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["LastName"],
        }
    ]
    deleted = sim.add_contact()
    sim.delete(deleted)
    with pytest.raises(SalesforceResourceNotFound, match="ENTITY_IS_DELETED"):
        sf.Contact.update(deleted, {"LastName": "x"})
    for record_id in (sim.add_lead(), "003Hs00000000zz"):  # a Lead's id under Contact, an unknown id
        with pytest.raises(SalesforceResourceNotFound) as not_found:
            sf.Contact.update(record_id, {"LastName": "x"})
        assert not_found.value.content == NOT_FOUND
    with pytest.raises(SalesforceMalformedRequest, match="STRING_TOO_LONG"):
        sf.Contact.update(sim.add_contact(), {"LastName": "x" * 81})
    with pytest.raises(SalesforceResourceNotFound) as not_an_id:
        sf.Contact.get("ada@example.org")
    assert not_an_id.value.content == [
        {
            "message": "Provided external ID field does not exist or is not accessible: ada@example.org",
            "errorCode": "NOT_FOUND",
        }
    ]
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.create({"Name": "no such object here"})


def test_upsert_by_external_id_creates_then_updates(sim: SalesforceSim, sf: Salesforce) -> None:
    who = sim.add_contact()
    assert sf.Task.upsert("Writeback_Id__c/xyz", {"Subject": "Registered", "WhoId": who}) == 201
    first = sim.tasks_for(who)
    assert [(t["Writeback_Id__c"], t["Subject"]) for t in first] == [("xyz", "Registered")]

    response = sf.Task.upsert("Writeback_Id__c/xyz", {"Subject": "Attended"}, raw_response=True)
    assert response.status_code == 200
    assert response.json() == {"id": first[0]["Id"], "success": True, "errors": [], "created": False}
    assert [t["Subject"] for t in sim.tasks_for(who)] == ["Attended"]
    assert sf.Task.get_by_custom_id("Writeback_Id__c", "XYZ")["Id"] == first[0]["Id"]

    with pytest.raises(SalesforceResourceNotFound, match="Provided external ID field"):
        sf.Task.upsert("Subject/xyz", {"Subject": "not an external id field"})


def test_upsert_before_v46_answers_204_for_an_update(sim: SalesforceSim, api: httpx.Client) -> None:
    path = "/services/data/v45.0/sobjects/Task/Writeback_Id__c/k1"
    created = api.patch(path, json={"Subject": "a"})
    assert created.status_code == 201 and set(created.json()) == {"id", "success", "errors"}
    updated = api.patch(path, json={"Subject": "b"})
    assert (updated.status_code, updated.content) == (204, b"")


# -- SOQL -----------------------------------------------------------------------------------------


def test_query_orders_by_fields_with_nulls_first_unless_told(sim: SalesforceSim, sf: Salesforce) -> None:
    for last, first in (("beta", "b"), ("Alpha", None), ("gamma", "a"), ("alpha", "c")):
        sim.add_contact(last_name=last, FirstName=first)

    def names(q: str) -> list[tuple[str, str | None]]:
        return [(r["LastName"], r["FirstName"]) for r in sf.query(q)["records"]]

    assert names("SELECT LastName, FirstName FROM Contact ORDER BY LastName, FirstName") == [
        ("Alpha", None),
        ("alpha", "c"),
        ("beta", "b"),
        ("gamma", "a"),
    ]
    assert [f for _, f in names("SELECT LastName, FirstName FROM Contact ORDER BY FirstName DESC")] == [
        None,
        "c",
        "b",
        "a",
    ]
    assert names("SELECT LastName, FirstName FROM Contact ORDER BY FirstName ASC NULLS LAST LIMIT 2") == [
        ("gamma", "a"),
        ("beta", "b"),
    ]


def test_count_query_returns_total_size_and_no_records(sim: SalesforceSim, sf: Salesforce) -> None:
    for n in range(3):
        sim.add_contact(email=f"p{n}@example.org")
    gone = sim.add_contact()
    sim.delete(gone)
    assert sf.query("SELECT COUNT() FROM Contact") == {"totalSize": 3, "done": True, "records": []}
    assert sf.query("select count() from Contact where Email LIKE 'p1%'")["totalSize"] == 1


@pytest.mark.parametrize(
    ("q", "code"),
    [
        ("SELECT Id FROM Note ORDER BY Body", "INVALID_FIELD"),
        ("SELECT Id FROM Contact ORDER BY Nope", "INVALID_FIELD"),
        ("SELECT Id FROM Contact ORDER BY LastName NULLS", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact LIMIT 1 ORDER BY LastName", "MALFORMED_QUERY"),
        ("SELECT COUNT() FROM Contact ORDER BY LastName", "MALFORMED_QUERY"),
        ("SELECT COUNT( FROM Contact", "MALFORMED_QUERY"),
    ],
)
def test_order_by_and_count_errors(sf: Salesforce, q: str, code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.query(q)
    assert refused.value.content[0]["errorCode"] == code


# -- limits and routing ---------------------------------------------------------------------------


def test_limits_and_the_sforce_limit_info_header_count_calls(sim: SalesforceSim, sf: Salesforce) -> None:
    sim.add_contact()
    sf.query("SELECT Id FROM Contact")
    assert sf.api_usage["api-usage"].used == 1
    assert sf.api_usage["api-usage"].total == 15000
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 15000, "Remaining": 15000 - 2}
    assert sf.api_usage["api-usage"].used == 2
    assert sim.api_usage == (2, 15000)


def test_limit_info_header_only_on_authenticated_data_calls(sim: SalesforceSim, api: httpx.Client) -> None:
    first = api.get(f"{API}/query", params={"q": "SELECT Id FROM Contact"})
    second = api.get(f"{API}/query", params={"q": "SELECT Nope FROM Contact"})
    assert first.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    assert (second.status_code, second.headers["Sforce-Limit-Info"]) == (400, "api-usage=2/15000")
    unauthenticated = httpx.get(f"{sim.login_url}{API}/limits", timeout=5)
    assert unauthenticated.status_code == 401 and "Sforce-Limit-Info" not in unauthenticated.headers


def test_unknown_routes_answer_salesforce_json_errors(sim: SalesforceSim, sf: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound) as unknown:
        sf.restful("no/such/resource")
    assert unknown.value.content == NOT_FOUND
    for path in ("/nope", f"{API}/no/such/resource", "/services/data/"):
        response = httpx.get(f"{sim.login_url}{path}", timeout=5)
        assert response.status_code == 404, path
        assert response.json() == NOT_FOUND
    wrong_method = httpx.delete(f"{sim.login_url}{API}/query", timeout=5)
    assert wrong_method.status_code == 405
    assert wrong_method.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def test_trailing_slash_is_the_same_resource_not_a_redirect(sim: SalesforceSim, api: httpx.Client) -> None:
    contact = sim.add_contact()
    for path in ("query", "query/"):
        response = api.get(f"{API}/{path}", params={"q": "SELECT Id FROM Contact"})
        assert (response.status_code, response.json()["records"][0]["Id"]) == (200, contact), path
    note = {"attributes": {"type": "Note"}, "ParentId": contact, "Title": "t"}
    created = api.post(f"{API}/composite/sobjects/", json={"records": [note]})
    assert created.status_code == 200 and created.json()[0]["success"] is True
    assert api.get(f"{API}/limits/").status_code == 200
    assert api.get(f"{API}/sobjects/Contact/{contact}/").json()["Id"] == contact
    assert api.post(f"{API}/sobjects/Contact", json={"LastName": "x"}).status_code == 201


# -- chunks ---------------------------------------------------------------------------------------


def _alternating(contact: str, chunks: int, key: str) -> list[dict[str, object]]:
    """`chunks` runs of two records each, switching between Note and Task."""
    records: list[dict[str, object]] = []
    for n in range(chunks):
        for k in range(2):
            if n % 2 == 0:
                records.append({"attributes": {"type": "Note"}, "ParentId": contact, "Title": f"{key}{n}{k}"})
            else:
                task = {"attributes": {"type": "Task"}, "WhoId": contact, "Writeback_Id__c": f"{key}{n}{k}"}
                records.append(task)
    return records


def test_a_collection_may_switch_type_into_at_most_ten_chunks(sim: SalesforceSim, api: httpx.Client) -> None:
    contact = sim.add_contact()
    refusal = [
        {
            "message": "Cannot have more than 10 chunks in a single operation. "
            "Please rearrange the data to reduce chunking.",
            "errorCode": "INVALID_BATCH_REQUEST",
        }
    ]
    eleven = _alternating(contact, MAX_CHUNKS + 1, "a")
    too_many = api.post(f"{API}/composite/sobjects", json={"records": eleven})
    assert (too_many.status_code, too_many.json()) == (400, refusal)
    assert sim.records("Note") == [] and sim.records("Task") == []

    grouped = sorted(_alternating(contact, MAX_CHUNKS + 1, "b"), key=lambda r: str(r["attributes"]))
    results = api.post(f"{API}/composite/sobjects", json={"records": grouped}).json()
    assert [r["success"] for r in results] == [True] * len(grouped)
    ten = api.post(f"{API}/composite/sobjects", json={"records": _alternating(contact, MAX_CHUNKS, "c")})
    assert ten.status_code == 200 and all(r["success"] for r in ten.json())

    by_id = {r["id"]: g["attributes"] for r, g in zip(results, grouped, strict=True)}
    notes = [i for i, a in by_id.items() if a["type"] == "Note"]  # type: ignore[index]
    tasks = [i for i, a in by_id.items() if a["type"] == "Task"]  # type: ignore[index]
    updates = [
        {"attributes": {"type": "Note" if n % 2 == 0 else "Task"}, "Id": (notes if n % 2 == 0 else tasks)[n]}
        for n in range(MAX_CHUNKS + 1)
    ]
    too_many_updates = api.patch(f"{API}/composite/sobjects", json={"records": updates})
    assert (too_many_updates.status_code, too_many_updates.json()) == (400, refusal)
