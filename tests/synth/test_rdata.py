"""The R serialisation reader, on blobs written here byte by byte after R's XDR format."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import pytest

from kd.data.synth.rdata import RDataError, RObject, read_lazyload_db, read_rds, unserialize


class _Writer:
    """Writes the part of R's XDR format the reader is tested on; repeated symbols become references."""

    def __init__(self) -> None:
        self.symbols: list[str] = []

    @staticmethod
    def int(i: int) -> bytes:
        return struct.pack(">i", i)

    def char(self, s: str) -> bytes:
        b = s.encode()
        return self.int(9 | (8 << 12)) + self.int(len(b)) + b  # CHARSXP, UTF-8 flag in the levels

    def symbol(self, name: str) -> bytes:
        if name in self.symbols:
            return self.int(255 | ((self.symbols.index(name) + 1) << 8))  # REFSXP
        self.symbols.append(name)
        return self.int(1) + self.char(name)

    def names_attr(self, names: list[str]) -> bytes:
        return self.int(2 | (1 << 10)) + self.symbol("names") + self.strings(names) + self.int(254)

    def strings(self, values: list[str | None], names: list[str] | None = None) -> bytes:
        flags = 16 | ((1 << 9) if names else 0)
        body = b"".join(self.int(9) + self.int(-1) if v is None else self.char(v) for v in values)
        return self.int(flags) + self.int(len(values)) + body + (self.names_attr(names) if names else b"")

    def ints(self, values: list[int]) -> bytes:
        return self.int(13) + self.int(len(values)) + b"".join(self.int(v) for v in values)

    def named_list(self, items: dict[str, bytes]) -> bytes:
        return (
            self.int(19 | (1 << 9))
            + self.int(len(items))
            + b"".join(items.values())
            + self.names_attr(list(items))
        )

    @staticmethod
    def header() -> bytes:
        return b"X\n" + struct.pack(">iii", 3, 0x40201, 0x30500) + struct.pack(">i", 5) + b"UTF-8"


def test_unserialize_vectors_attributes_and_references() -> None:
    w = _Writer()
    blob = w.header() + w.named_list(
        {
            "books": w.strings(["Emma", None, "Persuasion"], names=["a", "b", "c"]),
            "years": w.ints([1815, -(2**31)]),
        }
    )
    obj = unserialize(blob)
    assert isinstance(obj, RObject)
    assert obj.attributes["names"] == ["books", "years"]
    books, years = obj.value
    assert books.value == ["Emma", None, "Persuasion"] and books.attributes["names"] == ["a", "b", "c"]
    assert years == [1815, None]  # NA_integer_


def test_unserialize_rejects_other_formats() -> None:
    with pytest.raises(RDataError, match="XDR"):
        unserialize(b"A\n1\n")
    with pytest.raises(RDataError, match="truncated"):
        unserialize(_Writer.header() + struct.pack(">ii", 16, 3))


def test_lazyload_db_and_rds(tmp_path: Path) -> None:
    w = _Writer()
    objects = {
        "emma": w.header() + w.strings(["EMMA", "", "By Jane Austen"]),
        "moby": w.header() + w.strings(["Call me Ishmael."]),
    }
    rdb, spans = b"", {}
    for name, blob in objects.items():
        chunk = struct.pack(">I", len(blob)) + zlib.compress(blob)
        spans[name] = (len(rdb), len(chunk))
        rdb += chunk
    w2 = _Writer()
    index = w2.header() + w2.named_list(
        {
            "variables": w2.named_list({k: w2.ints(list(v)) for k, v in spans.items()}),
            "compressed": w2.ints([1]),
        }
    )
    (tmp_path / "Rdata.rdb").write_bytes(rdb)
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(index))
    data = read_lazyload_db(tmp_path / "Rdata")
    assert data == {"emma": ["EMMA", "", "By Jane Austen"], "moby": ["Call me Ishmael."]}
    assert read_rds(tmp_path / "Rdata.rdx").attributes["names"] == ["variables", "compressed"]
    with pytest.raises(FileNotFoundError, match="dpkg -x"):
        read_lazyload_db(tmp_path / "Missing")
