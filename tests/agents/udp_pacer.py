"""UDP to a running agent without losses the test cannot see: the kernel's view of the agent's socket
(/proc/net/udp: queued bytes, drops) and a sender that never overfills the socket's receive buffer."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.agents.hostile_input import lines_in
from tests.brokers import wait_for


def udp_socket(port: int) -> tuple[int, int] | None:
    """(bytes queued, datagrams dropped) of the UDP socket bound to ``port``; None while nothing is bound."""
    for row in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = row.split()
        if int(cols[1].split(":")[1], 16) == port:
            return int(cols[4].split(":")[1], 16), int(cols[-1])
    return None


class UdpPacer:
    """Sends datagrams to one of the agent's UDP feeds without ever overfilling its receive buffer, so the
    kernel drops nothing and the test knows every line that arrived. Before each datagram it waits until the
    queue has room for it: a datagram costs the buffer at most about twice its payload, and the queue that
    /proc/net/udp shows leaves out up to a quarter of the buffer that the reader has taken but the kernel not
    yet released (the UDP forward deficit)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.rcvbuf = int(Path("/proc/sys/net/core/rmem_default").read_text())
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.lines = 0  # lines sent, counted as the agent's line splitter counts them

    def wait_bound(self, timeout: float = 10.0) -> bool:
        return wait_for(lambda: udp_socket(self.port) is not None, timeout)

    def send(self, payload: bytes) -> None:
        need = 2 * len(payload) + 2048
        room = self.rcvbuf * 3 // 4
        assert need < room, f"a {len(payload)} byte datagram cannot fit a {self.rcvbuf} byte receive buffer"
        assert wait_for(lambda: (udp_socket(self.port) or (0, 0))[0] + need <= room, 30), \
            f"udp {self.port}: the agent stopped reading (queued, dropped: {udp_socket(self.port)})"
        self.sock.sendto(payload, ("127.0.0.1", self.port))
        self.lines += lines_in(payload)

    def dropped(self) -> int:
        return (udp_socket(self.port) or (0, -1))[1]

    def close(self) -> None:
        self.sock.close()
