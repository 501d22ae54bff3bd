"""The community simulator speaks a Higher Logic API v2.0-style REST API over real HTTP: credential
headers, record-range paging, List Builder lists and members, faults, seeding and its own /__sim API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from writeback_dev.simulators.community import DEFAULT_IAM_KEY, CommunitySim

LISTS = "ListBuilder/GetLists"
MEMBERS = "ListBuilder/GetListMembers"


@pytest.fixture(scope="module")
def sim() -> Iterator[CommunitySim]:
    with CommunitySim() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(sim: CommunitySim) -> None:
    sim.reset()


@pytest.fixture
def client(sim: CommunitySim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.api_url + "/", headers=sim.headers, timeout=5) as http:
        yield http


@pytest.fixture
def admin(sim: CommunitySim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5) as http:
        yield http


def people(sim: CommunitySim, n: int, prefix: str = "Member") -> list[str]:
    """n contacts whose last names sort in creation order."""
    return [
        sim.add_contact(f"{prefix}", f"{prefix} {i:04d}", f"m{i}@example.org", legacy_contact_key=f"R-{i}")
        for i in range(n)
    ]


def all_pages(client: httpx.Client, endpoint: str, size: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    start = 1
    while True:
        page = client.get(endpoint, params={**params, "StartRecord": start, "EndRecord": start + size - 1})
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["Items"]
        if body["EndRecord"] >= body["TotalCount"]:
            return items
        start += size


# credentials -----------------------------------------------------------------------------------


def test_credentials_are_required(sim: CommunitySim) -> None:
    url = f"{sim.api_url}/{LISTS}"
    bad_key = {**sim.headers, "HLIAMKey": str(uuid.uuid4())}
    cases = [
        ({}, "MissingCredentials"),
        ({"HLIAMKey": sim.iam_key}, "MissingCredentials"),
        ({**sim.headers, "HLPassword": "wrong"}, "InvalidCredentials"),
        (bad_key, "InvalidCredentials"),
        ({**sim.headers, "HLIAMKey": "not-a-guid"}, "InvalidCredentials"),
    ]
    for headers, code in cases:
        reply = httpx.get(url, headers=headers)
        assert reply.status_code == 401
        assert reply.headers["content-type"].startswith("application/json")
        assert reply.json() == {"Message": "Authorization has been denied for this request.", "Code": code}
    ok = httpx.get(url, headers={"hliamkey": sim.iam_key.upper(), "hlpassword": sim.password})
    assert ok.status_code == 200
    assert [r.status for r in sim.calls(LISTS)] == [401] * 5 + [200]


def test_unknown_path_method_and_case_insensitive_routes(sim: CommunitySim, client: httpx.Client) -> None:
    assert client.get("ListBuilder/Nope").json()["Code"] == "NotFound"
    assert client.post(LISTS).status_code == 405
    reply = client.get(sim.url + "/API/V2.0/listbuilder/getlists", params={"startrecord": 1, "ENDRECORD": 2})
    assert reply.status_code == 200 and reply.json()["EndRecord"] == 2


# paging ----------------------------------------------------------------------------------------


def test_paging_is_one_based_inclusive_with_default_of_fifty(sim: CommunitySim, client: httpx.Client) -> None:
    keys = people(sim, 120)
    default = client.get("Contacts/GetContacts").json()
    assert (default["TotalCount"], default["StartRecord"], default["EndRecord"]) == (120, 1, 50)
    assert [c["ContactKey"] for c in default["Items"]] == keys[:50]
    second = client.get("Contacts/GetContacts", params={"StartRecord": 51}).json()
    assert (second["StartRecord"], second["EndRecord"]) == (51, 100)
    assert [c["ContactKey"] for c in second["Items"]] == keys[50:100]
    last = client.get("Contacts/GetContacts", params={"StartRecord": 101, "EndRecord": 150}).json()
    assert last["TotalCount"] == 120 and len(last["Items"]) == 20
    assert [c["ContactKey"] for c in last["Items"]] == keys[100:]
    one = client.get("Contacts/GetContacts", params={"StartRecord": 7, "EndRecord": 7}).json()
    assert [c["ContactKey"] for c in one["Items"]] == [keys[6]]
    past = client.get("Contacts/GetContacts", params={"StartRecord": 121}).json()
    assert past["Items"] == [] and past["TotalCount"] == 120
    assert [c["ContactKey"] for c in all_pages(client, "Contacts/GetContacts", 33)] == keys


def test_contact_shape_and_lookup(sim: CommunitySim, client: httpx.Client) -> None:
    key = sim.add_contact("Ada", "Lovelace", "ada@example.org", legacy_contact_key="R-1")
    assert client.get("Contacts/GetContact", params={"contactKey": key}).json() == {
        "ContactKey": key,
        "LegacyContactKey": "R-1",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "EmailAddress": "ada@example.org",
    }
    assert client.get("Contacts/GetContact", params={"contactKey": f"{{{key.upper()}}}"}).status_code == 200
    missing = client.get("Contacts/GetContact", params={"ContactKey": str(uuid.uuid4())})
    assert missing.status_code == 404 and missing.json()["Code"] == "ContactNotFound"
    assert client.get("Contacts/GetContact").json()["Code"] == "MissingParameter"


@pytest.mark.parametrize(
    "params",
    [
        {"StartRecord": 0},
        {"StartRecord": "x"},
        {"StartRecord": 5, "EndRecord": 4},
        {"StartRecord": 1, "EndRecord": 501},
    ],
)
def test_bad_ranges_are_refused(client: httpx.Client, params: dict[str, Any]) -> None:
    reply = client.get(LISTS, params=params)
    assert reply.status_code == 400 and reply.json()["Code"] == "InvalidRange"


# lists and members -----------------------------------------------------------------------------


def test_list_discovery_and_members_by_page(sim: CommunitySim, client: httpx.Client) -> None:
    keys = people(sim, 75)
    names = ["Informz Has Started Discussion Thread", "informz x", " Informz y", "InformzX z", "Board"]
    list_keys = [sim.add_list(name, keys if i == 0 else keys[:i]) for i, name in enumerate(names)]
    page = client.get(LISTS).json()
    assert page["TotalCount"] == 5
    assert [(x["ListKey"], x["ListName"], x["MemberCount"]) for x in page["Items"]] == [
        (k, n, 75 if i == 0 else i) for i, (k, n) in enumerate(zip(list_keys, names, strict=True))
    ]
    assert all(x["ListType"] == "CustomUserList" and x["UpdatedOn"].endswith("Z") for x in page["Items"])
    assert [x["ListName"] for x in all_pages(client, LISTS, 2)] == names

    first = client.get(MEMBERS, params={"listKey": list_keys[0]}).json()
    assert (first["TotalCount"], len(first["Items"])) == (75, 50)
    second = client.get(MEMBERS, params={"listKey": list_keys[0], "StartRecord": 51, "EndRecord": 100}).json()
    assert len(second["Items"]) == 25
    assert [c["ContactKey"] for c in first["Items"] + second["Items"]] == keys
    assert set(first["Items"][0]) == {
        "ContactKey",
        "LegacyContactKey",
        "FirstName",
        "LastName",
        "EmailAddress",
    }
    assert [c["ContactKey"] for c in sim.members(list_keys[0])] == keys

    missing = client.get(MEMBERS, params={"listKey": str(uuid.uuid4())})
    assert missing.status_code == 404 and missing.json()["Code"] == "ListNotFound"
    assert client.get(MEMBERS, params={"listKey": "nope"}).json()["Code"] == "InvalidParameter"
    assert client.get(MEMBERS).json()["Code"] == "MissingParameter"


def test_members_order_by_last_then_first_name(sim: CommunitySim, client: httpx.Client) -> None:
    b = sim.add_contact("Zed", "Brown", "z@example.org")
    a = sim.add_contact("Amy", "brown", "a@example.org")
    c = sim.add_contact("Al", "Adams", None)
    key = sim.add_list("Informz Order", [b, a, c])
    items = client.get(MEMBERS, params={"listKey": key}).json()["Items"]
    assert [x["ContactKey"] for x in items] == [c, a, b]


def test_seeding_changes_are_visible(sim: CommunitySim, client: httpx.Client) -> None:
    a, b = people(sim, 2)
    key = sim.add_list("Informz Old", [a, b])
    before = client.get(LISTS).json()["Items"][0]["UpdatedOn"]
    assert sim.remove_member(key, a) and not sim.remove_member(key, a)
    sim.rename_list(key, "Informz New")
    assert sim.add_member(key, a) and not sim.add_member(key, a)
    assert sim.remove_member(key, b)
    after = client.get(LISTS).json()["Items"][0]
    assert (after["ListName"], after["MemberCount"]) == ("Informz New", 1)
    assert after["UpdatedOn"] > before
    sim.remove_list(key)
    assert client.get(LISTS).json()["TotalCount"] == 0
    with pytest.raises(KeyError):
        sim.add_list("Informz Bad", [str(uuid.uuid4())])


def test_reconciliation_seed(sim: CommunitySim, client: httpx.Client) -> None:
    seed = sim.seed_reconciliation()
    names = [x["ListName"] for x in client.get(LISTS).json()["Items"]]
    assert names == [
        "Informz Has Started Discussion Thread",
        "Informz Welcome New Members",
        "informz lowercase prefix",
        " Informz Leading Space",
        "InformzX No Space",
        "Board Members",
    ]
    members = all_pages(client, MEMBERS, 4, listKey=seed["lists"]["Informz Has Started Discussion Thread"])
    assert len(members) == 9
    emails = [m["EmailAddress"] for m in members]
    assert emails.count("grace@example.org") == 2
    assert " ADA@Example.org " in emails and "katherine.johnson@" in emails and None in emails
    assert sum(m["LegacyContactKey"] is None for m in members) == 1


# faults ----------------------------------------------------------------------------------------


def test_down_answers_503_for_the_next_calls(sim: CommunitySim, client: httpx.Client) -> None:
    sim.fail_next(2)
    replies = [client.get(LISTS) for _ in range(3)]
    assert [r.status_code for r in replies] == [503, 503, 200]
    assert "Service Unavailable" in replies[0].text
    sim.fail_next(1)
    assert httpx.get(f"{sim.api_url}/{LISTS}").status_code == 503, "down comes before credentials"
    assert [r.code for r in sim.calls(LISTS)] == ["Unavailable", "Unavailable", None, "Unavailable"]


def test_slow_holds_the_call(sim: CommunitySim, client: httpx.Client) -> None:
    sim.slow_next(1, 0.3)
    started = time.perf_counter()
    assert client.get(LISTS).status_code == 200
    assert time.perf_counter() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        sim.slow_next(1, 0.5)
        client.get(LISTS, timeout=0.1)
    sim.wait_idle()
    assert sim.request_log[-1].seconds >= 0.5


def test_revoked_credentials_answer_401(sim: CommunitySim, client: httpx.Client) -> None:
    sim.revoke_credentials()
    reply = client.get(LISTS)
    assert reply.status_code == 401 and reply.json()["Code"] == "InvalidCredentials"
    sim.restore_credentials()
    assert client.get(LISTS).status_code == 200


def test_list_vanishes_between_pages(sim: CommunitySim, client: httpx.Client) -> None:
    keys = people(sim, 60)
    doomed = sim.add_list("Informz Doomed", keys)
    other = sim.add_list("Informz Other", keys)
    sim.vanish_list(doomed)
    assert len(client.get(MEMBERS, params={"listKey": other}).json()["Items"]) == 50
    assert len(client.get(MEMBERS, params={"listKey": doomed}).json()["Items"]) == 50
    gone = client.get(MEMBERS, params={"listKey": doomed, "StartRecord": 51})
    assert gone.status_code == 404
    assert gone.json() == {"Message": f"No list with ListKey {doomed}.", "Code": "ListNotFound"}
    assert [x["ListKey"] for x in client.get(LISTS).json()["Items"]] == [other]
    assert sim.state()["faults"]["vanish_list"] == {}


def test_reset_drops_data_faults_and_log(sim: CommunitySim, client: httpx.Client) -> None:
    sim.seed_reconciliation()
    client.get(LISTS)
    sim.revoke_credentials()
    sim.fail_next(3)
    sim.slow_next(3, 5)
    sim.reset()
    assert sim.request_log == []
    reply = client.get(LISTS)
    assert reply.status_code == 200 and reply.json()["TotalCount"] == 0
    assert sim.contacts() == [] and sim.lists() == []


# the /__sim API --------------------------------------------------------------------------------


def test_sim_http_api(sim: CommunitySim, client: httpx.Client, admin: httpx.Client) -> None:
    a = admin.post(
        "/__sim/contacts",
        json={"first_name": "A", "last_name": "One", "email": "a@x.org", "legacy_contact_key": "R-1"},
    )
    assert a.status_code == 201
    b = admin.post("/__sim/contacts", json={"first_name": "B", "last_name": "Two", "email": "not-an-email"})
    ka, kb = a.json()["ContactKey"], b.json()["ContactKey"]
    made = admin.post("/__sim/lists", json={"name": "Informz Via HTTP", "members": [ka]})
    assert made.status_code == 201
    key = made.json()["ListKey"]
    assert admin.post(f"/__sim/lists/{key}/members", json={"contact_key": kb}).json() == {"added": True}
    assert admin.patch(f"/__sim/lists/{key}", json={"name": "informz renamed"}).json()["MemberCount"] == 2
    assert admin.delete(f"/__sim/lists/{key}/members/{ka}").json() == {"removed": True}
    assert admin.get(f"/__sim/lists/{key}").json()["Members"] == [kb]
    assert admin.post("/__sim/lists", json={"name": "x", "members": [str(uuid.uuid4())]}).status_code == 404
    assert admin.post("/__sim/contacts", json=[1]).status_code == 400

    state = admin.get("/__sim/state").json()
    assert [c["ContactKey"] for c in state["contacts"]] == [ka, kb]
    assert state["lists"][0]["ListName"] == "informz renamed"

    assert admin.post("/__sim/faults", json={"kind": "fail_next", "count": 1}).status_code == 200
    assert client.get(LISTS).status_code == 503
    admin.post("/__sim/faults", json={"kind": "revoke_credentials"})
    assert client.get(LISTS).status_code == 401
    admin.post("/__sim/faults", json={"kind": "restore_credentials"})
    admin.post("/__sim/faults", json={"kind": "slow_next", "seconds": 0.2})
    started = time.perf_counter()
    assert client.get(LISTS).status_code == 200 and time.perf_counter() - started >= 0.2
    admin.post("/__sim/faults", json={"kind": "vanish_list", "list_key": key, "after_pages": 1})
    assert admin.get("/__sim/state").json()["faults"]["vanish_list"] == {key: 1}
    assert client.get(MEMBERS, params={"listKey": key}).status_code == 200
    assert client.get(MEMBERS, params={"listKey": key, "StartRecord": 51}).status_code == 404
    assert admin.post("/__sim/faults", json={"kind": "vanish_list"}).status_code == 400
    assert admin.post("/__sim/faults", json={"kind": "vanish_list", "list_key": key}).status_code == 404
    assert admin.post("/__sim/faults", json={"kind": "explode"}).status_code == 400
    admin.post("/__sim/faults", json={"kind": "fail_next", "count": 4})
    assert admin.delete("/__sim/faults").json()["faults"]["fail_next"] == []

    seeded = admin.post("/__sim/seed")
    assert seeded.status_code == 201 and len(seeded.json()["lists"]) == 6
    assert admin.post("/__sim/reset").json() == {"reset": True}
    assert admin.get("/__sim/state").json()["contacts"] == []


# python -m -------------------------------------------------------------------------------------


def test_module_entry_point_serves() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dev = Path(__file__).resolve().parents[3] / "dev"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(dev), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "writeback_dev.simulators.community", "--port", str(port), "--seed"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        url = f"http://127.0.0.1:{port}/api/v2.0/{LISTS}"
        headers = {"HLIAMKey": DEFAULT_IAM_KEY, "HLPassword": "sim-community-password"}
        while True:
            try:
                reply = httpx.get(url, headers=headers, timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.05)
        assert reply.status_code == 200 and reply.json()["TotalCount"] == 6
        assert httpx.get(url, timeout=1).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)
