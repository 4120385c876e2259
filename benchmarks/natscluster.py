"""A NATS JetStream cluster on loopback for the tests and benchmarks: Debian's ``nats-server`` (2.9), N nodes
routed to each other, JetStream on each, and each node's MQTT 3.1.1 listener with its streams replicated on
every node (``stream_replicas``). Boxes and command posts are users of one account with the permissions of the
Mosquitto pattern ACL (``configs/mosquitto/acl.example``): a box publishes only under its own topic root and
reads only its own acks and receipts; a command post reads everything and writes acks and receipts. Users may
connect over MQTT only (``allowed_connection_types``), so nobody reaches the internal subjects another way.

``node_config`` is also what ``configs/nats/`` shows, with TLS added there. Any node can be SIGKILLed and
started again on the same ports with its JetStream store."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from benchmarks.testbed import wait_for, wait_port
from edge_agent.demo.brokers import free_port

NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"
PREFIX = "border"


def box_permissions(box: str, prefix: str = PREFIX, reads: tuple[str, ...] = ("acks", "receipts")) -> str:
    """What a box may do, as the Mosquitto pattern ACL: write its own status, alerts, health, site and snapshots,
    read its own acks and receipts (MQTT topics are NATS subjects with '/' as '.'; ``$MQTT.sub.>`` is where
    JetStream delivers a QoS 1 subscription, which an MQTT client cannot name as a topic)."""
    root = f"{prefix}.*.{box}"
    writes = ", ".join(f'"{root}.{leaf}"' for leaf in ("status", "alerts", "health", "site", "snapshots.*"))
    read = ", ".join([*(f'"{root}.{leaf}"' for leaf in reads), '"$MQTT.sub.>"'])
    return f"{{publish: {{allow: [{writes}]}}, subscribe: {{allow: [{read}]}}}}"


def command_post_permissions(prefix: str = PREFIX) -> str:
    return (f'{{publish: {{allow: ["{prefix}.*.*.acks", "{prefix}.*.*.receipts"]}}, '
            f'subscribe: {{allow: ["{prefix}", "{prefix}.>", "$MQTT.sub.>"]}}}}')


def node_config(name: str, client_port: int, route_port: int, mqtt_port: int, monitor_port: int,
                routes: list[int], store_dir: Path, replicas: int, boxes: dict[str, str],
                command_posts: dict[str, str], host: str = "127.0.0.1",
                box_reads: tuple[str, ...] = ("acks", "receipts")) -> str:
    """One node's configuration: cluster routes, JetStream, the MQTT listener, the account and its users."""
    users = [f'      {{user: "{box}", password: "{pw}", permissions: {box_permissions(box, reads=box_reads)}, '
             f'allowed_connection_types: ["MQTT"]}}' for box, pw in boxes.items()]
    users += [f'      {{user: "{cp}", password: "{pw}", permissions: {command_post_permissions()}, '
              f'allowed_connection_types: ["MQTT"]}}' for cp, pw in command_posts.items()]
    route_urls = ", ".join(f"nats-route://{host}:{p}" for p in routes)
    accounts = ""
    if users:
        joined = "\n".join(users)
        accounts = f"""accounts {{
  BORDER: {{
    jetstream: enabled
    users: [
{joined}
    ]
  }}
}}
"""
    cluster = f"""cluster {{
  name: edge-c2
  listen: {host}:{route_port}
  routes: [{route_urls}]
}}
""" if len(routes) > 1 else ""  # a single node runs JetStream on its own
    return f"""server_name: {name}
listen: {host}:{client_port}
http: {host}:{monitor_port}
jetstream {{ store_dir: "{store_dir}" }}
{cluster}mqtt {{
  listen: {host}:{mqtt_port}
  stream_replicas: {replicas}
  consumer_replicas: {replicas}
}}
{accounts}"""


class NatsCluster:
    """``nodes`` nats-server processes in one cluster; see the module docstring."""

    def __init__(self, nodes: int = 3, boxes: dict[str, str] | None = None,
                 command_posts: dict[str, str] | None = None,
                 box_reads: tuple[str, ...] = ("acks", "receipts")) -> None:
        """``box_reads``: what a box may subscribe to (less, to see what a refused subscription does)."""
        self.dir = Path(tempfile.mkdtemp(prefix="edge-nats-"))
        self.count = nodes
        self.client_ports = [free_port() for _ in range(nodes)]
        self.route_ports = [free_port() for _ in range(nodes)]
        self.mqtt_ports = [free_port() for _ in range(nodes)]
        self.monitor_ports = [free_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * nodes
        for i in range(nodes):
            (self.dir / f"n{i + 1}.conf").write_text(node_config(
                f"n{i + 1}", self.client_ports[i], self.route_ports[i], self.mqtt_ports[i], self.monitor_ports[i],
                self.route_ports, self.dir / f"n{i + 1}" / "js", min(3, nodes), boxes or {}, command_posts or {},
                box_reads=box_reads))

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for i in range(self.count):
            self.start_node(i, wait=False)
        for i in range(self.count):
            self._ready(i, timeout)
        return self

    def start_node(self, i: int, wait: bool = True, timeout: float = 30.0) -> None:
        log = (self.dir / f"n{i + 1}.log").open("ab")
        self.procs[i] = subprocess.Popen([NATS, "-c", str(self.dir / f"n{i + 1}.conf")], stdout=log,
                                         stderr=subprocess.STDOUT)
        if wait:
            self._ready(i, timeout)

    def _ready(self, i: int, timeout: float) -> None:
        """The node's MQTT listener accepts connections and its JetStream is healthy (a meta leader known)."""
        try:
            wait_port(self.mqtt_ports[i], timeout)
        except TimeoutError:
            raise RuntimeError(f"nats node n{i + 1} did not start:\n{self.log(i)[-3000:]}") from None

        def healthy() -> bool:
            try:
                url = f"http://127.0.0.1:{self.monitor_ports[i]}/healthz"
                with urllib.request.urlopen(url, timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        if not wait_for(healthy, timeout):
            raise RuntimeError(f"nats node n{i + 1} is not healthy:\n{self.log(i)[-3000:]}")

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``: a power cut; its store stays for a restart."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        self.procs[i] = None

    def stop(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            self.procs[i] = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self, i: int) -> str:
        path = self.dir / f"n{i + 1}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def rss_mb(self) -> list[float]:
        """Each running node's resident memory in MiB (0 for a node that is down)."""
        out = []
        for proc in self.procs:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text() if proc is not None else ""
            except OSError:
                status = ""
            kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            out.append(kb / 1024)
        return out

