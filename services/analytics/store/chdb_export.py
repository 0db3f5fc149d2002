"""chdb's streamed results, made one document again.

chdb formats every block of a streamed result on its own: a CSVWithNames export over several
blocks (several parts, FINAL, or more than a block of rows) repeats its header line in every
chunk, and a Parquet export is a run of complete Parquet files one after the other, which no
reader opens. ClickHouse server streams one document; these two helpers make chdb's chunks
into the same thing without holding the whole export in memory.
"""
from __future__ import annotations

import io
from collections.abc import AsyncIterator


async def one_csv(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """CSVWithNames chunks with the header line kept only at the start."""
    header: bytes | None = None
    async for chunk in chunks:
        if header is None:
            header = chunk[:chunk.find(b"\n") + 1] if b"\n" in chunk else chunk
            yield chunk
        elif chunk.startswith(header):
            rest = chunk[len(header):]
            if rest:
                yield rest
        else:
            yield chunk


class _Drain(io.RawIOBase):
    """A write-only sink whose bytes are taken away as they come (for a streaming writer)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # noqa: ANN001 - bytes-like
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


async def one_parquet(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Parquet files (one per chunk) rewritten as one file, a row group per chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    drain, writer = _Drain(), None
    try:
        async for chunk in chunks:
            table = pq.read_table(pa.BufferReader(chunk))
            if writer is None:
                writer = pq.ParquetWriter(drain, table.schema, compression="zstd")
            writer.write_table(table)
            if out := drain.take():
                yield out
        if writer is not None:
            writer.close()
            writer = None
            yield drain.take()
    finally:
        if writer is not None:  # a download cut short: close without yielding
            writer.close()
