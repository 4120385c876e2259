"""The brokers the tests start: a real Mosquitto per test on a free loopback port, and a collecting command-post
subscriber. They live in ``benchmarks/testbed.py`` (a benchmark imports no test module, and both need them);
the tests take them from here, with the checkout's root."""

from __future__ import annotations

from pathlib import Path

from benchmarks.testbed import MOSQUITTO, Collector, Mosquitto, shipped_persistence, wait_for, wait_port
from edge_agent.demo.brokers import free_port

__all__ = ["MOSQUITTO", "ROOT", "Collector", "Mosquitto", "free_port", "shipped_persistence", "wait_for",
           "wait_port"]

ROOT = Path(__file__).resolve().parents[1]
