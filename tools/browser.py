"""The headless browser the book's tools use (tools/build_pdf.py, check_html.py, measure_pages.py).

One setting names it: the environment variable ``CHROMIUM``, a path or a command on ``PATH``
(Chromium or Google Chrome; the GitHub workflows set it to the hosted image's Google Chrome).
Unset, it is ``chromium`` (Debian's package, ``/usr/bin/chromium``).
"""

from __future__ import annotations

import os
import shutil

DEFAULT = "chromium"


class BrowserMissing(RuntimeError):
    pass


def chromium() -> str:
    """Absolute path of the browser named by ``$CHROMIUM`` (default ``chromium``); a clear error if absent."""
    name = os.environ.get("CHROMIUM") or DEFAULT
    path = shutil.which(name)
    if path is None:
        where = f"CHROMIUM={name!r}" if os.environ.get("CHROMIUM") else f"no CHROMIUM set and no {DEFAULT!r} on PATH"
        raise BrowserMissing(
            f"headless browser not found ({where}): set CHROMIUM to a Chromium or Google Chrome binary, "
            "e.g. CHROMIUM=/usr/bin/google-chrome, or install Debian's 'chromium' package")
    return path
