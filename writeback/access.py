"""Can this instance reach the broker and the registry with its credentials and certificates?

Asked before `serve` builds its clients. A refusal (wrong password, untrusted certificate, no
route) is not a crash: the instance stays up, reports not ready with the reason, and asks again,
so an orchestrator does not restart it in a loop and a rotated secret heals it. librdkafka would
otherwise retry a refused login forever behind a consumer that simply never receives anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from writeback.config import ServiceConfig
from writeback.contract.serde import registry_client
from writeback.kafka.producer import REFUSALS

log = logging.getLogger("writeback.access")



def kafka_refusal(config: ServiceConfig, timeout: float = 10.0) -> str | None:
    """None when the brokers answer a metadata request; else why not, in librdkafka's words
    (they name the mechanism and the listener, never the password)."""
    errors: list[KafkaError] = []
    admin = AdminClient(config.kafka_config() | {"log_level": 0, "error_cb": errors.append})
    try:
        admin.list_topics(timeout=timeout)
        return None
    except KafkaException as exc:
        admin.poll(0.5)  # delivers the error callbacks that say why
        refusals = [e for e in errors if e.code() in REFUSALS]
        reason = (refusals or errors or [exc.args[0] if exc.args else exc])[0]
        text = reason.str() if isinstance(reason, KafkaError) else str(reason)
        return f"Kafka at {config.bootstrap_servers}: {text}"


def registry_refusal(config: ServiceConfig) -> str | None:
    """None when the registry answers a listing with our credentials; else why not."""
    try:
        registry_client(config.schema_registry_url, config.registry_config()).get_subjects()
        return None
    except SchemaRegistryError as exc:
        return f"schema registry at {config.schema_registry_url}: HTTP {exc.http_status_code} {exc.error_message}"
    except Exception as exc:  # noqa: BLE001 - TLS and connection failures come in many types
        return f"schema registry at {config.schema_registry_url}: {type(exc).__name__}: {_first_line(exc)}"


def wait_for_access(config: ServiceConfig, stop: threading.Event, report: Callable[[str | None], None]) -> bool:
    """Ask until both answer or we are stopped (False); each new reason is logged once, at ERROR."""
    last = None
    while not stop.is_set():
        reason = kafka_refusal(config) or registry_refusal(config)
        report(reason)
        if reason is None:
            if last is not None:
                log.info("access to Kafka and the schema registry restored")
            return True
        if reason != last:
            log.error("not ready: %s; asking again every %.0fs", reason, config.access_retry_s)
            last = reason
        stop.wait(config.access_retry_s)
    return False


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:300]
