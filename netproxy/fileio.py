"""Writing files atomically: a reader sees the old content or the new, never half of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from netproxy.errors import NetproxyError
from netproxy.textsafe import KEEP_BYTES


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, text: str | Iterable[str]) -> None:
    """Write ``text`` (a string, or pieces of one) to ``path`` through a temporary file in the
    same folder and a rename.

    The file gets the permissions a plain ``open(path, "w")`` would give it (0666 less the
    umask), not the private mode of the temporary file. Failures are one-line errors naming
    the path; the temporary file is removed.
    """
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as err:
        raise NetproxyError(f"cannot write: {err.strerror or err}", where=str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors=KEEP_BYTES) as handle:
            if isinstance(text, str):
                handle.write(text)
            else:
                handle.writelines(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise NetproxyError(f"cannot write: {err.strerror or err}", where=str(path)) from None
        raise
