"""A power-cut storm: N kill -9 of the real agent process at random moments of charging
sessions, with link cuts, against the test CSMS; no energy register may go backwards.

The same storm as tests/test_register_power_cut.py (which runs 20 kills in `make test`),
for longer: kills at start-up (the PowerLoss Ended of the open transaction), at a
periodic sample (the Updated commit), as an Updated reaches the CSMS, just after the
session is stopped (the Ended commit) and anywhere while charging; in half the sessions
the CSMS also drops the connection at a random moment (the station reconnects after 1 s
and delivers what it queued). Checked over every frame the CSMS received: seqNo without
gaps, one Ended per transaction, no Updated register below an earlier one, the Ended
event's Transaction.End at least every register reported before, the next session
starting at least where the last one ended, and no register held (the mock meter keeps
its register through the kill). Exit 1 on any violation or schema error.

    .venv/bin/python bench/power_cut_storm.py [--kills 200] [--seed N] [--no-link-cuts]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_register_power_cut import storm, storm_seed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None,
                        help="replay a run (default: REGISTER_STORM_SEED or a random one)")
    parser.add_argument("--no-link-cuts", action="store_true")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else storm_seed()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.platform()}")
    print(f"power-cut storm: {args.kills} kills, link cuts "
          f"{'off' if args.no_link_cuts else 'on'}, seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="power-cut-storm-") as tmp:
        result = asyncio.run(storm(Path(tmp), seed=seed, kills=args.kills,
                                   link_cuts=not args.no_link_cuts))
    for line in result.wrong:
        print("VIOLATION", line)
    for line in result.schema_errors:
        print("SCHEMA", line)
    return 1 if result.wrong or result.schema_errors else 0


if __name__ == "__main__":
    sys.exit(main())
