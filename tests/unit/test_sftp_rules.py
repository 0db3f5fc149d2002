"""SFTP datafeed rules without I/O: file names, markers, client paths, the FULL safety guard."""
import os

import pytest

from magpie.ingestion.sftp.guard import FeedTally, GuardPolicy, check_full
from magpie.ingestion.sftp.names import FeedName, FeedNameError, expected_names, marker_target, parse_feed_name
from magpie.ingestion.sftp.paths import PathRefused, local_path, normalize, upload_name

pytestmark = pytest.mark.unit
KEY = "0ea7c0ffee0ea7c0ffee0ea7c0ffee00"


@pytest.mark.parametrize("name, expected", [
    (f"{KEY}.csv.gz", FeedName(KEY, "FULL")),
    (f"{KEY}_FULL.csv.gz", FeedName(KEY, "FULL")),
    (f"{KEY}_INCREMENT.csv.gz", FeedName(KEY, "INCREMENT")),
    (f"{KEY}_DELETE.csv.gz", FeedName(KEY, "DELETE")),
    (f"{KEY}_increment.CSV.GZ", FeedName(KEY, "INCREMENT")),
    ("shop_2024.csv.gz", FeedName("shop_2024", "FULL")),  # not a mode: the whole stem is the prefix
])
def test_feed_names(name, expected):
    assert parse_feed_name(name) == expected


@pytest.mark.parametrize("name, says", [
    (f"{KEY}.zip", ".zip"), (f"{KEY}.csv.gzip", ".csv.gzip"), (f"{KEY}.csv", ".csv"),
    (f"{KEY}_FULL.gz", ".gz"), (KEY, "no extension"), ("_FULL.csv.gz", "no prefix"),
])
def test_refused_names_say_why(name, says):
    with pytest.raises(FeedNameError) as err:
        parse_feed_name(name)
    assert says in err.value.detail


def test_markers_find_their_data_file():
    files = {f"{KEY}_FULL.csv.gz", f"{KEY}_FULL.txt", "x.zip", "x.txt", "y.csv.gz.txt", "y.csv.gz", "lone.txt"}
    assert marker_target(f"{KEY}_FULL.txt", files) == f"{KEY}_FULL.csv.gz"
    assert marker_target("y.csv.gz.txt", files) == "y.csv.gz"
    assert marker_target("x.txt", files) == "x.zip"  # the wrong format gets its refusal
    assert marker_target("lone.txt", files) is None
    names = expected_names(KEY)
    assert names["INCREMENT"] == {"data": f"{KEY}_INCREMENT.csv.gz", "marker": f"{KEY}_INCREMENT.txt"}
    assert names["FULL"]["data_short"] == f"{KEY}.csv.gz"


@pytest.mark.parametrize("path, expected", [
    ("/", "/"), (".", "/"), ("indexing", "/indexing"), ("/indexing/./a.csv.gz", "/indexing/a.csv.gz"),
    ("/processed/../indexing//a", "/indexing/a"),
])
def test_paths_inside_the_folder(path, expected):
    assert normalize(path) == expected


@pytest.mark.parametrize("path", ["..", "../x", "/indexing/../../etc/passwd", "/etc/passwd", "/tmp",
                                  "/indexing/\x00x"])
def test_escapes_and_other_folders_are_refused(path):
    with pytest.raises(PathRefused):
        normalize(path)


def test_uploads_only_as_plain_names_in_indexing():
    assert upload_name("/indexing/feed.csv.gz") == "feed.csv.gz"
    for path in ("/processed/x", "/indexing", "/indexing/sub/x", "/", "/indexing/" + "a" * 256):
        with pytest.raises(PathRefused):
            upload_name(path)


def test_links_out_of_the_folder_are_refused(tmp_path):
    root = tmp_path / "app"
    (root / "indexing").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", root / "indexing" / "out")
    os.symlink(root / "indexing", root / "processed")  # inside the folder: fine
    real = os.path.realpath(root)
    assert local_path(real, "/processed") == os.path.join(real, "processed")
    with pytest.raises(PathRefused, match="link"):
        local_path(real, "/indexing/out")


POLICY = GuardPolicy(min_items=100, max_remove=0.5)


@pytest.mark.parametrize("tally, refused, says", [
    (FeedTally(rows=0, valid=0, invalid=0, catalog=1000, would_remove=1000), True, "has no rows"),
    (FeedTally(rows=0, valid=0, invalid=0, catalog=5, would_remove=5), True, "has no rows"),  # even small
    (FeedTally(rows=900, valid=0, invalid=900, catalog=1000, would_remove=1000), True, "no valid row"),
    (FeedTally(rows=100, valid=100, invalid=0, catalog=1000, would_remove=900), True, "names only 100"),
    (FeedTally(rows=1000, valid=300, invalid=700, catalog=1000, would_remove=700), True, "700 of its 1000 rows"),
    (FeedTally(rows=600, valid=600, invalid=0, catalog=1000, would_remove=400), False, None),
    (FeedTally(rows=10, valid=10, invalid=0, catalog=50, would_remove=40), False, None),  # small catalog
    (FeedTally(rows=0, valid=0, invalid=0, catalog=0, would_remove=0), False, None),  # nothing to lose
    (FeedTally(rows=900, valid=0, invalid=900, catalog=1000, would_remove=0), False, None),  # names kept
])
def test_guard(tally, refused, says):
    reason = check_full(tally, POLICY)
    assert (reason is not None) == refused
    if says:
        assert says in reason
