"""Analytics events: validated shopper events (tracking API) and served searches."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from magpie.common.events.base import Event


class EventTracked(Event):
    """One validated shopper event (pixel or batch API); field names follow the tracking
    reference in snake_case (`queryId` → `query_id`, `fromReqId` → `from_req_id`, ...).

    `event_id` is derived from the event's content, so a beacon the browser re-sends and a
    message the bus re-delivers both collapse to one row in the store.
    """

    topic = "event.tracked"
    version: Literal[1] = 1
    action: str
    ts: int = Field(description="When it happened, ms since the epoch (client clock, else server).")
    query_id: str = Field("", description="The search `reqid` the event follows (queryId).")
    pid: str = Field("", description="Product id / im_name.")
    pos: int | None = Field(None, ge=1, description="1-based position of the product in the results.")
    uid: str = ""
    sid: str = ""
    value: float | None = Field(None, description="Transaction value.")
    currency: str = Field("", description="ISO 4217 code, upper case.")
    price: float | None = Field(None, ge=0)
    from_req_id: str = ""
    source: str = ""
    placement: str = Field("", description="The placement id of a `code` written app_key:placement_id.")
    cat: str = ""
    name: str = ""
    label: str = ""
    brand: str = ""
    product_url: str = ""
    im_url: str = ""
    trans_id: str = ""
    campaign: str = Field("", description="Reference field `c`.")
    ad_group: str = Field("", description="Reference field `cag`.")
    creative: str = Field("", description="Reference field `cc`.")
    s1: str = ""
    s2: str = ""
    s3: str = ""
    s4: str = ""
    s5: str = ""
    n1: float | None = None
    n2: float | None = None
    n3: float | None = None
    n4: float | None = None
    n5: float | None = None
    custom_json: str = Field("", description="Reference field `json` (custom JSON text).")
    context: dict[str, str] = Field(
        default_factory=dict,
        description="Device and page fields as sent: p, os, osv, db, dm, ab, an, av, aaid, didmd5, "
        "geo, carrier, lang, sr, url, r, sdk, v.",
    )

    def key(self) -> str:
        """Per shopper: one user's events stay ordered, shoppers spread over partitions."""
        return f"{self.app_id}:{self.uid or self.query_id or self.event_id}"


class SearchServed(Event):
    """A search (or recommendation) answered to a storefront: what was shown, where."""

    topic = "search.served"
    version: Literal[1] = 1
    reqid: str
    method: str = Field(description="The API method, e.g. search, uploadsearch, product/search_by_image.")
    solution: str = Field("", description="The widget or placement that asked; empty for direct API calls.")
    result_count: int = Field(ge=0, description="How many results were returned in this answer.")
    im_names: list[str] = Field(default_factory=list, description="The results shown, in order.")
    first_pos: int = Field(1, ge=1, description="Position of im_names[0] (later pages start further).")
    uid: str = ""
    sid: str = ""
    ts: int = Field(description="When it was served, ms since the epoch.")
    latency_ms: float = Field(0.0, ge=0, description="Time spent answering, in ms.")

    def key(self) -> str:
        """Per request: searches spread over partitions."""
        return f"{self.app_id}:{self.reqid}"
