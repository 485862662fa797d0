"""A small file replaced so that a power cut leaves the old content or the new, whole.

The new content goes to a temporary file beside it, is fsynced, renamed over the old one,
and the directory is fsynced: without that last step the rename itself may not reach the
disk before a cut, and the next boot finds the old file (a meter register gone back, an
installed firmware version forgotten).
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_durably(path: Path, text: str) -> None:
    """Replace `path` with `text`. Raises OSError (the old content is then still there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
