"""Issue 24's box side: ``mqtt.hosts`` is an ordered list of brokers; a box that cannot reach one, or loses it,
moves to the next with backoff and its outbox replays there. Two real Mosquittos and a port nobody listens on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_agent.config.mqtt import MqttConfig
from edge_agent.delivery.publisher import Publisher
from edge_agent.incidents.store import IncidentStore
from tests.brokers import Collector, Mosquitto, free_port, wait_for
from tests.test_delivery import _alert

pytestmark = pytest.mark.integration


def test_hosts_parse_each_broker_and_host_is_a_list_of_one() -> None:
    cfg = MqttConfig.model_validate({"hosts": ["a.lan", "b.lan:8884", "[::1]:1884"], "port": 1885})
    assert cfg.brokers == [("a.lan", 1885), ("b.lan", 8884), ("::1", 1884)] and cfg.host == "a.lan"
    assert MqttConfig(host="c.lan").brokers == [("c.lan", 1883)]
    for bad, why in ((["a.lan", "a.lan"], "listed twice"), (["a.lan:http"], "no port number"),
                     (["a.lan:70000"], "port 1-65535")):
        with pytest.raises(ValueError, match=why):
            MqttConfig.model_validate({"hosts": bad})
    with pytest.raises(ValueError, match="host or hosts, not both"):
        MqttConfig.model_validate({"host": "a.lan", "hosts": ["b.lan"]})


def test_a_box_moves_to_the_next_broker_and_its_outbox_replays_there(tmp_path: Path) -> None:
    first, second = Mosquitto().start(), Mosquitto().start()
    dead = free_port()  # the first broker of the list is down from the start
    store = IncidentStore(tmp_path / "incidents.db")
    cfg = MqttConfig.model_validate({"hosts": [f"127.0.0.1:{dead}", f"127.0.0.1:{first.port}",
                                               f"127.0.0.1:{second.port}"],
                                     "reconnect_min_s": 1, "reconnect_max_s": 1, "keepalive_s": 5})
    on_first = Collector(first.port, "border/t/box1/#", client_id="cp-first")
    on_second = Collector(second.port, "border/t/box1/#", client_id="cp-second")
    pub = Publisher(cfg, "t", "box1", store)
    try:
        assert on_first.subscribed.wait(10) and on_second.subscribed.wait(10)
        pub.start()
        assert wait_for(pub.connected.is_set, 20) and pub.where == f"127.0.0.1:{first.port}", pub.counters
        early = [_alert() for _ in range(5)]
        for a in early:
            store.queue_alert(a)
        pub.wake()
        assert on_first.wait(lambda: len(on_first.json("/alerts")) == 5, 20)
        first.kill()  # mid-run: what the box commits now goes to the second broker
        late = [_alert() for _ in range(5)]
        for a in late:
            store.queue_alert(a)
            time.sleep(0.05)
        pub.wake()
        assert on_second.wait(lambda: {m["alert_id"] for m in on_second.json("/alerts")} >=
                              {a.alert_id for a in late}, 30), pub.counters
        assert pub.where == f"127.0.0.1:{second.port}" and pub.counters.failovers >= 2
        assert wait_for(lambda: store.backlog()[0] == 0, 10), store.backlog()
        statuses = [p["state"] for p in on_second.json("/status")]
        assert statuses and statuses[-1] == "online", "the box says online on the broker it moved to"
    finally:
        pub.stop()
        on_first.close()
        on_second.close()
        store.close()
        first.remove()
        second.remove()


def test_a_refused_subscription_is_asked_for_again(tmp_path: Path) -> None:
    """A cluster electing leaders can refuse the subscription to acks or receipts (seen on NATS under load);
    without it acks and receipts would never come, so the box asks again. Here NATS refuses it for good (the box
    may not read its receipts), and the box keeps asking."""
    from benchmarks.natscluster import NATS, NatsCluster

    if not Path(NATS).exists():
        pytest.skip("nats-server is not installed (./dev installs it)")
    cluster = NatsCluster(1, boxes={"box1": "pw-box1"}, box_reads=("acks",)).start()
    store = IncidentStore(tmp_path / "incidents.db")
    cfg = MqttConfig(host="127.0.0.1", port=cluster.mqtt_ports[0], username="box1", password="pw-box1",
                     require_receipt=True)
    pub = Publisher(cfg, "t", "box1", store)
    try:
        pub.start()
        assert wait_for(lambda: "refused the subscription" in pub.counters.last_error, 20), pub.counters
        assert wait_for(lambda: cluster.log(0).count("Subscription Violation") >= 2, 20), cluster.log(0)[-2000:]
        assert not pub.listening.is_set()
    finally:
        pub.stop()
        store.close()
        cluster.remove()
