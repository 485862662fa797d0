"""The safety monitor on every test (tests/safety_monitor.py).

Each test gets its own transition log through STATION_AGENT_TRANSITION_LOG, which every
mock station (and supervisor over real drivers) the test builds writes to, in this process
and in agent processes it starts (they inherit the environment). After the test the log
is checked: an invariant broken fails the test, with the transition that broke it. A test
that breaks one on purpose says which with `@pytest.mark.breaks_safety("<invariant>",
reason="...")`; it must then break exactly those. A test that wants the transitions
itself asks for the `safety_monitor` fixture: the log's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from hal.drivers.mock.recorder import ENV_VAR
from tests.safety_monitor import INVARIANTS, Violation, check_file

LOG = pytest.StashKey[Path]()
EXPECTED = pytest.StashKey[frozenset]()
REPORTED = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "breaks_safety(*invariants, reason): the test breaks these safety "
        f"invariants on purpose ({', '.join(INVARIANTS)}); the monitor demands exactly them")


@pytest.fixture(autouse=True)
def safety_monitor(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("safety") / "transitions.jsonl"
    monkeypatch.setenv(ENV_VAR, str(log))
    marker = request.node.get_closest_marker("breaks_safety")
    expected = frozenset(marker.args) if marker else frozenset()
    unknown = sorted(expected - set(INVARIANTS))
    if unknown or (marker is not None and not expected):
        pytest.fail(f"breaks_safety names no known invariant ({', '.join(unknown) or 'none'}); "
                    f"known: {', '.join(INVARIANTS)}", pytrace=False)
    request.node.stash[LOG] = log
    request.node.stash[EXPECTED] = expected
    yield log
    # Again after the other fixtures' teardown: an agent they stopped wrote more.
    violations = check_file(log)
    unexpected = _unexpected(violations, expected)
    if len(unexpected) > request.node.stash.get(REPORTED, 0):
        pytest.fail(_report(unexpected), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield        # a test that failed by itself is reported as it is
    log = item.stash.get(LOG, None)
    if log is not None:
        violations = check_file(log)
        expected = item.stash[EXPECTED]
        unexpected = _unexpected(violations, expected)
        item.stash[REPORTED] = len(unexpected)
        if unexpected:
            pytest.fail(_report(unexpected), pytrace=False)
        missing = expected - {v.invariant for v in violations}
        if missing:
            pytest.fail(f"marked breaks_safety({', '.join(sorted(missing))}) but the monitor "
                        "saw no such violation: remove the mark, or the test no longer tests "
                        "it", pytrace=False)
    return result


def _unexpected(violations: list[Violation], expected: frozenset) -> list[Violation]:
    return [v for v in violations if v.invariant not in expected]


def _report(violations: list[Violation]) -> str:
    shown = "\n".join(str(v) for v in violations[:10])
    more = f"\n... and {len(violations) - 10} more" if len(violations) > 10 else ""
    return (f"safety monitor: {len(violations)} violation(s) of the hardware invariants "
            f"(tests/safety_monitor.py):\n{shown}{more}")
