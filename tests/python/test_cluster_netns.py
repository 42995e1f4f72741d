"""A cluster across network namespaces (issue 15): the gateway and each worker in a network
namespace of its own, joined by a bridge that also holds the test's NATS server, so that
nothing can pass over a shared loopback address by accident. The only thing they share is the
file system, which is where the object store lives (as a bucket would be shared).

Needs root (`ip netns`), as CI on this machine runs; it fails, not skips, without it under CI.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from conftest import LecternServer, lectern_binary, under_ci
from lectern_cluster import LecternWorker, NatsServer, cluster_name, status, wait_placed, wait_until
from test_cluster import two_layer_pinned
from test_pipelines import b64, check_diagnosis, digit_image, digits_test_split, image_field


def sh(*args: str):
    subprocess.run(args, check=True, capture_output=True, text=True)


class Hosts:
    """A bridge with an address on the host side and one namespace per host behind it."""

    def __init__(self, names: list[str]):
        tag = uuid.uuid4().hex[:5]
        self.bridge = f"lbr{tag}"
        self.subnet = f"10.{200 + os.getpid() % 50}.{int(tag[:2], 16)}"
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, name in enumerate(names, start=2):
            ns = f"lectern-{tag}-{name}"
            host_end, ns_end = f"v{tag}{i}h", f"v{tag}{i}n"
            sh("ip", "netns", "add", ns)
            self.namespaces[name] = ns
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            sh("ip", "link", "set", ns_end, "netns", ns)
            sh("ip", "link", "set", host_end, "master", self.bridge)
            sh("ip", "link", "set", host_end, "up")
            address = f"{self.subnet}.{i}"
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", ns_end)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_end, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            self.addresses[name] = address

    def cleanup(self):
        for ns in self.namespaces.values():
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)


@pytest.fixture
def hosts():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if under_ci():
            pytest.fail("the network-namespace test needs root and iproute2 (ip netns)")
        pytest.skip("needs root and iproute2 (ip netns)")
    made = Hosts(["gateway", "one", "two"])
    yield made
    made.cleanup()


def test_the_two_layer_example_across_three_network_namespaces(hosts, tmp_path):
    nats = NatsServer(tmp_path, host=f"{hosts.subnet}.1")
    cluster = cluster_name()
    folder = two_layer_pinned(tmp_path)
    wrapper = tmp_path / "lectern-in-gateway-ns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {hosts.namespaces["gateway"]} {lectern_binary()} "$@"\n')
    wrapper.chmod(0o755)
    data = tmp_path / "gateway-data"
    data.mkdir()
    gateway = LecternServer(
        None, data, listen=f"{hosts.addresses['gateway']}:0", binary=wrapper,
        extra_args=["--config", str(folder / "lectern.toml"), "--nats", nats.url, "--cluster", cluster,
                    "--database", f"sqlite://{data}/lectern.db",
                    # The bridge is the test's own: no one else can reach it.
                    "--auth", "none"],
    )
    workers = []
    try:
        assert gateway.url.startswith(f"http://{hosts.addresses['gateway']}:"), gateway.url
        for name, layer in (("one", "1"), ("two", "2")):
            workers.append(LecternWorker(nats.url, cluster, f"ns-{name}", labels=[f"layer={layer}"],
                                         netns=hosts.namespaces[name]))
        wait_placed(gateway, {"digit-category": {"ns-one"}, "digit-round": {"ns-two"},
                              "digit-straight": {"ns-two"}, "digit-curved": {"ns-two"}}, workers=workers)
        # The machine's loopback services are out of reach in there: only the bridge joins them.
        probe = subprocess.run(["ip", "netns", "exec", hosts.namespaces["one"], "python3", "-c",
                                "import socket; socket.create_connection(('127.0.0.1', 4222), 1)"],
                               capture_output=True)
        assert probe.returncode != 0, "the machine's NATS on loopback must not be reachable from a worker's namespace"

        x_test, y_test = digits_test_split()
        field = image_field(folder)
        session = requests.Session()
        correct = total = 0
        for i in range(0, len(x_test), 6):
            r = session.post(gateway.url + "/v1/pipelines/diagnose", json={field: b64(digit_image(x_test[i]))},
                             timeout=30)
            assert r.status_code == 200, r.text
            check_diagnosis(r.json(), f"image {i}")
            correct += r.json()["predictions"][0]["label"] == str(int(y_test[i]))
            total += 1
        assert correct / total >= 0.9, (correct, total)
        # Each worker answered every image (its record, written each second, counts them).
        wait_until(lambda: all(w["answered"] >= total for w in status(gateway)["workers"]), 5,
                   f"both workers count {total} answers")
    finally:
        for w in workers:
            w.cleanup()
        gateway.cleanup()
        nats.stop()
