"""docs/conformance.md: generated from a run of tests/conformance, never by hand."""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import conformance_report as report  # noqa: E402

CASES = json.loads((ROOT / "tests" / "conformance" / "cases.json").read_text())


def test_every_core_case_has_exactly_one_row_in_the_report():
    text = (ROOT / "docs" / "conformance.md").read_text()
    rows = re.findall(r"^\| (TC_[A-Z]_\d+) \|", text, re.M)
    assert rows == [c["id"] for c in CASES]


def test_case_list_applies_the_errata():
    by_id = {c["id"]: c for c in CASES}
    assert "TC_B_08" not in by_id                    # removed (errata 5.1.1)
    assert by_id["TC_E_39"]["station"] == "M"        # errata 5.1.6
    assert by_id["TC_B_50"]["station"] == "M"        # errata 5.1.2
    assert by_id["TC_F_04"]["station"] == "C"        # errata 5.1.7


def test_verdicts():
    passed = {"test": "test_TC_X_1", "outcome": "passed", "reason": ""}
    na = {"test": "test_TC_X_1", "outcome": "skipped", "reason": "not applicable: no bay sensor"}
    other_skip = {"test": "test_TC_X_1", "outcome": "skipped", "reason": "needs root"}
    failed = {"test": "test_TC_X_1_b", "outcome": "failed", "reason": "call: AssertionError"}
    assert report.verdict(None) == ("no test", "")
    assert report.verdict([passed]) == ("pass", "")
    assert report.verdict([na]) == ("not applicable", "no bay sensor")
    assert report.verdict([other_skip])[0] == "skipped"      # a skip is not N/A
    assert report.verdict([passed, failed])[0] == "FAIL"
    known = {"test": "test_TC_X_1", "outcome": "xfail", "reason": "evse missing"}
    assert report.verdict([known]) == ("FAIL", "test_TC_X_1: evse missing")
    # A case run two ways passes when one way applies and passes.
    assert report.verdict([passed, na]) == ("pass", "")


def test_rendered_summary_counts_mandatory_passes(tmp_path):
    cases = [{"id": "TC_A_01", "title": "a", "station": "M"},
             {"id": "TC_A_02", "title": "b", "station": "C"}]
    text = report.render(cases, {"TC_A_01": [{"test": "test_TC_A_01", "outcome": "failed",
                                              "reason": "x | y"}]}, "now")
    assert "Mandatory: 0 of 1 pass" in text
    assert "| TC_A_01 | a | Mandatory | FAIL | test_TC_A_01: x \\| y |" in text
    assert "| TC_A_02 | b | Conditional | no test |  |" in text
