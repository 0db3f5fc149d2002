"""The search parameters of the ViSearch API, parsed and checked before any engine is asked.

Values come as repeated `key=value` pairs (query string, and form fields on POST). The
official SDKs send booleans as `True`/`False` and numbers as Python prints them, so both
spellings are accepted; anything else is refused with a message naming the parameter.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from magpie.common.errors import InvalidRequest
from magpie.search.arrange import SortBy

MAX_RESULTS = 1000  # results reachable through paging, as the reference limits them
DEFAULT_LIMIT = 10
DEFAULT_FACETS_LIMIT = 10
MAX_COLORS = 16
MAX_GROUP_LIMIT = 100
# Parameters of the reference whose meaning Magpie cannot honour: refused rather than
# silently ignored, since the results would not be what the client asked for.
UNSUPPORTED = {
    "detection": "detection needs an object detector, which Magpie does not have: send "
                 "box=x1,y1,x2,y2 to search a region of the image.",
    "detection_limit": "detection_limit needs an object detector, which Magpie does not have.",
    "detection_sensitivity": "detection_sensitivity needs an object detector, which Magpie "
                             "does not have.",
    "point": "point needs an object detector, which Magpie does not have: send box=x1,y1,x2,y2.",
    "diversity": "diversity is not supported: use dedup, or /recommendation, which diversifies "
                 "its results.",
    "sort_group_by": "sort_group_by is not supported: groups are ordered by their best result.",
    "sort_group_strategy": "sort_group_strategy is not supported: groups are ordered by their "
                           "best result.",
}


class Unsupported(InvalidRequest):
    """A parameter or method of the reference that Magpie does not offer; says what to use."""
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
_URL_ENCODED = re.compile(r"^https?%(25)*3a", re.IGNORECASE)


@dataclass(frozen=True)
class Box:
    """A region of the query image, in its pixels, origin top-left; x2 > x1 and y2 > y1."""

    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class SearchParams:
    """Every parameter a search method reads; defaults are the reference's."""

    page: int = 1
    limit: int = DEFAULT_LIMIT
    fl: tuple[str, ...] = ()
    get_all_fl: bool = False
    fq: tuple[str, ...] = ()
    score: bool = False
    score_min: float = 0.0
    score_max: float = 1.0
    qinfo: bool = False
    facets: tuple[str, ...] = ()  # ("*",) for every searchable field
    facets_limit: int = DEFAULT_FACETS_LIMIT
    facets_show_count: bool = True
    dedup: bool = False
    dedup_score_threshold: float = 0.0
    va_uid: str = ""
    va_sid: str = ""
    im_name: str = ""
    im_url: str = ""
    im_id: str = ""
    box: Box | None = None
    colors: tuple[tuple[str, float], ...] = field(default=())
    sort_by: SortBy | None = None
    group_by: str = ""
    group_limit: int = 1

    @property
    def offset(self) -> int:
        """Results before this page."""
        return (self.page - 1) * self.limit

    @property
    def scored_window(self) -> bool:
        """Whether the score bounds or dedup cut the ranking (the whole window is needed)."""
        return self.score_min > 0.0 or self.score_max < 1.0 or self.dedup

    @property
    def arranged(self) -> bool:
        """Whether sort_by or group_by re-arrange the ranking (the whole window is needed)."""
        return self.sort_by is not None or bool(self.group_by)


