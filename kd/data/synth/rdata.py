"""A minimal reader for R's serialisation format and lazy-load databases (``Rdata.rdx``/``Rdata.rdb``).

R packages keep their data sets in a lazy-load database: ``Rdata.rdx`` is a gzip-compressed serialised index
mapping each variable name to an (offset, length) slice of ``Rdata.rdb``, and each slice is one serialised
object compressed with zlib, bzip2 or xz. Reading them here lets the text stage take public-domain books
out of Debian's R packages without installing R. Only what plain data sets are made of is decoded: atomic
vectors, lists, attributes (pair lists), symbols and references to them; anything else is an error.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# SEXP type codes of R's serialisation format (R's src/main/serialize.c).
_NILSXP, _SYMSXP, _LISTSXP, _CHARSXP, _LGLSXP, _INTSXP, _REALSXP = 0, 1, 2, 9, 10, 13, 14
_STRSXP, _VECSXP, _EXPRSXP = 16, 19, 20
_REFSXP, _NILVALUE_SXP, _GLOBALENV_SXP, _EMPTYENV_SXP, _BASEENV_SXP = 255, 254, 253, 242, 241
_NA_INT = -(2**31)
_HAS_ATTR, _HAS_TAG = 1 << 9, 1 << 10


class RDataError(ValueError):
    """A file that is not R serialisation this reader understands."""


@dataclass
class RObject:
    """An R vector that carries attributes (e.g. ``names``)."""

    value: Any
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RSymbol:
    name: str


class _Reader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source
        self.refs: list[Any] = []

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise RDataError(f"{self.source}: truncated R serialisation at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two 32-bit halves follow
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def header(self) -> None:
        fmt = self._take(2)
        if fmt != b"X\n":
            raise RDataError(f"{self.source}: only XDR R serialisation is supported, found {fmt!r}")
        version = self.int()
        self.int()  # R version that wrote it
        self.int()  # oldest R version that can read it
        if version == 3:
            self._take(self.int())  # native encoding name
        elif version != 2:
            raise RDataError(f"{self.source}: unsupported R serialisation version {version}")

    def item(self) -> Any:
        flags = self.int()
        kind = flags & 0xFF
        if kind in (_NILVALUE_SXP, _NILSXP, _GLOBALENV_SXP, _EMPTYENV_SXP, _BASEENV_SXP):
            return None
        if kind == _REFSXP:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == _SYMSXP:
            sym = RSymbol(self.item())
            self.refs.append(sym)
            return sym
        if kind == _LISTSXP:
            return self._pairlist(flags)
        if kind == _CHARSXP:
            n = self.int()
            return None if n == -1 else self._take(n).decode("utf-8", errors="replace")
        if kind in (_LGLSXP, _INTSXP):
            n = self.length()
            values = [None if v == _NA_INT else v for v in struct.unpack(f">{n}i", self._take(4 * n))]
        elif kind == _REALSXP:
            n = self.length()
            values = list(struct.unpack(f">{n}d", self._take(8 * n)))
        elif kind in (_STRSXP, _VECSXP, _EXPRSXP):
            values = [self.item() for _ in range(self.length())]
        else:
            raise RDataError(f"{self.source}: unsupported R object type {kind} at byte {self.pos - 4}")
        if flags & _HAS_ATTR:
            return RObject(values, self._attributes(self.item()))
        return values

    def _pairlist(self, flags: int) -> list[tuple[str | None, Any]]:
        """A pair list as (tag, value) pairs, read along its CDR chain iteratively."""
        out: list[tuple[str | None, Any]] = []
        while True:
            if flags & _HAS_ATTR:
                self.item()
            tag = self.item() if flags & _HAS_TAG else None
            out.append((tag.name if isinstance(tag, RSymbol) else tag, self.item()))
            flags = self.int()
            if flags & 0xFF != _LISTSXP:
                self.pos -= 4
                if self.item() is not None:
                    raise RDataError(f"{self.source}: pair list ends in a non-NULL value")
                return out

    def _attributes(self, pairs: Any) -> dict[str, Any]:
        if not isinstance(pairs, list):
            raise RDataError(f"{self.source}: attributes are not a pair list")
        return {str(tag): value for tag, value in pairs}


def unserialize(data: bytes, source: str = "<bytes>") -> Any:
    """Decode one R-serialised object (the bytes after decompression)."""
    reader = _Reader(data, source)
    reader.header()
    return reader.item()


def read_rds(path: str | Path) -> Any:
    """Read an ``.rds`` file (gzip, bzip2, xz or uncompressed)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    elif raw[:3] == b"BZh":
        raw = bz2.decompress(raw)
    elif raw[:6] == b"\xfd7zXZ\x00":
        raw = lzma.decompress(raw)
    return unserialize(raw, str(path))


def _lazyload_slice(blob: bytes, source: str) -> bytes:
    """Decompress one slice: a 4-byte big-endian length, then zlib data, or a type byte (Z xz, 2 bzip2,
    0 none) and the data."""
    if len(blob) < 5:
        raise RDataError(f"{source}: lazy-load slice too short")
    size = struct.unpack(">I", blob[:4])[0]
    kind, body = blob[4:5], blob[5:]
    if kind == b"Z":
        out = lzma.decompress(body)
    elif kind == b"2":
        out = bz2.decompress(body)
    elif kind == b"0":
        out = body
    else:
        out = zlib.decompress(blob[4:])
    if len(out) != size:
        raise RDataError(f"{source}: lazy-load slice decompressed to {len(out)} bytes, expected {size}")
    return out


def _named(obj: Any, source: str) -> dict[str, Any]:
    if isinstance(obj, RObject) and "names" in obj.attributes:
        return dict(zip(obj.attributes["names"], obj.value))
    raise RDataError(f"{source}: expected a named R list")


def read_lazyload_db(prefix: str | Path) -> dict[str, Any]:
    """Every variable of an R lazy-load database, given its path without extension (``.../data/Rdata``)."""
    prefix = Path(prefix)
    rdx, rdb = prefix.with_suffix(".rdx"), prefix.with_suffix(".rdb")
    for p in (rdx, rdb):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing R lazy-load file (unpack the Debian package: dpkg -x)")
    variables = _named(_named(read_rds(rdx), str(rdx))["variables"], str(rdx))
    blob = rdb.read_bytes()
    out: dict[str, Any] = {}
    for name, span in variables.items():
        offset, length = (int(v) for v in (span.value if isinstance(span, RObject) else span))
        out[name] = unserialize(_lazyload_slice(blob[offset : offset + length], str(rdb)), f"{rdb}:{name}")
    return out
