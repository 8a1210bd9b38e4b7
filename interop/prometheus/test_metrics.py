"""`connect-chatd run`'s `/metrics`, read by Prometheus's own Python client parser.

A daemon follows two chats on the emulator (both separate processes). The exposition
must parse with `prometheus_client.parser` (the 0.0.4 text format) and with its
OpenMetrics parser when asked for that; its values must move with what the emulator
does: Items published are journalled, dropped sockets are counted as reconnects,
failed and throttled API calls by outcome. `/readyz` must answer 503 while the
sessions cannot reconnect and 200 again once they have.
"""
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("CONNECT_CHATD_BIN", os.path.join(ROOT, "target", "debug", "connect-chatd"))


def http(url, method="GET", body=None, headers=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, within=30.0):
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Setup:
    def __init__(self, emulator, probes, daemon, contacts):
        self.emulator = emulator
        self.contacts = contacts
        self.probes = probes
        self.daemon = daemon

    def admin(self, path, body=None):
        status, _, text = http(self.emulator + path, "POST", body if body is not None else {})
        assert status == 200, (path, status, text)
        return json.loads(text or "{}")

    def scrape(self):
        status, headers, text = http(self.probes + "/metrics")
        assert status == 200, text
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers["Content-Type"]
        return {f.name: f for f in parse_text(text)}

    def value(self, families, name, **labels):
        """The sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for family in families.values():
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def readyz(self):
        return http(self.probes + "/readyz")[0]


@pytest.fixture(scope="module")
def setup():
    emulator = subprocess.Popen(
        [BINARY, "emulator", "--listen", "127.0.0.1:0", "--log-level", "warn"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    daemon = None
    try:
        endpoint = json.loads(emulator.stdout.readline())["Endpoint"]
        tmp = tempfile.mkdtemp(prefix="chatd-metrics-")
        port = free_port()
        probe = f"http://127.0.0.1:{port}"
        sessions = ""
        contacts = []
        for name in ("alpha", "beta"):
            req = urllib.request.Request(endpoint + "/admin/chats", data=b"{}", method="POST")
            chat = json.loads(urllib.request.urlopen(req, timeout=10).read())
            contacts.append(chat["ContactId"])
            token = os.path.join(tmp, f"{name}.token")
            with open(token, "w") as f:
                f.write(chat["ParticipantToken"] + "\n")
            sessions += f'\n[[sessions]]\nname = "{name}"\nparticipant_token_file = "{token}"\n'
        config = os.path.join(tmp, "connect-chatd.toml")
        with open(config, "w") as f:
            f.write(
                f'endpoint = "{endpoint}"\nstate_dir = "{tmp}/state"\n'
                f'[control]\nlisten = "unix:{tmp}/control.sock"\n'
                f'[http]\nlisten = "127.0.0.1:{port}"\nreadyz_grace = 1\nmetrics_per_session = true\n'
                f'[log]\nlevel = "warn"\n' + sessions
            )
        # The daemon refuses CONNECT_CHATD_* variables it does not know (interop/run
        # exports CONNECT_CHATD_BIN for the suites): it gets none of them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECT_CHATD_")}
        daemon = subprocess.Popen(
            [BINARY, "run", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        s = Setup(endpoint, probe, daemon, contacts)
        wait_for("/readyz 200", lambda: _quiet(s.readyz) == 200)
        yield s
    finally:
        if daemon is not None:
            daemon.terminate()
            assert daemon.wait(timeout=15) == 0
        emulator.terminate()
        emulator.wait(timeout=10)


def _quiet(f):
    try:
        return f()
    except OSError:
        return None


def test_the_exposition_parses_and_names_every_series(setup):
    m = setup.scrape()
    for family in [
        "connect_chatd_sessions",
        "connect_chatd_items_journalled",
        "connect_chatd_items_backfilled",
        "connect_chatd_duplicates_dropped",
        "connect_chatd_reconnects",
        "connect_chatd_renewals",
        "connect_chatd_api_calls",
        "connect_chatd_limiter_wait_seconds",
        "connect_chatd_websocket_connect_seconds",
        "connect_chatd_journal_commit_seconds",
        "connect_chatd_journal_commit_items",
        "connect_chatd_journal_size_bytes",
        "connect_chatd_consumer_lag_items",
        "connect_chatd_longest_not_live_seconds",
        "connect_chatd_session_last_item_age_seconds",
        "connect_chatd_ready",
    ]:
        assert family in m, f"{family} missing; have {sorted(m)}"
    assert m["connect_chatd_api_calls"].type == "counter"
    assert m["connect_chatd_websocket_connect_seconds"].type == "histogram"
    assert setup.value(m, "connect_chatd_sessions", state="live") == 2
    assert setup.value(m, "connect_chatd_sessions", state="failed") == 0
    assert setup.value(m, "connect_chatd_ready") == 1
    ok = setup.value(m, "connect_chatd_api_calls_total", operation="CreateParticipantConnection", outcome="ok")
    assert ok >= 2
    assert setup.value(m, "connect_chatd_websocket_connect_seconds_count") >= 2
    # No token, no Item Id, no presigned URL in any label or value.
    text = http(setup.probes + "/metrics")[2]
    assert "Token" not in text and "X-Amz" not in text and "wss://" not in text

    # OpenMetrics on request, parsed by the OpenMetrics parser (which insists on `# EOF`).
    status, headers, text = http(
        setup.probes + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    names = {f.name for f in parse_openmetrics(text)}
    assert "connect_chatd_api_calls" in names and "connect_chatd_sessions" in names


def test_values_move_with_the_emulator(setup):
    before = setup.scrape()
    journalled = setup.value(before, "connect_chatd_items_journalled_total")
    # Items published on both chats are journalled.
    for contact in setup.contacts:
        for i in range(5):
            setup.admin(f"/admin/chats/{contact}/messages", {"Content": f"m{i}"})
    wait_for(
        "10 more Items journalled",
        lambda: setup.value(setup.scrape(), "connect_chatd_items_journalled_total") >= journalled + 10,
    )
    m = setup.scrape()
    assert setup.value(m, "connect_chatd_consumer_lag_items", consumer="sse") == 0
    assert setup.value(m, "connect_chatd_journal_size_bytes") > 0
    assert setup.value(m, "connect_chatd_journal_commit_items_count") >= 1
    assert setup.value(m, "connect_chatd_session_last_item_age_seconds", session="alpha") < 60

    # Throttled and failing reconnects, counted by outcome; /readyz goes 503 meanwhile.
    dropped = setup.value(m, "connect_chatd_reconnects_total", cause="dropped") + setup.value(
        m, "connect_chatd_reconnects_total", cause="server_close"
    )
    failed = setup.value(
        m, "connect_chatd_api_calls_total", operation="CreateParticipantConnection", outcome="server_error"
    )
    throttled = setup.value(
        m, "connect_chatd_api_calls_total", operation="CreateParticipantConnection", outcome="throttled"
    )
    setup.admin(
        "/admin/faults",
        {"Operation": "CreateParticipantConnection", "Status": 500, "Count": 2, "DelayMs": 1500},
    )
    setup.admin("/admin/faults", {"Operation": "CreateParticipantConnection", "Status": 429, "Count": 2})
    setup.admin("/admin/sockets/drop", {})
    wait_for("/readyz 503 while reconnecting fails", lambda: setup.readyz() == 503)
    wait_for("/readyz 200 after recovery", lambda: setup.readyz() == 200, within=60)
    m = setup.scrape()
    assert setup.value(m, "connect_chatd_sessions", state="live") == 2
    now_dropped = setup.value(m, "connect_chatd_reconnects_total", cause="dropped") + setup.value(
        m, "connect_chatd_reconnects_total", cause="server_close"
    )
    assert now_dropped >= dropped + 2, (dropped, now_dropped)
    assert (
        setup.value(m, "connect_chatd_api_calls_total", operation="CreateParticipantConnection", outcome="server_error")
        >= failed + 2
    )
    assert (
        setup.value(m, "connect_chatd_api_calls_total", operation="CreateParticipantConnection", outcome="throttled")
        >= throttled + 2
    )
    assert setup.value(m, "connect_chatd_items_backfilled_total") >= 0
    assert setup.value(m, "connect_chatd_session_not_live_seconds", session="alpha") == 0

