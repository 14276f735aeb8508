"""The port picker of the demo stack, the benchmarks and the process tests stays out of the
kernel's ephemeral range, so no outgoing connection takes a port between its pick and its bind."""

from __future__ import annotations

import socket
from pathlib import Path

from demo.stack import free_port


def test_ports_are_free_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(50)}
    assert all(20000 <= port < low for port in ports)
    assert len(ports) > 40  # random picks, not one fixed port
    for port in list(ports)[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_taken_port_is_not_picked_again() -> None:
    """While a picked port is held by a listener, later picks avoid it."""
    held = []
    try:
        for _ in range(30):
            sock = socket.socket()
            sock.bind(("127.0.0.1", free_port()))
            sock.listen()
            held.append(sock)
        ports = [s.getsockname()[1] for s in held]
        assert len(set(ports)) == len(ports)
    finally:
        for sock in held:
            sock.close()
