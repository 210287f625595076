"""Reading OHLCV files as a stream of rows, without loading them whole: CSV and JSON Lines
line by line, a JSON array item by item. Each row carries its line number; a line that
cannot be read (not UTF-8, a NUL byte, too long, not JSON) comes as a refused row, and the
reading goes on. A JSON array that is not valid JSON cannot be resumed: UnknownLayout."""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import BinaryIO, Literal

from app.marketdata.domain.layouts import UnknownLayout

Format = Literal["csv", "json"]
MAX_LINE = 64 * 1024  # bytes; an OHLCV line is well under 1 KiB
CHUNK = 1024 * 1024
MAX_ITEM = 16 * 1024 * 1024  # characters of one JSON array item
DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the file: its fields (a list, or a JSON object), or why it was refused."""

    line: int
    fields: list[object] | dict[str, object] | None = None
    refused: str | None = None


Progress = Callable[[int], None]  # bytes read so far


def detect_format(stream: BinaryIO) -> Format:
    """JSON when the first character that is not blank opens an array or an object."""
    head = stream.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    stream.seek(0)
    return "json" if head[:1] in (b"[", b"{") else "csv"


def _lines(stream: BinaryIO, progress: Progress) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the line end); None for a line longer than MAX_LINE."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while (rest := stream.readline(CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, line.rstrip(b"\r\n")
        if number % 4096 == 0:
            progress(stream.tell())


def _text(number: int, raw: bytes | None) -> str | Row:
    """The line as text, or the refused row."""
    if raw is None:
        return Row(number, refused=f"line longer than {MAX_LINE} bytes")
    if b"\x00" in raw:
        return Row(number, refused="NUL byte")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Row(number, refused=f"not UTF-8 (byte 0x{raw[error.start]:02x} at {error.start})")
    return text.removeprefix("\ufeff") if number == 1 else text


def _skipped(text: str) -> bool:
    """Blank lines and comments (``#``; CryptoDataDownload's first line is its URL)."""
    stripped = text.strip()
    return not stripped or stripped.startswith(("#", "http://", "https://"))


def csv_rows(stream: BinaryIO, progress: Progress) -> Iterator[Row]:
    delimiter: str | None = None
    for number, raw in _lines(stream, progress):
        text = _text(number, raw)
        if isinstance(text, Row):
            yield text
            continue
        if _skipped(text):
            continue
        if delimiter is None:
            delimiter = max(DELIMITERS, key=text.count)
        fields: list[object] = [f.strip() for f in next(csv.reader([text], delimiter=delimiter))]
        yield Row(number, fields)
    progress(stream.tell())


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal, parse_constant=str)


def _item(number: int, value: object) -> Row:
    if isinstance(value, list | dict):
        return Row(number, value)
    return Row(number, refused="not an array or object")


def json_rows(stream: BinaryIO, progress: Progress) -> Iterator[Row]:
    """A JSON array of rows (``[[ts, o, h, l, c, v], ...]`` or of objects), or JSON Lines
    (one row per line)."""
    head = stream.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    stream.seek(0)
    if head[:1] == b"[" and head[1:].lstrip()[:1] in (b"[", b"{", b"]"):
        yield from _array_items(stream, progress)
        return
    for number, raw in _lines(stream, progress):
        text = _text(number, raw)
        if isinstance(text, Row):
            yield text
        elif text.strip():
            try:
                yield _item(number, _DECODER.decode(text))
            except json.JSONDecodeError as error:
                yield Row(number, refused=f"not valid JSON: {error.msg} at column {error.colno}")
    progress(stream.tell())


class _Buffer:
    """Text decoded from the stream, read as far as needed; consumed text is dropped."""

    def __init__(self, stream: BinaryIO, progress: Progress) -> None:
        self.stream = stream
        self.progress = progress
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(CHUNK)
        self.eof = not chunk
        self.text = self.text[self.pos :] + self.decoder.decode(chunk, final=self.eof)
        self.pos = 0
        self.progress(self.stream.tell())
        return True

    def skip(self, characters: str) -> str:
        """Skip ``characters``; the next character ('' at the end)."""
        while True:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] in characters:
                self.pos += 1
            self.line += self.text.count("\n", start, self.pos)
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos : self.pos + 1]

    def value(self) -> object:
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as error:
                if len(self.text) - self.pos < MAX_ITEM and self.more():
                    continue
                line = self.line + self.text.count("\n", self.pos, error.pos)
                raise UnknownLayout(f"not valid JSON at line {line}: {error.msg}") from None
            if end == len(self.text) and self.more():
                continue  # a number may go on in the next chunk
            self.line += self.text.count("\n", self.pos, end)
            self.pos = end
            return value


def _array_items(stream: BinaryIO, progress: Progress) -> Iterator[Row]:
    buffer = _Buffer(stream, progress)
    buffer.skip("\ufeff \t\r\n")
    buffer.pos += 1  # the opening [
    first = True
    while True:
        following = buffer.skip(" \t\r\n")
        if following == "]":
            buffer.pos += 1
            break
        if not first:
            if following != ",":
                raise UnknownLayout(f"not valid JSON at line {buffer.line}: ',' or ']' expected")
            buffer.pos += 1
            buffer.skip(" \t\r\n")
        first = False
        line = buffer.line
        yield _item(line, buffer.value())
    if buffer.skip(" \t\r\n"):
        raise UnknownLayout(f"not valid JSON at line {buffer.line}: text after the array")


def rows(stream: BinaryIO, kind: Format, progress: Progress) -> Iterator[Row]:
    return csv_rows(stream, progress) if kind == "csv" else json_rows(stream, progress)
