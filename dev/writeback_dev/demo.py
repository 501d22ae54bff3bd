"""What `make run` shows: the whole path on one machine, with windows short enough to watch.

Two demo accounts, one per CRM, since a recipient's Integration ID is one CRM's key: "demo" on
a Salesforce simulator (demo contacts and leads; a Salesforce connection and a tracking one) and
"demo-nf" on a netFORUM xWeb simulator (seeded Individuals; a netFORUM connection and a tracking
one whose integrated product is netFORUM). A trickle of sample events (unsubscribes,
resubscribes, bad emails, sends, opens, clicks; blocks, bounces and shares for netFORUM) is
published for both every few seconds; windows close every minute; a status line reports the
writeback list and what each simulator holds. Nothing here is used by `serve` in production
(this is the dev distribution).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from writeback.config import ServiceConfig
from writeback.contract.events import Event, parse_event
from writeback.contract.serde import EventSerde, registry_client
from writeback.kafka.producer import Publisher
from writeback.ledger import Ledger
from writeback.settings import Settings, parse_settings
from writeback_dev.simulators.netforum import NetforumSim
from writeback_dev.simulators.salesforce import SalesforceSim

log = logging.getLogger("writeback_dev.demo")

ACCOUNT = "demo"
NETFORUM_ACCOUNT = "demo-nf"
SECRET_ENV = "WRITEBACK_DEMO_SF_SECRET"
NETFORUM_PASSWORD_ENV = "WRITEBACK_DEMO_NF_PASSWORD"
_EVERY_MINUTE = {"kind": "interval", "minutes": 1}
_WINDOWS = {"subscriber": _EVERY_MINUTE, "activity": _EVERY_MINUTE}


def settings(sim: SalesforceSim, nf: NetforumSim) -> Settings:
    crm = {"login_url": sim.login_url, "client_id": sim.client_id, "client_secret": {"env": SECRET_ENV}}
    xweb = {"xweb_url": nf.endpoint, "username": nf.user, "password": {"env": NETFORUM_PASSWORD_ENV}}
    return parse_settings(
        {
            "accounts": [
                {
                    "id": ACCOUNT,
                    "name": "Demo Association",
                    "time_zone": "America/New_York",
                    "connections": [
                        {
                            "id": "demo-salesforce",
                            "kind": "salesforce",
                            "writebacks": {"mailing_activity": ["sent", "opened"]},
                            "schedules": _WINDOWS,
                            "crm": crm,
                        },
                        {"id": "demo-tracking", "kind": "tracking", "schedules": _WINDOWS, "crm": {**crm, "product": "salesforce"}},
                    ],
                },
                {
                    "id": NETFORUM_ACCOUNT,
                    "name": "Demo Society (netFORUM)",
                    "time_zone": "America/Chicago",
                    "connections": [
                        {"id": "demo-netforum", "kind": "netforum", "schedules": _WINDOWS, "crm": xweb},
                        {"id": "demo-nf-tracking", "kind": "tracking", "schedules": _WINDOWS, "crm": {**xweb, "product": "netforum"}},
                    ],
                },
            ]
        }
    )


def seed(sim: SalesforceSim, contacts: int = 12, leads: int = 4) -> list[str]:
    people = [sim.add_contact(f"Member{i}", f"member{i}@example.org") for i in range(contacts)]
    people += [sim.add_lead(f"Prospect{i}", "Prospect Co", f"prospect{i}@example.org") for i in range(leads)]
    return people


def seed_netforum(nf: NetforumSim, individuals: int = 12) -> list[str]:
    """Individuals with a primary email each; their cst_keys are the recipients' Integration IDs."""
    return [nf.add_individual("Member", f"Society{i}", f"society{i}@example.org") for i in range(individuals)]


_SCRIPT = (
    ("subscriber", {"action": "UNSUBSCRIBE", "source": "MAILING_LINK", "reason": "Too many emails"}),
    ("subscriber", {"action": "RESUBSCRIBE", "source": "SUBSCRIPTION_PAGE"}),
    ("subscriber", {"action": "BAD_EMAIL", "source": "ACCOUNT_RULE"}),
    ("activity", {"subcode": "Delivered", "source": "CAMPAIGN"}),
    ("activity", {"subcode": "Opened", "source": "MAILING_LINK"}),
    ("activity", {"subcode": "Clicked", "source": "MAILING_LINK"}),
)


_NETFORUM_SCRIPT = (
    *_SCRIPT,
    ("activity", {"subcode": "Opened", "source": "MAILING_LINK", "open": {"device": "iPhone", "client": "Apple Mail", "country": "US"}}),
    ("activity", {"subcode": "Clicked", "source": "MAILING_LINK", "click": {"url": "https://example.org/ad", "target": "ADVERTISEMENT"}}),
    ("activity", {"subcode": "Blocked", "source": "CAMPAIGN"}),
    ("activity", {"subcode": "HardBounce", "source": "CAMPAIGN"}),
    ("activity", {"subcode": "SocialShare", "source": "MAILING_LINK", "social": {"network": "LinkedIn"}}),
)


