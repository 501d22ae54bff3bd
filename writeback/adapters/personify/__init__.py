"""Personify (seed 004): subscription changes (unsubscribe, subscribe, resubscribe, by scope) as
interest-area opt-ins and/or activity records, once daily. No adapter yet: rows wait, pending."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from writeback import schedules
from writeback.adapters.base import Kind, Route, drop, route_outbound
from writeback.contract.events import ActivityEvent, Event, SubscriberAction
from writeback.ledger.rows import WritebackClass

if TYPE_CHECKING:
    from writeback.settings import Connection

_ACTIONS = frozenset({SubscriberAction.UNSUBSCRIBE, SubscriberAction.RESUBSCRIBE, SubscriberAction.SUBSCRIBE})


class Mode(StrEnum):
    """Seed 004: subscription activity as CUS_ACTIVITY records, as the CUS_OPT_IN flag, or both."""

    ACTIVITY = "activity"
    OPT_IN = "opt_in"
    BOTH = "both"


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    personify_mode: Mode = Mode.BOTH


def _route(event: Event, connection: Connection) -> Route:
    if isinstance(event, ActivityEvent):
        return drop("not_for_kind")
    return route_outbound(event, connection, _ACTIONS)


def _schedules(tz: str) -> dict[WritebackClass, schedules.Schedule]:
    once = schedules.daily_default(tz)  # 004: once daily
    return {WritebackClass.SUBSCRIBER: once, WritebackClass.ACTIVITY: once}


KIND = Kind(
    name="personify",
    route=_route,
    schedules=_schedules,
    config=Config,
    subscriber_cadence=(timedelta(days=1), "004"),
)
