"""Writes incidents as fast as it can and prints each id once the call that committed it has returned; the
test kills it with SIGKILL in the middle of the burst.

    python burst_writer.py DB
"""

from __future__ import annotations

import sys
import time

from benchmarks.testbed import log_incident
from edge_agent.incidents.store import IncidentStore


def main() -> None:
    store = IncidentStore(sys.argv[1])
    while True:
        inc = log_incident(store, time.time(), severity="high", summary="burst")
        print(inc.incident_id, flush=True)


if __name__ == "__main__":
    main()
