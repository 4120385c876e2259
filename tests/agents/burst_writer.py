"""Writes incidents as fast as it can and prints each id once the call that committed it has returned; the
test kills it with SIGKILL in the middle of the burst.

    python burst_writer.py DB
"""

from __future__ import annotations

import sys
import time

from edge_agent.model import Alert, Evidence, Incident, new_ulid
from edge_agent.store import IncidentStore


def main() -> None:
    store = IncidentStore(sys.argv[1])
    while True:
        t = time.time()
        inc = Incident(new_ulid(t), "strip", "intrusion", "high", t, ("strip", "Strip"))
        ev = Evidence("cam", "thermal", t, (("label", "person"), ("confidence", 0.9)), (46.55, 15.65))
        inc.evidence.append(ev)
        inc.updated = t
        store.add_evidence(inc, ev)
        inc.alert_id = new_ulid(t)
        store.queue_alert(Alert(inc.alert_id, inc.incident_id, "s", "b", t, "intrusion", "high", "new", inc.zone,
                                inc.location, (ev,), "burst"))
        print(inc.incident_id, flush=True)


if __name__ == "__main__":
    main()
