"""The chunk-size lines of a chunked request body, measured (RFC 9112 §7.1.1: a server
ought to limit the total length of the chunk extensions it receives).

llhttp (httptools 0.9) checks the syntax of chunk extensions but gives Python neither the
extensions nor any position in the input. It does give every data byte (``on_body``) and
the end of every chunk (``on_chunk_complete``: at the LF after a chunk's data; for the last
chunk, after the trailer section). With the bytes of the read that is enough, because
llhttp refuses a bare CR or LF, and a CR or LF in a quoted extension value, so a
chunk-size line holds one LF, its last byte: a line starts after an LF and ends at the
next one; then come exactly as many data bytes as ``on_body`` was given; then CRLF.

So a body is walked read by read, from where the previous read left it. Only in the read
where the body begins must the start be found: right after the head's last LF, followed by
the first chunk-size line, which starts with hex digits and then ``;``, CR or the end of
the read. No line of a valid head starts so (a field line is a token and ``:``), so when no
other message ended earlier in that read, the first such place is where the body begins.
When one did (pipelined requests), the bodies before could hold look-alikes: every such
place is tried, and each walk that fits the chunk ends so far goes on, held to the syntax
of chunk-size lines and of a trailer section llhttp itself would have refused otherwise;
the limits hold for each (so a look-alike never hides the real body's lines). Only the real
one fits once the read ends: look-alikes are only found in bytes made to look so.

Measured, per body: the longest chunk-size line (size digits, extensions, CRLF), the
extension bytes of all its lines (from each line's first ``;`` to its CRLF) and the bytes
of its trailer section. A line still open at the end of a read counts what has come, so a
line that never ends is cut at the first read that takes it past the limit.
"""

from __future__ import annotations

import re
from itertools import islice

from apiward.errors import WireError

LINE, DATA = 0, 1
"""Where a walk stands: in a chunk-size line; after one (the chunk's data and its CRLF,
or the trailer section after the last chunk's line)."""

_CR = 13
_SIZE = re.compile(rb"[0-9A-Fa-f]++(?:[;\r]|\Z)")  # how a chunk-size line begins
_LAST = re.compile(rb"0++[;\r]")  # ... the last chunk's
_BODY_START = re.compile(rb"\n(?=[0-9A-Fa-f]++(?:[;\r]|\Z))")
STARTS = 1024
"""Places tried where a pipelined request's body may begin in one read; more: refused."""
WALKS = 16
"""Walks that may fit a pipelined request's body at the end of a read; more: refused."""


class Walk:
    """How far one body has been walked, and what was measured on the way."""

    __slots__ = ("cr", "extensions", "kind", "line", "line_mark", "longest", "longest_ext",
                 "mark", "semi", "trailer")

    def __init__(self) -> None:
        self.kind = LINE
        self.line = 0  # bytes of the current chunk-size line so far
        self.semi = -1  # offset of its first ";" (its extensions start there); -1: none yet
        self.cr = False  # LINE: the open line's last byte is CR; DATA: the CR after the data
        self.mark = 0  # body bytes received where the walk stands
        self.line_mark = 0  # body bytes received when the current chunk's line ended
        self.extensions = 0  # extension bytes of the body's ended lines
        self.longest = 0  # the longest line, an open one counting what has come
        self.longest_ext = False  # whether that line has extensions
        self.trailer = 0  # bytes of the trailer section so far

    def _count(self, data: bytes, pos: int, end: int) -> None:
        if self.semi < 0:
            semi = data.find(b";", pos, end)
            if semi >= 0:
                self.semi = self.line + semi - pos
        self.line += end - pos
        if self.line > self.longest:
            self.longest = self.line
            self.longest_ext = self.semi >= 0

    def _end_line(self, data: bytes, pos: int, end: int) -> int:
        self._count(data, pos, end)
        if self.semi >= 0:
            self.extensions += self.line - 2 - self.semi
        self.kind = DATA
        self.line_mark = self.mark
        self.cr = False
        return end

    def open_extensions(self) -> int:
        """Extension bytes of a line not ended yet."""
        if self.kind != LINE or self.semi < 0:
            return 0
        return self.line - self.semi - self.cr

    def read(self, data: bytes, pos: int, ends: list[int], received: int, whole: bool,
             strict: bool = False) -> bool:
        """Walk ``data[pos:]``: the chunks of this read ended with ``ends`` body bytes
        received; then, if ``whole``, the last of them ended the body, else the read ends
        inside it with ``received`` body bytes. False: these bytes cannot be this body.
        ``strict``: also check what llhttp checked (for a walk that may be a look-alike)."""
        for index, end in enumerate(ends):
            begin = -1  # where the chunk's line began, if in this read
            if self.kind == LINE:
                if not self.line:
                    begin = pos
                    if strict and _SIZE.match(data, pos) is None:
                        return False
                lf = data.find(b"\n", pos)
                if lf < 0:
                    return False
                pos = self._end_line(data, pos, lf + 1)
            if end == self.line_mark:  # no data: the last chunk, ended after its trailers
                if strict and begin >= 0 and _LAST.match(data, begin) is None:
                    return False
                return whole and index == len(ends) - 1
            pos += end - self.mark
            if self.cr:
                if data[pos:pos + 1] != b"\n":
                    return False
                pos += 1
            elif data[pos:pos + 2] == b"\r\n":
                pos += 2
            else:
                return False
            self.kind = LINE
            self.line = 0
            self.semi = -1
            self.cr = False
            self.mark = end
        if whole:
            return False
        size = len(data)
        if self.kind == LINE:
            if strict and not self.line and pos < size and _SIZE.match(data, pos) is None:
                return False
            lf = data.find(b"\n", pos)
            if lf < 0:  # the line goes on in the next read
                if size > pos:
                    self._count(data, pos, size)
                    self.cr = data[-1] == _CR
                return received == self.mark
            pos = self._end_line(data, pos, lf + 1)
        if received == self.line_mark:  # none of the chunk's data: its trailer section
            if strict and pos and data.find(b"\n\r\n", pos - 1) >= 0:
                return False  # (it would have ended there)
            self.trailer += size - pos  # (for the last chunk), or nothing yet
            return True
        pos += received - self.mark
        self.mark = received
        if pos == size:
            return True
        if pos == size - 1 and not self.cr and data[pos] == _CR:
            self.cr = True
            return True
        return False


