"""Tracking (seed 001): every Activity Code / Activity Subcode pair, subscription changes
included, pushed once daily to the account's integrated product.

The integrated product is a CRM kind's `Product` (Salesforce: Activity Group = code, Activity =
subcode; netFORUM: a messaging-activity row with the code and subcode); the connection names it
in `crm.product` (Salesforce when left out), and the rest of its `crm` settings are that
product's. A recipient without a matching integration id fails and adds
nothing (the product's adapter decides what matches).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from writeback import schedules
from writeback.adapters.base import Adapter, Kind, Product, Route, drop
from writeback.contract import taxonomy
from writeback.contract.events import CommunityListEvent, Event, SubscriberEvent
from writeback.ledger.rows import WritebackClass

if TYPE_CHECKING:
    from writeback.settings import Account, Connection


def kind(products: Mapping[str, Product], default: str) -> Kind:
    """The tracking kind, writing to any of `products` (by name; `default` when not named)."""

    class Config(BaseModel):
        """`product` and `tracking_enabled`; every other key belongs to the product's settings."""

        model_config = ConfigDict(frozen=True, extra="allow")
        product: str = default
        tracking_enabled: bool = True  # 001: the integration's Enabled flag
        _product: Any = PrivateAttr(None)

        @model_validator(mode="after")
        def _product_settings(self) -> Config:
            chosen = products.get(self.product)
            if chosen is None:
                raise ValueError(f"product: {self.product!r} is not an integrated product; one of {', '.join(sorted(products))}")
            self._product = chosen.config.model_validate(self.model_extra or {})
            return self

        @property
        def product_config(self) -> Any:
            return self._product

    def route(event: Event, connection: Connection) -> Route:
        if isinstance(event, CommunityListEvent):
            return drop("not_for_kind")
        if not connection.config.tracking_enabled:
            return drop("tracking_disabled")
        if taxonomy.tracking_pair(event) is None:
            return drop("no_tracking_pair")
        return Route(WritebackClass.SUBSCRIBER if isinstance(event, SubscriberEvent) else WritebackClass.ACTIVITY)

    def daily(tz: str) -> dict[WritebackClass, schedules.Schedule]:
        once = schedules.daily_default(tz)  # 001: once daily
        return {WritebackClass.SUBSCRIBER: once, WritebackClass.ACTIVITY: once}

    def open_adapter(account: Account, connection: Connection) -> Adapter:
        config = connection.config
        return products[config.product].open(account, config.product_config)

    return Kind(
        name="tracking",
        route=route,
        schedules=daily,
        config=Config,
        open=open_adapter,
        subscriber_cadence=(timedelta(days=1), "001"),
    )
