"""What the benchmarks and the tests both stand on, kept here because a benchmark imports no test module: a real
Mosquitto on a free loopback port with a generated config, stoppable (SIGTERM), killable (SIGKILL) and
restartable on the same port (persistence on, so a graceful stop keeps queued messages); an MQTT subscriber that
collects (and, as a command post with end-to-end receipts would, can send a receipt for each alert it gets); and
an incident written the way the agent writes one (evidence, then its alert into the outbox; two commits).
``tests/brokers.py`` hands the broker pieces on to the tests."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.contract.alert import Alert, Evidence, Severity
from edge_agent.contract.ids import new_ulid
from edge_agent.contract.topics import parse_topic
from edge_agent.demo.brokers import free_port, give_to_mosquitto, wait_listening
from edge_agent.incidents.record import Incident
from edge_agent.incidents.store import IncidentStore

__all__ = ["MOSQUITTO", "Collector", "Mosquitto", "log_incident", "shipped_persistence", "wait_for", "wait_port"]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SHIPPED_CONF = Path(__file__).resolve().parents[1] / "configs" / "mosquitto" / "edge-agent.conf"
PERSISTENCE_KEYS = ("persistence", "autosave_interval", "autosave_on_changes", "queue_qos0_messages",
                    "max_queued_messages", "max_queued_bytes", "persistent_client_expiration")
TEST_PERSISTENCE = ["persistence true", "autosave_interval 1", "max_queued_messages 100000"]


def shipped_persistence(conf: Path = SHIPPED_CONF) -> list[str]:
    """The persistence and queueing lines of the shipped broker config, exactly as written there."""
    lines = [line.split("#", 1)[0].strip() for line in conf.read_text().splitlines()]
    return [line for line in lines if line.split(" ", 1)[0] in PERSISTENCE_KEYS]


def wait_port(port: int, timeout: float = 10.0) -> None:
    if not wait_listening("127.0.0.1", port, timeout):
        raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_for(predicate: Any, timeout: float = 20.0) -> bool:
    """Poll until ``predicate()`` is true or ``timeout`` seconds have passed; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


class Mosquitto:
    def __init__(self, *, users: dict[str, str] | None = None, tls_dir: Path | None = None, acl: str | None = None,
                 persistence: list[str] | None = None, extra: list[str] | None = None) -> None:
        """``persistence``: the persistence and queueing lines (default: a save every second, a deep queue);
        ``extra``: lines at the end (a bridge's ``connection`` section)."""
        # under /tmp itself: pytest's tmp_path sits in folders the dropped-privilege 'mosquitto' user cannot enter
        self.dir = Path(tempfile.mkdtemp(prefix="edge-mosquitto-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        lines = ["per_listener_settings false", *(TEST_PERSISTENCE if persistence is None else persistence),
                 f"persistence_location {self.dir}/", f"log_dest file {self.dir}/mosquitto.log", "log_type all",
                 f"listener {self.port} 127.0.0.1", "max_inflight_messages 100"]
        if tls_dir is not None:
            shutil.copytree(tls_dir, self.dir / "tls")
            tls_dir = self.dir / "tls"
            lines += [f"cafile {tls_dir}/ca.crt", f"certfile {tls_dir}/server.crt", f"keyfile {tls_dir}/server.key",
                      "require_certificate true", "use_identity_as_username true", "allow_anonymous false"]
        elif users:
            pw = self.dir / "passwd"
            pw.touch()
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True, capture_output=True)
            pw.chmod(0o600)
            lines += [f"password_file {pw}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            (self.dir / "acl").write_text(acl)
            lines.append(f"acl_file {self.dir}/acl")
        lines += extra or []
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        give_to_mosquitto(self.dir)

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.proc.kill()
            err = self.proc.communicate()[1].decode(errors="replace")
            log = (self.dir / "mosquitto.log").read_text() if (self.dir / "mosquitto.log").exists() else ""
            raise RuntimeError(f"mosquitto did not start: {err}\n{log[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the broker saves nothing more (a power cut or an OOM kill)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        p = self.dir / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""


class Collector:
    """A command-post subscriber: a persistent session (QoS 1), every message kept in order."""

    def __init__(self, port: int, topics: str | list[str], client_id: str = "test-collector",
                 receipts_by: str | None = None, auth: tuple[str, str] | None = None, **tls: Any) -> None:
        """``receipts_by``: send a receipt in this name to ``{root}/receipts`` for each alert state received;
        ``auth``: user name and password."""
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the broker confirmed the subscriptions (SUBACK)
        self.receipts_by = receipts_by
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if tls:
            self.client.tls_set(**tls)
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.topics = [topics] if isinstance(topics, str) else topics
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.reconnect_delay_set(1, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in self.topics])
            self.connected.set()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)
        topic = parse_topic(msg.topic)
        if self.receipts_by is not None and topic is not None and topic.leaf == "alerts":
            from edge_agent.contract.acks import receipt_payload

            alert = json.loads(msg.payload)
            client.publish(topic.box_topics.receipts,
                           receipt_payload(alert["alert_id"], alert["state"], self.receipts_by), qos=1)

    def on(self, suffix: str) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def json(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.on(suffix)]

    def wait(self, predicate: Any, timeout: float = 20.0) -> bool:
        return wait_for(predicate, timeout)

    def barrier(self, topic: str, timeout: float = 20.0) -> bool:
        """Publish a marker on ``topic`` (one this collector receives) and wait for it: whatever the broker
        forwarded to this subscriber before it (a message it should have refused, say) has arrived by then."""
        marker = f"barrier-{time.monotonic_ns()}".encode()
        self.client.publish(topic, marker, qos=1)
        return wait_for(lambda: any(m.payload == marker for m in self.on(topic)), timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def log_incident(store: IncidentStore, t: float, zone: str = "strip", severity: Severity = "medium",
                 latlon: tuple[float, float] | None = (46.5502, 15.65), sensor: str = "cam",
                 summary: str | None = None) -> Incident:
    """An incident as the agent writes one: its evidence (one commit), then its alert into the outbox (another)."""
    inc = Incident(new_ulid(t), zone, "intrusion", severity, t, (zone, zone.title()))
    ev = Evidence(sensor, "thermal", t, (("label", "person"), ("confidence", 0.8), ("track_id", 3)), latlon)
    inc.evidence.append(ev)
    inc.updated = t
    store.add_evidence(inc, ev)
    inc.alert_id = new_ulid(t)
    store.queue_alert(Alert(inc.alert_id, inc.incident_id, "s", "b", t, "intrusion", inc.severity, "new", inc.zone,
                            inc.location, (ev,), summary or f"Person entered {zone}"))
    return inc