def body_starts(data: bytes, pipelined: bool) -> list[int]:
    """Where in ``data`` (a read in which a request head ended) its body may begin."""
    if not pipelined:
        found = _BODY_START.search(data)
        return [found.end() if found is not None else data.rfind(b"\n") + 1]
    starts = [found.end() for found in islice(_BODY_START.finditer(data), STARTS + 1)]
    if len(starts) > STARTS:
        raise _unclear()
    last = data.rfind(b"\n") + 1  # the body's bytes so far: a size without ";" or CR yet
    if last not in starts:
        starts.append(last)
    return starts


class ChunkMeter:
    """Measures one chunked request body read by read; raises WireError past a limit.

    ``chunk_end`` is told of every chunk end during a read; ``read`` walks the read at its
    end, or where the body ended (before anything acts on the whole body).
    """

    __slots__ = ("ends", "extensions_size", "last_end", "line_size", "owner", "trailer_size",
                 "walks")

    def __init__(self, owner: object, line_size: int, extensions_size: int,
                 trailer_size: int) -> None:
        self.owner = owner  # whose body this is (the server's call)
        self.line_size = line_size
        self.extensions_size = extensions_size
        self.trailer_size = trailer_size
        self.ends: list[int] = []  # body bytes received at each chunk end in this read
        self.last_end = 0  # body bytes received at the chunk end before
        self.walks: list[Walk] = []  # empty until the read where the body began is walked

    def chunk_end(self, received: int) -> bool:
        """A chunk ended with ``received`` body bytes; True if it was the last one."""
        self.ends.append(received)
        last = received == self.last_end  # only the last chunk has no data
        self.last_end = received
        return last

    def read(self, data: bytes, received: int, whole: bool, pipelined: bool) -> None:
        """Walk the read ``data``: it ends inside the body with ``received`` body bytes, or
        the body ended in it (``whole``). ``pipelined``: another message ended earlier in
        this read (only matters in the read where the body began)."""
        ends, self.ends = self.ends, []
        walks = self.walks
        if not walks:  # the body began in this read
            for start in body_starts(data, pipelined):
                walk = Walk()
                if walk.read(data, start, ends, received, whole, pipelined):
                    walks.append(walk)
        elif len(walks) == 1:
            if not walks[0].read(data, 0, ends, received, whole):
                walks.clear()
        else:
            walks[:] = [walk for walk in walks
                        if walk.read(data, 0, ends, received, whole, True)]
        if not walks or (len(walks) > WALKS and not whole):
            raise _unclear()
        for walk in walks:
            if walk.longest > self.line_size:
                if walk.longest_ext:
                    raise WireError(400, "chunk_extension_too_large",
                                    "a chunk's extensions are too large")
                raise WireError(400, "chunk_size_too_long", "a chunk-size line is too long")
            if walk.extensions + walk.open_extensions() > self.extensions_size:
                raise WireError(400, "chunk_extension_too_large",
                                "the chunk extensions of the request body are too large")
            if walk.trailer > self.trailer_size:
                raise WireError(431, "trailer_section_too_large",
                                "the trailer section of the request body is too large")


def _unclear() -> WireError:
    return WireError(400, "unclear_chunked_body",
                     "the chunked request body cannot be read one way only")
