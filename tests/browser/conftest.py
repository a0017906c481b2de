"""The browser test group (`make test-browser`): Debian's chromium + chromedriver driven by selenium.

It runs only with SELFIMPROVE_BROWSER=1 (set by `make test-browser`; it takes minutes), and then a missing
piece fails the run; elsewhere (`make test`) the group is skipped.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [
        what
        for what, ok in (
            ("chromium", os.path.exists(CHROMIUM)),
            ("chromedriver", os.path.exists(CHROMEDRIVER)),
            ("selenium", importlib.util.find_spec("selenium") is not None),
        )
        if not ok
    ]
    if os.environ.get("SELFIMPROVE_BROWSER") == "1":
        if missing:
            raise pytest.UsageError(f"browser tests need {', '.join(missing)} (make test-browser installs them)")
        return
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason="the browser group runs with `make test-browser`"))
