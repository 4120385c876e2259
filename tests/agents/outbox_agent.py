"""A delivery-only agent for the outage tests: commits alerts to a real incident database and publishes the
outbox with the real Publisher, in a process of its own that the test stops, kills and restarts.

    python outbox_agent.py DB PORT COUNT RATE      (continues where an earlier run of the same DB stopped)
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from edge_agent.config.mqtt import MqttConfig
from edge_agent.contract.alert import Alert, Evidence
from edge_agent.contract.ids import new_ulid
from edge_agent.delivery.publisher import Publisher
from edge_agent.incidents.store import IncidentStore


def main() -> int:
    db, port, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    store = IncidentStore(db)
    pub = Publisher(MqttConfig(host="127.0.0.1", port=port, reconnect_min_s=1, reconnect_max_s=1,
                               keepalive_s=5), "t", "box1", store)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pub.start()
    done = int(store.db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0])
    while done < count and not stop.is_set():
        now = time.time()
        ev = Evidence("md-1", "metal", now, (("event", "ALARM"), ("level", 80), ("zone", 1)))
        severity = "critical" if done % 10 == 0 else "medium"
        store.queue_alert(Alert(new_ulid(now), new_ulid(now), "t", "box1", now, "metal", severity, "new", None, None,
                                (ev,), f"alert {done}"))
        pub.wake()
        done += 1
        stop.wait(1.0 / rate)
    print("queued", done, flush=True)
    stop.wait()
    pub.stop()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
