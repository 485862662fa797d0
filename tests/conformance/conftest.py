"""Records each Part 6 case's outcome for `tools/conformance_report.py`.

A test named `test_TC_X_NN` (optionally `test_TC_X_NN_<detail>`) belongs to case TC_X_NN.
With CONFORMANCE_RESULTS=FILE in the environment, the outcome of every such test (passed, failed, or
skipped with its reason: "not applicable: ...") is written there as JSON when the session
ends. Under pytest-xdist the controller sees every worker's reports and writes the file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

CASE = re.compile(r"^test_(TC_[A-Z]_\d+)")


class _Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: dict[str, list[dict]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.rsplit("::", 1)[-1]
        match = CASE.match(name)
        if not match:
            return
        if report.when == "call" or report.outcome != "passed":
            outcome = report.outcome
            reason = ""
            if report.skipped and hasattr(report, "wasxfail"):
                outcome, reason = "xfail", report.wasxfail   # a known deviation, not N/A
            elif report.skipped and isinstance(report.longrepr, tuple):
                reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            elif report.failed:
                reason = f"{report.when}: {report.longreprtext.strip().splitlines()[-1]}" \
                    if report.longreprtext else report.when
            self.results.setdefault(match.group(1), []).append(
                {"test": name, "outcome": outcome, "reason": reason})

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.path.write_text(json.dumps(self.results, indent=1, sort_keys=True) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    target = os.environ.get("CONFORMANCE_RESULTS")
    if target and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Recorder(Path(target)), "conformance-recorder")
