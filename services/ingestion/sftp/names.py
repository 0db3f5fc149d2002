"""Feed file names: `<prefix>[_FULL|_INCREMENT|_DELETE].csv.gz`, completed by an empty `.txt` marker."""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

MODES = ("FULL", "INCREMENT", "DELETE")
# Within one scan an increment goes before its DELETE file (the seed: removals come after it).
MODE_RANK = {"FULL": 0, "INCREMENT": 1, "DELETE": 2}
DATA_SUFFIX = ".csv.gz"
MARKER_SUFFIX = ".txt"
MAX_NAME_LEN = 200  # the feed id and a suffix must still fit a 255-byte file name


class FeedNameError(ValueError):
    """A file name the feed cannot accept; the message says what to use instead."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class FeedName:
    prefix: str  # must be one of the application's live app keys
    mode: str  # FULL, INCREMENT or DELETE


def parse_feed_name(name: str) -> FeedName:
    """The prefix and mode of a data file name, or FeedNameError saying why it is refused."""
    if len(name) > MAX_NAME_LEN:
        raise FeedNameError(f"The file name is longer than {MAX_NAME_LEN} characters.")
    if not name.lower().endswith(DATA_SUFFIX):
        ext = name[name.find("."):] if "." in name else "no extension"
        raise FeedNameError(f"'{name}' is refused: only gzip-compressed CSV files ending in .csv.gz are "
                            f"accepted (this one has {ext}; .zip, .gzip, plain .csv and others are not).")
    stem = name[: -len(DATA_SUFFIX)]
    prefix, sep, mode = stem.rpartition("_")
    if not (sep and mode.upper() in MODES):
        prefix, mode = stem, "FULL"  # the seed: no suffix means FULL
    if not prefix:
        raise FeedNameError(f"'{name}' has no prefix: name it <app key>_{mode.upper()}.csv.gz.")
    return FeedName(prefix, mode.upper())


def is_marker(name: str) -> bool:
    """Whether `name` is a completion marker (an empty `.txt`)."""
    return name.lower().endswith(MARKER_SUFFIX)


def marker_target(marker: str, files: Collection[str]) -> str | None:
    """The data file a marker completes: `X.csv.gz.txt` or `X.txt` both complete `X.csv.gz`."""
    # `X.txt` next to `X.zip` names `X.zip`, so that the wrong format gets its clear refusal.
    base = marker[: -len(MARKER_SUFFIX)]
    if base in files and not is_marker(base):
        return base
    candidates = sorted(f for f in files if f.startswith(base + ".") and not is_marker(f))
    if base + DATA_SUFFIX in candidates:
        return base + DATA_SUFFIX
    return candidates[0] if candidates else None


def expected_names(app_key: str) -> dict[str, dict[str, str]]:
    """The data and marker file names to use for each mode with `app_key` as the prefix."""
    out = {}
    for mode in MODES:
        stem = f"{app_key}_{mode}"
        out[mode] = {"data": stem + DATA_SUFFIX, "marker": stem + MARKER_SUFFIX}
    out["FULL"]["data_short"] = app_key + DATA_SUFFIX  # the seed's default form
    out["FULL"]["marker_short"] = app_key + MARKER_SUFFIX
    return out