def events(
    people: list[str],
    rng: random.Random,
    count: int,
    *,
    account: str = ACCOUNT,
    script: tuple[tuple[str, dict], ...] = _SCRIPT,
    email: str = "person{}@example.org",
) -> list[Event]:
    """`count` random events of the script for the account's people (Integration IDs)."""
    now = datetime.now(UTC)
    out = []
    for _ in range(count):
        kind, fields = rng.choice(script)
        person = rng.randrange(len(people))
        data = {
            "type": kind,
            "event_id": str(uuid.uuid4()),
            "account_id": account,
            "occurred_at": now.isoformat(),
            "recipient": {"email": email.format(person), "integration_id": people[person]},
            **fields,
        }
        if kind == "activity":
            data["mailing"] = {
                "mailing_id": "demo-newsletter",
                "name": "Demo Newsletter",
                "send_date": (now - timedelta(hours=1)).isoformat(),
            }
        out.append(parse_event(data))
    return out


def netforum_events(individuals: list[str], rng: random.Random, count: int) -> list[Event]:
    return events(
        individuals, rng, count, account=NETFORUM_ACCOUNT, script=_NETFORUM_SCRIPT, email="society{}@example.org"
    )


def publish_trickle(
    config: ServiceConfig, people: list[str], individuals: list[str], stop: threading.Event, every: float = 5.0
) -> None:
    rng = random.Random(7)
    serde = EventSerde(registry_client(config.schema_registry_url))
    models = {model: topic for topic, model in config.topic_models().items()}
    with Publisher(config.bootstrap_servers, serde) as publisher:
        while not stop.is_set():
            batch = events(people, rng, rng.randint(2, 6)) + netforum_events(individuals, rng, rng.randint(2, 6))
            for event in batch:
                publisher.publish(event, topic=models[type(event)])
            publisher.flush()
            log.info("published %d sample events", len(batch))
            stop.wait(every)


def salesforce_status(sim: SalesforceSim) -> str:
    opted_out = sum(1 for r in sim.records("Contact") + sim.records("Lead") if r.get("HasOptedOutOfEmail"))
    return f"Salesforce: {len(sim.records('Note'))} notes, {len(sim.records('Task'))} tasks, {opted_out} opted out"


def netforum_status(nf: NetforumSim) -> str:
    """What the Individuals' Correspondence tabs and flags hold: 000's mailing and unsubscribe
    rows, tracking's 001 rows, rows a resubscribe removed, and the two flags."""
    rows = nf.activities(include_deleted=True)
    live = [r for r in rows if not r["cma_delete_flag"]]
    codes = Counter(r["cma_activity_code"] for r in live)
    mailing, unsubscribe = codes.pop("Informz Mailing", 0), codes.pop("InformzUnsubscribe", 0)
    people = nf.individuals()
    return (
        f"netFORUM: {len(live)} correspondence rows ({mailing} Informz Mailing, {unsubscribe} "
        f"InformzUnsubscribe, {sum(codes.values())} tracking), {len(rows) - len(live)} removed by resubscribes, "
        f"{sum(1 for p in people if p['cst_no_email_flag'])} do not contact, "
        f"{sum(1 for p in people if p['eml_invalid_flag'])} bad emails"
    )


def status_line(ledger: Ledger, sim: SalesforceSim, nf: NetforumSim) -> str:
    counts: Counter[str] = Counter()
    for (_connection, status), rows in ledger.counts().items():
        counts[status] += rows
    listing = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "empty"
    return f"writeback list: {listing} | {salesforce_status(sim)} | {netforum_status(nf)}"


def report(config: ServiceConfig, sim: SalesforceSim, nf: NetforumSim, stop: threading.Event, every: float = 10.0) -> None:
    ledger = Ledger.connect(config.database_url, migrate_schema=False)
    try:
        while not stop.wait(every):
            log.info("%s", status_line(ledger, sim, nf))
    finally:
        ledger.close()


def start(config: ServiceConfig, sim: SalesforceSim, nf: NetforumSim, stop: threading.Event) -> list[threading.Thread]:
    """Seed the simulators and start the publisher and status threads (the caller stores
    `settings(sim, nf)` in the ledger before `serve` starts)."""
    os.environ[SECRET_ENV] = sim.client_secret
    os.environ[NETFORUM_PASSWORD_ENV] = nf.password
    people, individuals = seed(sim), seed_netforum(nf)
    threads = [
        threading.Thread(
            target=publish_trickle, args=(config, people, individuals, stop), name="demo-publisher", daemon=True
        ),
        threading.Thread(target=report, args=(config, sim, nf, stop), name="demo-status", daemon=True),
    ]
    for thread in threads:
        thread.start()
    return threads
