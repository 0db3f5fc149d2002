"""The FULL feed safety guard: refuse a feed that would empty most of a large catalog."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GuardPolicy:
    min_items: int = 100  # smaller catalogs are replaced whatever the share removed
    max_remove: float = 0.5  # "most": more than this share of the catalog


@dataclass(frozen=True)
class FeedTally:
    """What a staged FULL feed holds and what applying it would do."""

    rows: int  # data rows read
    valid: int  # rows that would be applied
    invalid: int  # rows refused (duplicates included)
    catalog: int  # items in the catalog before the feed
    would_remove: int  # catalog items the feed does not name


def check_full(t: FeedTally, policy: GuardPolicy = GuardPolicy()) -> str | None:
    """None when the FULL feed may be applied, else why it is refused."""
    if t.catalog == 0 or t.would_remove == 0:
        return None
    if t.valid == 0:
        # Even a small catalog: a file without a usable row is a mistake, not a new catalog.
        what = "has no rows" if t.rows == 0 else f"has no valid row ({t.invalid} invalid)"
        return (f"The file {what}: applying it would remove {t.would_remove} of the {t.catalog} "
                "items in the catalog.")
    share = t.would_remove / t.catalog
    if t.catalog < policy.min_items or share <= policy.max_remove:
        return None
    if t.invalid > t.valid:
        cause = f"{t.invalid} of its {t.rows} rows are invalid"
    else:
        cause = f"it names only {t.catalog - t.would_remove} of the {t.catalog} items in the catalog"
    return (f"Applying it would remove {t.would_remove} of the {t.catalog} items in the catalog "
            f"({share:.0%}, more than the {policy.max_remove:.0%} allowed): {cause}. "
            "Is the file truncated, garbled or the wrong one?")
