"""ministack for the end-to-end run: AUTH=true, loopback ports, a clean environment, state
under the cargo target directory's e2e/, and AWS_ENDPOINT_URL pointing at itself so deployed functions reach it."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

REGION = "eu-west-1"
# Under AUTH=true these act as the account's root user (the operator deploying the stack).
ROOT_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
_HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    def __init__(self, state_dir: Path, gateway_port: int | None = None, auth: bool = True):
        self.state_dir = state_dir
        self.auth = auth
        self.gateway_port = gateway_port or free_port()
        self.mqtt_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.gateway_port}"
        self.log_path = state_dir / "ministack.log"
        self.process = None

    def start(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir.mkdir(parents=True)
        venv_bin = Path(sys.executable).parent
        env = {
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.state_dir),
            "TMPDIR": str(self.state_dir),
            "STATE_DIR": str(self.state_dir),
            "GATEWAY_PORT": str(self.gateway_port),
            "BIND_HOST": "127.0.0.1",
            "IOT_MTLS_PORT": str(self.mqtt_port),
            "LAMBDA_EXECUTOR": "local",
            "AUTH": "true" if self.auth else "false",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
        }
        log = open(self.log_path, "wb")
        # Its own session, so stopping it also stops the function processes it spawned.
        self.process = subprocess.Popen(
            [sys.executable, str(_HERE / "ministack_iot_arns.py")],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ministack exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/_ministack/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"ministack did not answer on {self.endpoint} within 30 s:\n{self.log_tail()}")

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, **ROOT_CREDENTIALS)

    def operator_environment(self) -> dict[str, str]:
        """What an operator's shell holds to reach this emulator with sam, the AWS CLI or jitr."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ROOT_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": ROOT_CREDENTIALS["aws_secret_access_key"],
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def broker_ca(self) -> bytes:
        return urllib.request.urlopen(f"{self.endpoint}/_ministack/iot/ca.pem", timeout=5).read()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no ministack log)"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.state_dir, ignore_errors=True)
