"""The connection kinds this build knows: one line per kind."""

from __future__ import annotations

from writeback.adapters import community, netforum, personify, salesforce, tracking
from writeback.adapters.base import Kind

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        salesforce.KIND,
        netforum.KIND,
        personify.KIND,
        community.KIND,
        tracking.kind(products={"salesforce": salesforce.TRACKING, "netforum": netforum.TRACKING}, default="salesforce"),
    )
}
