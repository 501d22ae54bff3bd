"""What `make run` shows: the whole path on one machine, with windows short enough to watch.

A Salesforce simulator stands in for the CRM, with demo contacts and leads; a trickle of sample
events (unsubscribes, resubscribes, bad emails, sends, opens, clicks) is published every few
seconds; windows close every minute; a status line reports the writeback list and what the
simulator holds. Nothing here is used by `serve` in production (this is the dev distribution).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

from writeback.config import ServiceConfig
from writeback.contract.events import Event, parse_event
from writeback.contract.serde import EventSerde, registry_client
from writeback.kafka.producer import Publisher
from writeback.ledger import Ledger
from writeback.settings import Settings, parse_settings
from writeback_dev.simulators.salesforce import SalesforceSim

log = logging.getLogger("writeback_dev.demo")

ACCOUNT = "demo"
SECRET_ENV = "WRITEBACK_DEMO_SF_SECRET"
_EVERY_MINUTE = {"kind": "interval", "minutes": 1}


def settings(sim: SalesforceSim) -> Settings:
    crm = {"login_url": sim.login_url, "client_id": sim.client_id, "client_secret": {"env": SECRET_ENV}}
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
                            "schedules": {"subscriber": _EVERY_MINUTE, "activity": _EVERY_MINUTE},
                            "crm": crm,
                        },
                        {
                            "id": "demo-tracking",
                            "kind": "tracking",
                            "schedules": {"subscriber": _EVERY_MINUTE, "activity": _EVERY_MINUTE},
                            "crm": {**crm, "product": "salesforce"},
                        },
                    ],
                }
            ]
        }
    )


def seed(sim: SalesforceSim, contacts: int = 12, leads: int = 4) -> list[str]:
    people = [sim.add_contact(f"Member{i}", f"member{i}@example.org") for i in range(contacts)]
    people += [sim.add_lead(f"Prospect{i}", "Prospect Co", f"prospect{i}@example.org") for i in range(leads)]
    return people


_SCRIPT = (
    ("subscriber", {"action": "UNSUBSCRIBE", "source": "MAILING_LINK", "reason": "Too many emails"}),
    ("subscriber", {"action": "RESUBSCRIBE", "source": "SUBSCRIPTION_PAGE"}),
    ("subscriber", {"action": "BAD_EMAIL", "source": "ACCOUNT_RULE"}),
    ("activity", {"subcode": "Delivered", "source": "CAMPAIGN"}),
    ("activity", {"subcode": "Opened", "source": "MAILING_LINK"}),
    ("activity", {"subcode": "Clicked", "source": "MAILING_LINK"}),
)


def events(people: list[str], rng: random.Random, count: int) -> list[Event]:
    now = datetime.now(UTC)
    out = []
    for _ in range(count):
        kind, fields = rng.choice(_SCRIPT)
        person = rng.randrange(len(people))
        data = {
            "type": kind,
            "event_id": str(uuid.uuid4()),
            "account_id": ACCOUNT,
            "occurred_at": now.isoformat(),
            "recipient": {"email": f"person{person}@example.org", "integration_id": people[person]},
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


def publish_trickle(config: ServiceConfig, people: list[str], stop: threading.Event, every: float = 5.0) -> None:
    rng = random.Random(7)
    serde = EventSerde(registry_client(config.schema_registry_url))
    models = {model: topic for topic, model in config.topic_models().items()}
    with Publisher(config.bootstrap_servers, serde) as publisher:
        while not stop.is_set():
            batch = events(people, rng, rng.randint(2, 6))
            for event in batch:
                publisher.publish(event, topic=models[type(event)])
            publisher.flush()
            log.info("published %d sample events", len(batch))
            stop.wait(every)


def report(config: ServiceConfig, sim: SalesforceSim, stop: threading.Event, every: float = 10.0) -> None:
    ledger = Ledger.connect(config.database_url, migrate_schema=False)
    try:
        while not stop.wait(every):
            counts: dict[str, int] = {}
            for (_connection, status), rows in ledger.counts().items():
                counts[status] = counts.get(status, 0) + rows
            opted_out = sum(1 for r in sim.records("Contact") + sim.records("Lead") if r.get("HasOptedOutOfEmail"))
            log.info(
                "writeback list: %s | simulator: %d notes, %d tasks, %d opted out",
                ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "empty",
                len(sim.records("Note")),
                len(sim.records("Task")),
                opted_out,
            )
    finally:
        ledger.close()


def start(config: ServiceConfig, sim: SalesforceSim, stop: threading.Event) -> list[threading.Thread]:
    """Seed the simulator and start the publisher and status threads (settings are applied by
    `serve` from `config.settings_file`)."""
    os.environ[SECRET_ENV] = sim.client_secret
    people = seed(sim)
    threads = [
        threading.Thread(target=publish_trickle, args=(config, people, stop), name="demo-publisher", daemon=True),
        threading.Thread(target=report, args=(config, sim, stop), name="demo-status", daemon=True),
    ]
    for thread in threads:
        thread.start()
    return threads
