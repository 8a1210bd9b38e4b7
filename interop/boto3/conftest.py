"""Starts `connect-chatd emulator` on a free loopback port for the boto3 suite."""
import json
import os
import subprocess
import urllib.request

import boto3
import pytest
from botocore.config import Config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("CONNECT_CHATD_BIN", os.path.join(ROOT, "target", "debug", "connect-chatd"))


class Emulator:
    def __init__(self, endpoint):
        self.endpoint = endpoint

    def admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def new_chat(self):
        return self.admin("POST", "/admin/chats", {"DisplayName": "Boto"})

    def fault(self, operation, status, count=1):
        self.admin("POST", "/admin/faults", {"Operation": operation, "Status": status, "Count": count})


@pytest.fixture(scope="session")
def emulator():
    proc = subprocess.Popen(
        [BINARY, "emulator", "--listen", "127.0.0.1:0", "--log-level", "warn"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, "the emulator printed no endpoint"
        yield Emulator(json.loads(line)["Endpoint"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_client(emulator, retries=1):
    return boto3.client(
        "connectparticipant",
        endpoint_url=emulator.endpoint,
        region_name="us-east-1",
        # The service authenticates with the bearer header only; botocore still
        # wants credentials to exist.
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-a-secret",
        config=Config(retries={"mode": "standard", "total_max_attempts": retries}),
    )


@pytest.fixture()
def client(emulator):
    return make_client(emulator)
