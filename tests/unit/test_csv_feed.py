"""The CSV feed parser (streaming, line numbers, errors) and schema inference."""
import gzip
import io

import pytest

from magpie.common.controlplane.schema_rules import Field
from magpie.ingestion.csv_feed import (
    MAX_LINE_CHARS,
    CsvFormatError,
    Utf8Decoder,
    column_problems,
    infer_schema,
    open_feed,
    take,
)

pytestmark = pytest.mark.unit


def rows(data: bytes, **kw):
    feed = open_feed(io.BytesIO(data), **kw)
    return feed.header, list(feed)


def good(parsed):
    return [(r.line, r.values) for r in parsed if r.error is None]


@pytest.mark.parametrize("read_size", [1, 2, 3, 7, 65536])
def test_bom_quotes_embedded_newlines_and_crlf_at_any_read_size(read_size):
    data = ('\ufeffim_name,im_url,title\r\n'
            'a,http://x/a.jpg,"Red, ""the"" best"\r\n'
            'b,http://x/b.jpg,"two\r\nlines, and é"\r\n'
            'c,http://x/c.jpg,plain\r\n').encode()
    header, parsed = rows(data, read_size=read_size)
    assert header == ["im_name", "im_url", "title"]
    assert good(parsed) == [
        (2, {"im_name": "a", "im_url": "http://x/a.jpg", "title": 'Red, "the" best'}),
        (3, {"im_name": "b", "im_url": "http://x/b.jpg", "title": "two\r\nlines, and é"}),
        (5, {"im_name": "c", "im_url": "http://x/c.jpg", "title": "plain"}),
    ]


def test_no_trailing_newline_blank_lines_and_empty_rows_are_skipped():
    _, parsed = rows(b"\nim_name,im_url\n\na,u\n,\n\nb,v")
    assert good(parsed) == [(4, {"im_name": "a", "im_url": "u"}), (7, {"im_name": "b", "im_url": "v"})]


def test_ragged_and_malformed_rows_are_errors_with_their_line_and_the_rest_goes_on():
    _, parsed = rows(b'im_name,im_url,price\na,u,1\nb,u\nc,u,3,extra\n"d"x,u,4\ne,"multi\nline",5\nf,u,6\n')
    errors = [(r.line, r.values.get("im_name"), r.error.detail) for r in parsed if r.error]
    assert errors == [
        (3, "b", "Line 3 has 2 cells; the header has 3."),
        (4, "c", "Line 4 has 4 cells; the header has 3."),
        (5, None, "Line 5: malformed CSV: ',' expected after '\"'."),
    ]
    assert [line for line, _ in good(parsed)] == [2, 6, 8]


def test_unterminated_quote_is_reported_at_the_line_it_starts():
    _, parsed = rows(b'im_name,im_url\na,u\nb,"open\nc,u\n')
    assert good(parsed) == [(2, {"im_name": "a", "im_url": "u"})]
    [bad] = [r for r in parsed if r.error]
    assert bad.line == 3 and "unexpected end of data" in bad.error.detail


