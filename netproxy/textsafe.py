"""Text that is safe to take in and to print: ASCII numbers, cut quotes, escaped bytes.

Used by every layer (like :mod:`netproxy.errors`):

* :func:`digits` — ``str.isdigit`` accepts ``"²"`` and ``"٣"``; ports, prefix lengths and
  counters take ASCII digits only.
* :func:`shown` — the ``repr`` of a value for an error message, cut to a few dozen characters
  and a few levels deep (an alias bomb or a 5,000-character flag is quoted, not echoed).
* :func:`install_output_escapes` — standard output and error print what they cannot encode
  escaped (a Latin-1 byte read from an old dump as ``\\xe9``) instead of raising.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import reprlib
import sys
from pathlib import Path
from typing import Any

MAX_SHOWN = 60
"""How many characters of a bad value an error message quotes."""

_REPR = reprlib.Repr()
_REPR.maxstring = MAX_SHOWN
_REPR.maxother = MAX_SHOWN
_REPR.maxlong = MAX_SHOWN
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits (``int(text)`` then reads them as written)."""
    return text.isdigit() and text.isascii()


def shown(value: Any) -> str:
    """``repr(value)`` for a message: strings and numbers cut to :data:`MAX_SHOWN` characters
    (with ``...`` in the middle), containers to a few items and levels."""
    if isinstance(value, str):
        return repr(cut(value))
    try:
        return _REPR.repr(value)
    except RecursionError:  # pragma: no cover - maxlevel keeps reprlib shallow
        return f"<{type(value).__name__}>"


def cut(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}...({len(text) - 2 * keep} more characters)...{text[-keep:]}"


def _escape(err: UnicodeError) -> tuple[str, int]:
    """Error handler: a byte kept by ``surrogateescape`` prints as ``\\xNN``; any other
    character the stream cannot encode (a lone surrogate, or all of non-ASCII on an ASCII
    terminal) as its ``\\u``/``\\U`` escape."""
    if not isinstance(err, UnicodeEncodeError):
        raise err
    out = []
    for char in err.object[err.start:err.end]:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out), err.end


def _keep_bytes(err: UnicodeError) -> tuple[str | bytes, int]:
    """Error handler for files: bytes kept by ``surrogateescape`` are written back as they were
    read (a dump saved again keeps its bytes); other unencodable characters are escaped."""
    if not isinstance(err, UnicodeEncodeError):
        raise err
    chars = err.object[err.start:err.end]
    if all(0xDC80 <= ord(c) <= 0xDCFF for c in chars):
        return bytes(ord(c) - 0xDC00 for c in chars), err.end
    return _escape(err)


ESCAPE = "netproxy-escape"
KEEP_BYTES = "netproxy-keep-bytes"
codecs.register_error(ESCAPE, _escape)
codecs.register_error(KEEP_BYTES, _keep_bytes)


def install_output_escapes() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` escape what their encoding cannot print."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors != ESCAPE:
            with contextlib.suppress(ValueError, io.UnsupportedOperation):  # closed, detached
                stream.reconfigure(errors=ESCAPE)


def stdin_bytes() -> bytes:
    """Standard input as bytes, whatever the locale (a text stand-in, as in tests, re-encoded)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return bytes(buffer.read())
    return sys.stdin.read().encode("utf-8", "surrogateescape")


def read_input(path: str | Path) -> tuple[str, str]:
    """(text, source name) of the file at ``path``, ``-`` for standard input, read as bytes
    whatever the locale and decoded by :func:`decode_input`; ``OSError`` for the caller to
    turn into its own one-line error."""
    if str(path) == "-":
        return decode_input(stdin_bytes()), "<stdin>"
    return Path(path).read_text(encoding="utf-8", errors="surrogateescape"), str(path)


def decode_input(data: bytes) -> str:
    """The text of a dump read as bytes: UTF-8, other bytes kept (``surrogateescape``) so that
    they survive to the output, where they print escaped."""
    return data.decode("utf-8", "surrogateescape")
