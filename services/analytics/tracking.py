"""Validation of tracking input (pixel or batch), per the reference's §5. Pure: no I/O.

Rules from the reference: product events (product_click, product_view, add_to_cart,
add_to_wishlist) need queryId and pid; search and transaction need queryId; transaction
needs value; sid, uid, cat, name, label, fromReqId, source ≤ 32 characters; brand and s1..s5
≤ 64; productUrl and json ≤ 512; price ≥ 0; currency an ISO 4217 code; pos a 1-based integer;
ts in ms. Magpie's own caps (the reference gives none): queryId/transId/c/cag/cc ≤ 64, pid ≤ 256,
imUrl/url/r ≤ 2048, other device fields ≤ 256, action ≤ 32 of [A-Za-z0-9_.:-], pos ≤ 1e6,
ts between 2000-01-01 and one day ahead of the server clock (a ts in seconds is refused).
"""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json

from magpie.common.errors import InvalidRequest, MagpieError, ValueTooLong, WrongType
from magpie.common.events.analytics import EventTracked

PRODUCT_ACTIONS = frozenset({"product_click", "product_view", "add_to_cart", "add_to_wishlist"})
QUERY_ACTIONS = frozenset({"search", "transaction"})
MAX_BATCH = 1000
_ACTION = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")
_MIN_TS, _MAX_AHEAD_MS, _MAX_POS = 946_684_800_000, 86_400_000, 1_000_000

# Reference name → (event field, max length).
STRING_FIELDS: dict[str, tuple[str, int]] = {
    "queryId": ("query_id", 64), "pid": ("pid", 256), "uid": ("uid", 32), "sid": ("sid", 32),
    "cat": ("cat", 32), "name": ("name", 32), "label": ("label", 32), "fromReqId": ("from_req_id", 32),
    "source": ("source", 32), "brand": ("brand", 64), "productUrl": ("product_url", 512),
    "json": ("custom_json", 512), "imUrl": ("im_url", 2048), "transId": ("trans_id", 64),
    "c": ("campaign", 64), "cag": ("ad_group", 64), "cc": ("creative", 64),
    **{f"s{i}": (f"s{i}", 64) for i in range(1, 6)},
}
NUMBER_FIELDS = ("value", "price", "n1", "n2", "n3", "n4", "n5")
CONTEXT_FIELDS: dict[str, int] = {
    **{k: 256 for k in ("p", "os", "osv", "db", "dm", "ab", "an", "av", "aaid", "didmd5", "geo",
                        "carrier", "lang", "sr", "sdk", "v")},
    "url": 2048, "r": 2048,
}
# Input key → (kind, event field or context key, max length); action, currency, pos and ts
# have rules of their own.
_TEXT, _NUMBER, _CONTEXT = "text", "number", "context"
_SPECS: dict[str, tuple[str, str, int]] = {
    **{ref: (_TEXT, name, limit) for ref, (name, limit) in STRING_FIELDS.items()},
    **{name: (_NUMBER, name, 0) for name in NUMBER_FIELDS},
    **{name: (_CONTEXT, name, limit) for name, limit in CONTEXT_FIELDS.items()},
}
# ISO 4217 active codes (XXX "no currency" and XTS "testing" left out on purpose).
CURRENCIES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB
EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD
JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU
MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD
RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY
TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD
XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG ZWL""".split())


@dataclass
class TrackingResult:
    """Accepted events with their input index, and each rejected index's reasons."""

    accepted: list[tuple[int, EventTracked]] = field(default_factory=list)
    rejected: list[tuple[int, list[MagpieError]]] = field(default_factory=list)


def validate_batch(raw_events: list[Any], *, app_id: str, now_ms: int, placement: str = "",
                   defaults: Mapping[str, Any] | None = None) -> TrackingResult:
    """Validate each event; `defaults` (a batch's uid, sid, sdk, v) fill fields an event lacks."""
    result = TrackingResult()
    for i, raw in enumerate(raw_events):
        event, errors = validate_item(raw, app_id=app_id, now_ms=now_ms, placement=placement,
                                      defaults=defaults)
        if event is None:
            result.rejected.append((i, errors))
        else:
            result.accepted.append((i, event))
    return result


def validate_item(raw: Any, *, app_id: str, now_ms: int, placement: str = "",
                  defaults: Mapping[str, Any] | None = None) -> tuple[EventTracked | None, list[MagpieError]]:
    """One item of a batch: it must be an object; `defaults` fill the fields it lacks."""
    if not isinstance(raw, Mapping):
        return None, [InvalidRequest("An event must be a JSON object.")]
    return validate_event({**defaults, **raw} if defaults else raw, app_id=app_id, now_ms=now_ms,
                          placement=placement)