class Query:
    """Repeated `key=value` pairs with typed accessors that raise on bad values."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in pairs:
            self._values.setdefault(key, []).append(value)

    def all(self, key: str) -> list[str]:
        """Every value of a repeated key."""
        return self._values.get(key, [])

    def text(self, key: str, default: str = "") -> str:
        """The last value of a key, stripped."""
        values = self._values.get(key)
        return values[-1].strip() if values else default

    def boolean(self, key: str, default: bool = False) -> bool:
        """true/false in any case (the Python SDK sends True/False), 1/0."""
        if key not in self._values:
            return default
        value = self.text(key).lower()
        if value in _TRUE or value in _FALSE:
            return value in _TRUE
        raise InvalidRequest(f"{key} must be false or true.")

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        """A whole number within [low, high] (`10.0` counts as 10)."""
        if key not in self._values or not self.text(key):
            return default
        raw = self.text(key)
        try:
            number = float(raw)
        except ValueError:
            raise InvalidRequest(f"{key} must be an integer, not '{raw}'.") from None
        if not number.is_integer():
            raise InvalidRequest(f"{key} must be an integer, not '{raw}'.")
        if not low <= number <= high:
            raise InvalidRequest(f"{key} must be between {low} and {high}.")
        return int(number)

    def number(self, key: str, default: float, low: float, high: float) -> float:
        """A finite number within [low, high]."""
        if key not in self._values or not self.text(key):
            return default
        raw = self.text(key)
        try:
            number = float(raw)
        except ValueError:
            raise InvalidRequest(f"{key} must be a number, not '{raw}'.") from None
        if not math.isfinite(number):
            raise InvalidRequest(f"{key} must be a finite number.")
        if number < low:
            raise InvalidRequest(f"{key} must be no less than {low:g}.")
        if number > high:
            raise InvalidRequest(f"{key} must be no more than {high:g}.")
        return number


def parse_params(pairs: Iterable[tuple[str, str]]) -> SearchParams:
    """Check every parameter a search may carry; InvalidRequest names the first bad one."""
    q = Query(pairs)
    for name, why in UNSUPPORTED.items():
        # An empty detection turns detection off in the reference: nothing to refuse.
        if any(v.strip() for v in q.all(name)):
            raise Unsupported(why)
    page = q.integer("page", 1, 1, MAX_RESULTS)
    limit = q.integer("limit", DEFAULT_LIMIT, 1, MAX_RESULTS)
    if page * limit > MAX_RESULTS:
        raise InvalidRequest(f"page*limit must be at most {MAX_RESULTS}: at most {MAX_RESULTS} "
                             "results can be paged through.")
    score_min = q.number("score_min", 0.0, 0.0, 1.0)
    score_max = q.number("score_max", 1.0, 0.0, 1.0)
    if score_min > score_max:
        raise InvalidRequest("score_min must be no more than score_max.")
    return SearchParams(
        page=page, limit=limit, fl=tuple(_names(q.all("fl"))), get_all_fl=q.boolean("get_all_fl"),
        fq=tuple(v for v in q.all("fq") if v.strip()), score=q.boolean("score"),
        score_min=score_min, score_max=score_max, qinfo=q.boolean("qinfo"),
        facets=tuple(_names(q.all("facets"))),
        facets_limit=q.integer("facets_limit", DEFAULT_FACETS_LIMIT, 1, MAX_RESULTS),
        facets_show_count=q.boolean("facets_show_count", True), dedup=q.boolean("dedup"),
        dedup_score_threshold=q.number("dedup_score_threshold", 0.0, 0.0, 1.0),
        va_uid=q.text("va_uid")[:128], va_sid=q.text("va_sid")[:128],
        im_name=q.text("im_name"), im_url=clean_url(q.text("im_url")), im_id=q.text("im_id"),
        box=parse_box(q.text("box")), colors=tuple(parse_colors(q.all("color"))),
        sort_by=parse_sort(q.text("sort_by")), group_by=q.text("group_by"),
        group_limit=q.integer("group_limit", 1, 1, MAX_GROUP_LIMIT),
    )


def parse_sort(text: str) -> SortBy | None:
    """`field:asc` or `field:desc` (`field` alone: ascending), or None when absent."""
    if not text:
        return None
    name, _, direction = text.partition(":")
    direction = direction.strip().lower() or "asc"
    if not name.strip() or direction not in ("asc", "desc"):
        raise InvalidRequest(f"sort_by '{text}' must look like field:asc or field:desc.")
    return SortBy(name.strip(), direction == "desc")


def _names(values: Iterable[str]) -> list[str]:
    """Field names from repeated and comma-joined values, in order, once each."""
    names: list[str] = []
    for value in values:
        for name in (n.strip() for n in value.split(",")):
            if name and name not in names:
                names.append(name)
    return names


def clean_url(url: str) -> str:
    """`im_url`, decoded again while it still arrives percent-encoded."""
    # The Python SDK quotes im_url before its HTTP library encodes the query string again.
    for _ in range(3):
        if not _URL_ENCODED.match(url):
            break
        url = unquote(url)
    return url


def parse_box(text: str) -> Box | None:
    """`x1,y1,x2,y2`, or None (the whole image) when absent or invalid."""
    # The reference ignores an invalid box. A zero-area box asks for detection at a point,
    # which Magpie does not do: it is ignored too.
    parts = text.split(",") if text else []
    if len(parts) != 4:
        return None
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError:
        return None
    if not all(math.isfinite(v) and v >= 0 for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        return None
    return Box(x1, y1, x2, y2)


def parse_colors(values: Iterable[str]) -> list[tuple[str, float]]:
    """Repeated `color=RRGGBB` or `RRGGBB:weight` (1-100, default 100) as (hex, weight)."""
    colors: list[tuple[str, float]] = []
    for value in values:
        hex_part, _, weight_part = value.strip().partition(":")
        match = _HEX.match(hex_part.strip())
        if not match:
            raise InvalidRequest("color is invalid.")
        weight = 100.0
        if weight_part.strip():
            try:
                weight = float(weight_part)
            except ValueError:
                raise InvalidRequest("color is invalid.") from None
            if not 1 <= weight <= 100:
                raise InvalidRequest("color weight must be between 1 and 100.")
        colors.append((match.group(1).lower(), weight))
    if len(colors) > MAX_COLORS:
        raise InvalidRequest(f"At most {MAX_COLORS} colors.")
    return colors
