"""The simulator speaks Salesforce's REST protocol: shapes, codes and faults, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from writeback_dev.simulators.salesforce import SalesforceSim, id18

from writeback.adapters.salesforce import id18 as adapter_id18

API = "/services/data/v60.0"
_ID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def test_sim_id18_matches_salesforce_checksums() -> None:
    """The simulator's own 15->18 conversion (not the adapter's), on Salesforce's documented
    example: a shared implementation would hide a bug from the tests that use the simulator."""
    assert id18("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert id18("001A0000006Vm9rIAC") == id18("001A0000006Vm9riac") == "001A0000006Vm9rIAC"
    assert id18("001A0000006Vm9rAAA") is None
    assert id18("001a0000006vm9r") == "001a0000006vm9rAAA"
    assert id18("001A0000006Vm9") is None and id18("pat@example.com") is None
    assert id18("001A0000006Vm9r\n") is None and id18(None) is None


@given(
    st.text(alphabet=_ID_CHARS, min_size=15, max_size=15),
    st.sampled_from(["", "suffix", "lower suffix", "other suffix"]),
)
def test_sim_and_adapter_agree_on_every_id(base: str, form: str) -> None:
    """Two independent implementations: a disagreement is a bug in one of them."""
    suffix = (id18(base) or "")[15:]
    value = base + {"": "", "suffix": suffix, "lower suffix": suffix.lower(), "other suffix": "A5z"}[form]
    assert id18(value) == adapter_id18(value)


@pytest.fixture
def http(sim: SalesforceSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.login_url, timeout=5) as client:
        yield client


@pytest.fixture
def grant(sim: SalesforceSim, http: httpx.Client):
    def post(**overrides: str) -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
        }
        return http.post("/services/oauth2/token", data={**form, **overrides})

    return post


@pytest.fixture
def api(http: httpx.Client, grant) -> httpx.Client:
    http.headers["Authorization"] = f"Bearer {grant().json()['access_token']}"
    return http


def _note(parent: str, title: str = "Title", **fields: object) -> dict[str, object]:
    return {"attributes": {"type": "Note"}, "ParentId": parent, "Title": title, "Body": "body", **fields}


def _task(who: str, key: str, **fields: object) -> dict[str, object]:
    return {"attributes": {"type": "Task"}, "WhoId": who, "Subject": "s", "Writeback_Id__c": key, **fields}


def _create(api: httpx.Client, records: list[dict[str, object]], all_or_none: bool = False) -> httpx.Response:
    return api.post(f"{API}/composite/sobjects", json={"allOrNone": all_or_none, "records": records})


def _error_codes(results: list[dict[str, object]]) -> list[str | None]:
    return [None if r["success"] else r["errors"][0]["statusCode"] for r in results]  # type: ignore[index]


# -- OAuth --------------------------------------------------------------------------------------


def test_client_credentials_grant_returns_a_bearer_session(sim: SalesforceSim, grant) -> None:
    body = grant().json()
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == sim.login_url
    assert set(body) >= {"access_token", "instance_url", "token_type", "issued_at", "signature", "id"}
    assert body["issued_at"].isdigit()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "nobody"}, "invalid_client_id"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
def test_token_errors_are_oauth_shaped(grant, overrides: dict[str, str], error: str) -> None:
    response = grant(**overrides)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"]


def test_revoked_run_as_user_is_invalid_grant(sim: SalesforceSim, grant) -> None:
    sim.revoke_client_credentials()
    assert grant().json() == {
        "error": "invalid_grant",
        "error_description": "no client credentials user enabled",
    }


def test_missing_or_expired_session_is_401_invalid_session_id(sim: SalesforceSim, api: httpx.Client) -> None:
    assert api.get(f"{API}/query", params={"q": "SELECT Id FROM Contact"}).status_code == 200
    sim.expire_tokens()
    response = api.get(f"{API}/query", params={"q": "SELECT Id FROM Contact"})
    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


# -- collections ----------------------------------------------------------------------------------


def test_create_returns_save_results_in_order_with_18_char_ids(sim: SalesforceSim, api: httpx.Client) -> None:
    contact = sim.add_contact()
    results = _create(api, [_note(contact, "one"), _note(contact, "two")]).json()
    assert [r["success"] for r in results] == [True, True]
    assert all(r["errors"] == [] and r["id"].startswith("002") and id18(r["id"]) == r["id"] for r in results)
    assert [n["Title"] for n in sim.notes_for(contact)] == ["one", "two"]
    assert contact.startswith("003") and len(contact) == 18


def test_one_bad_record_does_not_fail_its_neighbours(sim: SalesforceSim, api: httpx.Client) -> None:
    contact = sim.add_contact()
    unknown = id18("003Hs0000ZZZZZZ")
    assert unknown is not None
    results = _create(api, [_note(contact), _note(unknown), _note(contact, Title=None)]).json()
    assert _error_codes(results) == [None, "INVALID_CROSS_REFERENCE_KEY", "REQUIRED_FIELD_MISSING"]
    assert results[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "INVALID_CROSS_REFERENCE_KEY",
                "message": "invalid cross reference id",
                "fields": ["ParentId"],
            }
        ],
    }
    assert results[2]["errors"][0]["fields"] == ["Title"]
    assert len(sim.notes_for(contact)) == 1


def test_all_or_none_rolls_back_every_record(sim: SalesforceSim, api: httpx.Client) -> None:
    contact = sim.add_contact()
    sim.delete(lead := sim.add_lead())
    results = _create(api, [_note(contact), _note(lead)], all_or_none=True).json()
    assert _error_codes(results) == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "ENTITY_IS_DELETED"]
    assert sim.records("Note") == []


def test_more_than_200_records_is_400_exceeded_id_limit(sim: SalesforceSim, api: httpx.Client) -> None:
    contact = sim.add_contact()
    response = _create(api, [_note(contact)] * 201)
    assert response.status_code == 400
    assert response.json() == [
        {
            "message": "record limit reached. cannot submit more than 200 records into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
        }
    ]
    assert _create(api, [_note(contact)] * 200).status_code == 200


def test_update_by_id_and_its_record_errors(sim: SalesforceSim, api: httpx.Client) -> None:
    contact, lead, gone = sim.add_contact(), sim.add_lead(), sim.add_contact()
    sim.delete(gone)
    never = id18("003Hs0000YYYYYY")
    flag = [
        {"attributes": {"type": "Contact"}, "Id": contact[:15], "HasOptedOutOfEmail": True},
        {"attributes": {"type": "Contact"}, "Id": lead, "HasOptedOutOfEmail": True},
        {"attributes": {"type": "Contact"}, "Id": gone, "HasOptedOutOfEmail": True},
        {"attributes": {"type": "Contact"}, "Id": never, "HasOptedOutOfEmail": True},
        {"attributes": {"type": "Contact"}, "Id": contact, "Nope__c": 1},
    ]
    results = api.patch(f"{API}/composite/sobjects", json={"allOrNone": False, "records": flag}).json()
    assert _error_codes(results) == [
        None,
        "MALFORMED_ID",
        "ENTITY_IS_DELETED",
        "INVALID_CROSS_REFERENCE_KEY",
        "INVALID_FIELD",
    ]
    assert results[0]["id"] == contact
    assert [r["id"] for r in results[1:4]] == [lead, gone, never]
    assert sim.record(contact)["HasOptedOutOfEmail"] is True  # type: ignore[index]
    assert sim.record(lead)["HasOptedOutOfEmail"] is False  # type: ignore[index]


def test_upsert_by_external_id_creates_then_updates(sim: SalesforceSim, api: httpx.Client) -> None:
    contact = sim.add_contact()
    url = f"{API}/composite/sobjects/Task/Writeback_Id__c"
    first = api.patch(url, json={"allOrNone": False, "records": [_task(contact, "wb-1")]}).json()
    again = api.patch(
        url, json={"allOrNone": False, "records": [_task(contact, "wb-1", Subject="new")]}
    ).json()
    assert first[0]["created"] is True and again[0]["created"] is False
    assert first[0]["id"] == again[0]["id"]
    assert [(t["Subject"], t["Status"]) for t in sim.tasks_for(contact)] == [("new", "Not Started")]


def test_upsert_rejects_repeated_keys_and_plain_insert_hits_the_unique_key(
    sim: SalesforceSim, api: httpx.Client
) -> None:
    contact = sim.add_contact()
    url = f"{API}/composite/sobjects/Task/Writeback_Id__c"
    twice = api.patch(url, json={"records": [_task(contact, "k"), _task(contact, "k")]}).json()
    assert _error_codes(twice) == ["DUPLICATE_EXTERNAL_ID", "DUPLICATE_EXTERNAL_ID"]
    assert _error_codes(_create(api, [_task(contact, "k"), _task(contact, "K")]).json()) == [
        None,
        "DUPLICATE_VALUE",
    ]
    not_external = api.patch(f"{API}/composite/sobjects/Task/Subject", json={"records": []})
    assert not_external.status_code == 400 and not_external.json()[0]["errorCode"] == "INVALID_FIELD"


def test_task_who_id_must_be_a_live_contact_or_lead(sim: SalesforceSim, api: httpx.Client) -> None:
    contact = sim.add_contact()
    note = _create(api, [_note(contact)]).json()[0]["id"]
    results = _create(api, [_task(note, "a"), _task("not-an-id", "b"), _task(sim.add_lead(), "c")]).json()
    assert _error_codes(results) == ["FIELD_INTEGRITY_EXCEPTION", "MALFORMED_ID", None]


def test_retrieve_returns_null_for_unknown_and_deleted(sim: SalesforceSim, api: httpx.Client) -> None:
    alive, gone = sim.add_contact(email="a@example.com"), sim.add_contact()
    sim.delete(gone)
    response = api.get(
        f"{API}/composite/sobjects/Contact", params={"ids": f"{alive},{gone}", "fields": "Id,email"}
    )
    assert response.json() == [
        {
            "attributes": {"type": "Contact", "url": f"{API}/sobjects/Contact/{alive}"},
            "Id": alive,
            "Email": "a@example.com",
        },
        None,
    ]


# -- SOQL -----------------------------------------------------------------------------------------


def _soql(api: httpx.Client, q: str) -> httpx.Response:
    return api.get(f"{API}/query", params={"q": q})


def test_query_filters_with_equals_in_like_and_skips_deleted(sim: SalesforceSim, api: httpx.Client) -> None:
    a, b, c = (
        sim.add_contact(email="A@x.org"),
        sim.add_contact(email="b@x.org"),
        sim.add_contact(email="c@x.org"),
    )
    sim.delete(c)
    _create(api, [_note(a, "Contact unsubscribed from Informz on 1"), _note(b, "Other"), _note(c[:15], "x")])
    assert [
        r["Id"] for r in _soql(api, "select Id from Contact where Email = 'a@X.org'").json()["records"]
    ] == [a]
    ids = ", ".join(f"'{i}'" for i in (a[:15], b, c))
    assert _soql(api, f"SELECT Id FROM Contact WHERE Id IN ({ids})").json()["totalSize"] == 2
    notes = _soql(
        api, f"SELECT ParentId, Title FROM Note WHERE ParentId IN ({ids}) AND Title LIKE '%Informz on%'"
    ).json()
    assert [(r["ParentId"], r["Title"]) for r in notes["records"]] == [
        (a, "Contact unsubscribed from Informz on 1")
    ]
    assert (
        _soql(api, "SELECT Id FROM Contact WHERE HasOptedOutOfEmail = false LIMIT 1").json()["totalSize"] == 1
    )


@pytest.mark.parametrize(
    ("q", "code"),
    [
        ("SELECT Id FROM", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Email ~ 'x'", "MALFORMED_QUERY"),
        ("SELECT Nope FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Account", "INVALID_TYPE"),
        ("SELECT Id FROM Note WHERE Body = 'x'", "INVALID_FIELD"),
    ],
)
def test_query_errors(api: httpx.Client, q: str, code: str) -> None:
    response = _soql(api, q)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code


def test_query_pages_through_next_records_url(sim: SalesforceSim, api: httpx.Client) -> None:
    ids = [sim.add_contact() for _ in range(5)]
    sim.query_page_size = 2
    page = _soql(api, "SELECT Id FROM Contact").json()
    seen = [r["Id"] for r in page["records"]]
    while not page["done"]:
        page = api.get(page["nextRecordsUrl"]).json()
        seen.extend(r["Id"] for r in page["records"])
    assert seen == ids and page["totalSize"] == 5
    assert "nextRecordsUrl" not in page


# -- faults ---------------------------------------------------------------------------------------


def test_fail_next_over_http_then_recovers(sim: SalesforceSim, api: httpx.Client) -> None:
    assert api.post("/__sim/faults", json={"kind": "fail_next", "count": 2, "status": 503}).status_code == 200
    codes = [_soql(api, "SELECT Id FROM Contact").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert sim.request_log[-3].status == 503


@pytest.mark.parametrize(
    ("status", "body_code"), [(429, "REQUEST_LIMIT_EXCEEDED"), (403, "REQUEST_LIMIT_EXCEEDED")]
)
def test_throttling_carries_retry_after(api: httpx.Client, status: int, body_code: str) -> None:
    api.post("/__sim/faults", json={"kind": "throttle_next", "status": status, "retry_after": 7})
    response = _soql(api, "SELECT Id FROM Contact")
    assert response.status_code == status
    assert response.headers["Retry-After"] == "7"
    assert response.json()[0]["errorCode"] == body_code


def test_hang_outlasts_the_client_timeout_then_applies(sim: SalesforceSim, api: httpx.Client) -> None:
    contact = sim.add_contact()
    sim.hang_next(seconds=0.6)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        api.post(f"{API}/composite/sobjects", json={"records": [_note(contact)]}, timeout=0.2)
    assert time.monotonic() - started < 0.5
    sim.wait_idle()
    assert len(sim.notes_for(contact)) == 1


def test_rejected_id_and_locked_rows_fail_per_record(sim: SalesforceSim, api: httpx.Client) -> None:
    bad, good = sim.add_contact(), sim.add_contact()
    api.post(
        "/__sim/faults",
        json={"kind": "reject_id", "id": bad, "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION"},
    )
    api.post("/__sim/faults", json={"kind": "lock_next_records", "count": 1})
    results = _create(api, [_note(good), _note(bad), _note(good)]).json()
    assert _error_codes(results) == ["UNABLE_TO_LOCK_ROW", "FIELD_CUSTOM_VALIDATION_EXCEPTION", None]
    assert _error_codes(_create(api, [_note(bad)]).json()) == ["FIELD_CUSTOM_VALIDATION_EXCEPTION"]


def test_expire_tokens_over_http_and_bad_fault_specs(api: httpx.Client) -> None:
    assert api.post("/__sim/faults", json={"kind": "expire_tokens"}).status_code == 200
    assert _soql(api, "SELECT Id FROM Contact").status_code == 401
    assert api.post("/__sim/faults", json={"kind": "explode"}).status_code == 400
    assert api.post("/__sim/faults", json={"kind": "reject_id", "id": "nope"}).status_code == 400


def test_state_and_seeding_over_http(sim: SalesforceSim, http: httpx.Client) -> None:
    created = http.post("/__sim/records/Lead", json={"LastName": "L", "Company": "C", "Email": "l@x.org"})
    lead = created.json()["id"]
    assert created.status_code == 201 and lead.startswith("00Q")
    sim.fail_next(1, 500)
    state = http.get("/__sim/state").json()
    assert [r["Id"] for r in state["records"]["Lead"]] == [lead]
    assert state["faults"]["failures"] == [{"status": 500, "retry_after": None}]
    assert http.delete(f"/__sim/records/Lead/{lead}").status_code == 204
    assert sim.records("Lead") == [] and sim.records("Lead", include_deleted=True)[0]["IsDeleted"] is True
    assert http.delete("/__sim/faults").json()["faults"]["failures"] == []


def test_standalone_server_starts_and_stops() -> None:
    with SalesforceSim() as sim:
        url = sim.login_url
        assert httpx.get(f"{url}/__sim/state").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/__sim/state", timeout=1)
