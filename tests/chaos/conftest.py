"""The chaos suite runs against its own Kafka and PostgreSQL (started by
scripts/kafka.sh and scripts/pg.sh like the e2e session's, but restarted
and killed by the test), with the e2e helpers of tests/e2e/kjbtest.py.

    pytest tests/chaos                      # the bounded CI run (120 s)
    pytest tests/chaos --chaos-seconds 1800 # a longer run: the fault cycle repeats
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-seconds", type=float,
        default=float(os.environ.get("KJB_CHAOS_SECONDS", "120")),
        help="how long records are produced while faults are injected (default 120, "
             "or $KJB_CHAOS_SECONDS); the fault cycle repeats every 110 s")


@pytest.fixture
def chaos_seconds(request: pytest.FixtureRequest) -> float:
    return request.config.getoption("--chaos-seconds")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The ini's timeout fits the CI run; a longer run gets its length plus
    # the same margin for start-up and settling.
    seconds = config.getoption("--chaos-seconds")
    for item in items:
        item.add_marker(pytest.mark.timeout(max(3600, seconds + 1800)))
