"""Is a whole HTTP/1.1 request here yet? Decided from the bytes received so far.

The server's worker (commissaire_http.worker) reads connections without blocking
and hands a request to a thread only once this says it is complete, so a client
that sends half a request holds no thread. The checks are incremental (each
byte is looked at about once), the head is capped at HEAD_LIMIT, the body at the
configured maximum (a chunked body by its decoded size, and its encoding by
max_body + HEAD_LIMIT), and framing that gunicorn and we might read differently
(Content-Length with Transfer-Encoding, two lengths, bare LF) is refused.
"""
from __future__ import annotations

import re
from typing import Literal

from commissaire import errors
from commissaire_http.limits import too_large

HEAD_LIMIT = 64 * 1024
MORE: Literal["more"] = "more"
COMPLETE: Literal["complete"] = "complete"
Outcome = Literal["more", "complete"] | errors.CommissaireError

# A chunk-size line is accepted only if gunicorn's ChunkedReader (gunicorn/http/body.py)
# would accept it too, else one request could yield two answers (the app's, then
# gunicorn's 400): 1 to 16 hex digits, then optionally extensions validated exactly
# as gunicorn's CHUNK_EXT_RE does (RFC 9112 7.1.1: ";" token ["=" token /
# quoted-string], optional blanks around ";" and "="); nothing else (no blank before
# the size, none after it without an extension, no bare ";"). Never looser than
# gunicorn; stricter only on the line's length. A copy rather than an import: gunicorn keeps the pattern private.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED_STRING = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*" + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED_STRING + rb"))?)*")
CHUNK_LINE_LIMIT = 1024  # gunicorn refuses lines over limit_request_field_size (8190)


def _bad(why: str) -> errors.ValidationError:
    return errors.ValidationError(f"malformed HTTP request: {why}")


def _bare_lf(buf: bytearray, start: int, stop: int) -> bool:
    """Whether a LF in buf[start:stop] is not preceded by CR."""
    i = buf.find(b"\n", start, stop)
    while i >= 0:
        if i == 0 or buf[i - 1] != 0x0D:
            return True
        i = buf.find(b"\n", i + 1, stop)
    return False


class RequestFramer:
    def __init__(self, max_body: int, data: bytes = b"") -> None:
        self.max_body = max_body
        self.buf = bytearray(data)
        self.expects_continue = False  # the head asked for "100 Continue"
        self._searched = 0  # the head's end was looked for up to here
        self._body = -1  # where the body starts, once the head is complete
        self._length = 0  # Content-Length
        self._chunked = False
        self._pos = 0  # chunked: the next chunk-size line (or trailer line)
        self._decoded = 0  # chunked: body bytes so far
        self._trailers = False

    def feed(self, data: bytes) -> None:
        self.buf += data

    @property
    def started(self) -> bool:
        return bool(self.buf)

    def examine(self) -> Outcome:
        if self._body < 0:
            outcome = self._head()
            if outcome is not None:
                return outcome
        if self._chunked:
            return self._chunks()
        return COMPLETE if len(self.buf) - self._body >= self._length else MORE

    def _head(self) -> Outcome | None:
        buf = self.buf
        start = 2 if buf[:2] == b"\r\n" else 0  # one empty line may precede (RFC 9112 2.2)
        end = buf.find(b"\r\n\r\n", max(start, self._searched - 3))
        if _bare_lf(buf, max(start, self._searched), end + 2 if end >= 0 else len(buf)):
            return _bad("lines must end with CRLF")
        self._searched = len(buf)
        if end < 0:
            return errors.HeaderTooLarge(f"the request head is larger than {HEAD_LIMIT} bytes") \
                if len(buf) - start > HEAD_LIMIT else MORE
        if end - start > HEAD_LIMIT:
            return errors.HeaderTooLarge(f"the request head is larger than {HEAD_LIMIT} bytes")
        lengths: list[bytes] = []
        codings: list[bytes] = []
        lines = bytes(buf[start:end]).split(b"\r\n")
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip(b" \t")
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings += [c.strip(b" \t").lower() for c in value.split(b",")]
            elif name == b"expect" and value.lower() == b"100-continue":
                self.expects_continue = True
        self._body = end + 4
        if codings:
            if lengths:
                return _bad("both Content-Length and Transfer-Encoding")
            if codings != [b"chunked"]:
                return _bad("the only Transfer-Encoding accepted is chunked")
            self._chunked, self._pos = True, self._body
            return None
        if lengths:
            if len(lengths) > 1 or not lengths[0].isdigit():
                return _bad("Content-Length must be one decimal number")
            self._length = int(lengths[0])
            if self._length > self.max_body:
                return too_large(self.max_body)
        return None

    def _chunks(self) -> Outcome:
        buf = self.buf
        if len(buf) - self._body > self.max_body + HEAD_LIMIT:
            return too_large(self.max_body)
        while True:
            eol = buf.find(b"\r\n", self._pos)
            limit = HEAD_LIMIT if self._trailers else CHUNK_LINE_LIMIT
            if eol - self._pos > limit:
                return _bad("a chunk-size or trailer line is too long")
            if eol < 0:
                if len(buf) - self._pos > limit:
                    return _bad("a chunk-size or trailer line is too long")
                return MORE
            if self._trailers:
                if eol == self._pos:
                    return COMPLETE
                self._pos = eol + 2
                continue
            line = _CHUNK_LINE.fullmatch(bytes(buf[self._pos:eol]))
            if line is None:
                return _bad("invalid chunk-size line")
            size = int(line.group(1), 16)
            self._decoded += size
            if self._decoded > self.max_body:
                return too_large(self.max_body)
            if size == 0:
                self._trailers, self._pos = True, eol + 2
                continue
            data_end = eol + 2 + size
            if len(buf) < data_end + 2:
                return MORE
            if buf[data_end:data_end + 2] != b"\r\n":
                return _bad("a chunk is not followed by CRLF")
            self._pos = data_end + 2