def validate_event(raw: Mapping[str, Any], *, app_id: str, now_ms: int,
                   placement: str = "") -> tuple[EventTracked | None, list[MagpieError]]:
    """The event, or None with every reason it is refused.

    Walks the keys the event has (a handful), not every field the reference defines (about
    fifty): this runs for each of up to 1,000 events of a batch, on the request's thread.
    """
    errors: list[MagpieError] = []
    action = raw.get("action")
    if not isinstance(action, str) or not _ACTION.match(action):
        errors.append(InvalidRequest("action is required: up to 32 of [A-Za-z0-9_.:-]."))
        action = None  # a list or an object would not even hash
    fields: dict[str, Any] = {"placement": placement[:64], "action": action}
    context: dict[str, str] = {}
    for key, value in raw.items():
        spec = _SPECS.get(key)
        if spec is None or value is None:
            continue  # unknown fields are ignored, as the reference does; null is absent
        kind, name, limit = spec
        if kind is _NUMBER:
            number = _number(value, name, errors)
            if number is not None:
                fields[name] = number
            continue
        if type(value) is not str:
            value = _text(value, key, limit, errors)
        elif len(value) > limit:
            errors.append(ValueTooLong(parameter=key))
            continue
        elif not value.isascii() and not _utf8(value, key, errors):
            continue
        if value:
            (context if kind is _CONTEXT else fields)[name] = value
    if fields.get("price", 0) < 0:
        errors.append(InvalidRequest("price must be >= 0."))
    currency = _text(raw.get("currency"), "currency", 3, errors)
    if currency:
        if currency.upper() not in CURRENCIES:
            errors.append(InvalidRequest(f"currency {currency!r} is not an ISO 4217 code."))
        fields["currency"] = currency.upper()
    fields["pos"] = _pos(raw.get("pos"), errors)
    fields["ts"] = _ts(raw.get("ts"), now_ms, errors)
    fields["context"] = dict(sorted(context.items())) if len(context) > 1 else context
    _required(fields, errors)
    if errors:
        return None, errors
    return EventTracked(app_id=app_id, event_id=event_id(app_id, fields), **fields), []


def _required(fields: dict[str, Any], errors: list[MagpieError]) -> None:
    action = fields.get("action")
    if action in PRODUCT_ACTIONS or action in QUERY_ACTIONS:
        if not fields.get("query_id"):
            errors.append(InvalidRequest(f"queryId is required for {action}."))
    if action in PRODUCT_ACTIONS and not fields.get("pid"):
        errors.append(InvalidRequest(f"pid is required for {action}."))
    if action == "transaction" and fields.get("value") is None:
        errors.append(InvalidRequest("value is required for transaction."))


def event_id(app_id: str, fields: Mapping[str, Any]) -> str:
    """A content hash: the same event sent twice (a retried beacon) gets the same id, whatever
    the order of its fields (keys sorted; the context dict comes sorted)."""
    return hashlib.sha256(to_json([app_id, sorted(fields.items())])).hexdigest()[:32]


def _text(value: Any, name: str, limit: int, errors: list[MagpieError]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors.append(WrongType(field=name, type="string"))
        return ""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        errors.append(ValueTooLong(parameter=name))
        return ""
    if not text.isascii() and not _utf8(text, name, errors):
        return ""
    return text


def _utf8(text: str, name: str, errors: list[MagpieError]) -> bool:
    # JSON may escape a lone surrogate (\ud800): a str Python holds, but no UTF-8 can carry,
    # so neither the event's hash nor the store's rows could be written.
    try:
        text.encode()
    except UnicodeEncodeError:
        errors.append(WrongType(field=name, type="text (valid Unicode)"))
        return False
    return True


def _number(value: Any, name: str, errors: list[MagpieError]) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        errors.append(WrongType(field=name, type="number"))
        return None
    if not math.isfinite(number):
        errors.append(WrongType(field=name, type="finite number"))
        return None
    return number


def _integer(value: Any) -> int | None:
    # 3, "3" and 3.0 are integers; "3.5", True and "abc" are not.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value.strip()):
        return int(value)
    return None


def _pos(value: Any, errors: list[MagpieError]) -> int | None:
    if value is None or value == "":
        return None
    pos = _integer(value)
    if pos is None or not 1 <= pos <= _MAX_POS:
        errors.append(InvalidRequest("pos must be an integer >= 1 (the 1-based position)."))
        return None
    return pos


def _ts(value: Any, now_ms: int, errors: list[MagpieError]) -> int:
    if value is None or value == "":
        return now_ms
    ts = _integer(value)
    if ts is None or not _MIN_TS <= ts <= now_ms + _MAX_AHEAD_MS:
        errors.append(InvalidRequest("ts must be the time in ms since the epoch (not seconds, not ahead)."))
        return now_ms
    return ts


def from_legacy_pixel(params: Mapping[str, str]) -> dict[str, Any]:
    """The v3 form of a legacy `/__aq.gif` hit (cid, reqid, im_name, action, cuid)."""
    action = params.get("action") or "click"
    return {"action": "product_click" if action == "click" else action, "queryId": params.get("reqid"),
            "pid": params.get("im_name"), "uid": params.get("cuid")}