@pytest.mark.parametrize("header, message", [
    (b"", "The file is empty"),
    (b"\n\n", "The file is empty"),
    (b"im_url,brand\n", "no im_name column"),
    (b"im_name,brand,price,brand\n", "names 'brand' more than once"),
    (b"im_name,,price\n", "column(s) 2 have no name"),
    (b'im_name,"x"y\n', "header row is malformed"),
])
def test_header_errors(header, message):
    with pytest.raises(CsvFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_feed(io.BytesIO(header))


def test_more_than_32_columns_names_the_count():
    header = ",".join(["im_name", "im_url"] + [f"f{i}" for i in range(31)]).encode()
    with pytest.raises(CsvFormatError, match="The header has 33 columns; at most 32"):
        open_feed(io.BytesIO(header + b"\n"))
    ok = ",".join(["im_name", "im_url"] + [f"f{i}" for i in range(30)]).encode()
    assert len(open_feed(io.BytesIO(ok + b"\n")).header) == 32


@pytest.mark.parametrize("read_size", [1, 4, 65536])
def test_invalid_utf8_names_the_byte_offset_and_line(read_size):
    data = "im_name,im_url\nä,u\n".encode() + b"b,\xff\n"
    feed = open_feed(io.BytesIO(data), read_size=read_size)
    with pytest.raises(CsvFormatError) as caught:
        list(feed)
    assert caught.value.line == 3
    assert "invalid byte at offset 22 (line 3)" in caught.value.detail


def test_truncated_utf8_at_the_end_and_gzip_hint():
    with pytest.raises(CsvFormatError, match=r"offset 17 \(line 2\)"):
        list(open_feed(io.BytesIO(b"im_name,im_url\na," + "é".encode()[:1])))
    with pytest.raises(CsvFormatError, match="gzip-compressed"):
        open_feed(io.BytesIO(gzip.compress(b"im_name\na\n")))


def test_utf8_decoder_alone_tracks_offsets_across_feeds():
    dec = Utf8Decoder()
    assert dec.feed("é".encode()[:1]) == ""
    assert dec.feed("é\n".encode()[1:]) == "é\n"
    assert dec.feed(b"ok\xc3(") == "ok"  # the valid text first, the error on the next call
    with pytest.raises(CsvFormatError, match=r"offset 5 \(line 2\)"):
        dec.feed(b"more")


def test_gzip_variant_reads_the_same_rows_and_reports_bad_gzip():
    data = b'im_name,im_url,title\na,u,"x\ny"\nb,v,z\n'
    assert good(rows(gzip.compress(data), gzip=True)[1]) == good(rows(data)[1])
    with pytest.raises(CsvFormatError, match="not valid gzip"):
        rows(data, gzip=True)
    with pytest.raises(CsvFormatError, match="not valid gzip"):
        rows(gzip.compress(data * 100)[:40], gzip=True)


def test_a_line_longer_than_the_limit_is_an_error_not_a_buffer():
    data = b"im_name,im_url\n" + b"a" * (MAX_LINE_CHARS + 10) + b"\nb,u\n"
    with pytest.raises(CsvFormatError, match="Line 2 is longer than"):
        list(open_feed(io.BytesIO(data)))
    with pytest.raises(CsvFormatError, match="Line 1 is longer than"):
        open_feed(io.BytesIO(b"im_name,im_url\r" + b"a,u\r" * (MAX_LINE_CHARS // 4)))


def test_take_returns_the_rows_before_a_fatal_error():
    feed = iter(open_feed(io.BytesIO(b"im_name\na\nb\nc\n\xff\n")))
    first, err = take(feed, 2)
    assert [r.values["im_name"] for r in first] == ["a", "b"] and err is None
    rest, err = take(feed, 2)
    assert [r.values["im_name"] for r in rest] == ["c"] and err.line == 5


# --- inference ----------------------------------------------------------------------------
def infer(table: list[list[str]]) -> list[Field]:
    header, *body = table
    return infer_schema([dict(zip(header, r)) for r in body], header)


def test_infers_int_float_string_text_and_searchable():
    header = ["im_name", "im_url", "qty", "price", "brand", "title", "desc", "zip", "link", "empty"]
    body = [[f"n{i}", f"http://x/{i}.jpg", str(i - 2), f"{i}.5" if i % 2 else str(i),
             ["Nike", "Puma"][i % 2], f"Product number {i}", "long words " * 30 + str(i),
             f"0{i}123", f"https://shop/p/{i % 2}", ""] for i in range(6)]
    body[3][2] = " +7 "
    assert infer([header, *body]) == [
        Field("qty", "int", True), Field("price", "float", True), Field("brand", "string", True),
        Field("title", "string", False), Field("desc", "text", False), Field("zip", "string", False),
        Field("link", "string", False), Field("empty", "string", False)]


def test_numbers_with_words_and_one_huge_value():
    header = ["im_name", "price", "note"]
    assert infer([header, ["a", "1.5", "x" * 1001], ["b", "cheap", "y"], ["c", "", "y"]]) == [
        Field("price", "string", False), Field("note", "text", False)]
    assert infer([header, ["a", "1e3", "nan"], ["b", "-.5", "inf"]])[0] == Field("price", "float", True)
    big = str(2**63)
    assert infer([["im_name", "n"], ["a", big], ["b", "1"]]) == [Field("n", "float", True)]


def test_rows_with_errors_are_not_sampled():
    feed = open_feed(io.BytesIO(b"im_name,im_url,qty\na,u,1\nb,u,2,oops\nc,u,3\n"))
    assert infer_schema(feed, feed.header) == [Field("qty", "int", True)]


def test_bad_field_names_are_reported_not_renamed():
    header = ["im_name", "im_url", "price", "colour name", "x" * 33, "ok"] + [f"f{i}" for i in range(29)]
    problems = column_problems(header)
    assert [p["column"] for p in problems] == ["colour name", "x" * 33, "f28"]
    assert "only letters" in problems[0]["problem"] and "longer than 32" in problems[1]["problem"]
    assert "number 31" in problems[2]["problem"]
    names = [f.name for f in infer_schema([], header)]
    assert "colour name" not in names and "f28" not in names and len(names) == 30
