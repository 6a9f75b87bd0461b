"""The cargo-lambda loop a Rust Lambda developer runs (`make lambda-loop`).

ministack on a free loopback port, seeded with `jitr seed`; the sample device sensor-0001
connects over mTLS and is held PENDING_ACTIVATION; `cargo lambda watch --env-file local.env`
runs both functions from source, with `--env-var AWS_ENDPOINT_URL=` pointing them at this
emulator instead of local.env's :4566 (so the override the README documents is exercised);
`cargo lambda invoke registration` with the sample event activates it and the device connects;
a webhook signed now by `jitr webhook sign` goes through the lifecycle function's Function URL
path and deactivates it, and a forged one answers 401. Prints each step; exits non-zero with
the reason on any failure.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from emulator import Emulator, free_port
from harness import ROOT, Failure, check, target_directory
from mqtt_device import Session

SAMPLES = ROOT / "events" / "registration"
ACCOUNT, REGION = "123456789012", "eu-west-1"
SECRET = "jitr-demo-webhook-secret"  # the documented test secret, as in local.env


TARGET = target_directory()
WORK = TARGET / "lambda-loop"
ENV = {
    **os.environ,
    "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
    "AWS_ACCESS_KEY_ID": ACCOUNT,
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": REGION,
}


class SampleDevice:
    """A sample certificate and key from events/registration, as mqtt_device.Session wants."""

    def __init__(self, name: str):
        self.name = name

    def write(self, folder: Path) -> tuple[str, str]:
        chain = folder / f"{self.name}.chain.pem"
        chain.write_text((SAMPLES / f"{self.name}.pem").read_text() + (SAMPLES / "ca.pem").read_text())
        return str(chain), str(SAMPLES / f"{self.name}.key.pem")


def jitr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TARGET / "debug" / "jitr"), *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)


def post(url: str, body: bytes, signature: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "content-type": "application/json", "x-men-signature": signature})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def main() -> int:
    emulator = Emulator(WORK / "ministack", auth=False)
    watch = None
    started = time.monotonic()
    try:
        emulator.start()
        print(f"1. ministack on {emulator.endpoint}; jitr seed")
        seeded = jitr("seed", "--endpoint-url", emulator.endpoint)
        check(seeded.returncode == 0, f"sample CA, policy and CRL seeded {seeded.stderr.strip()}")
        files = WORK / "devices"
        files.mkdir(parents=True, exist_ok=True)
        (files / "broker-ca.pem").write_bytes(emulator.broker_ca())
        device = SampleDevice("sensor-0001")

        def connect() -> bool:
            session = Session(device, files, str(files / "broker-ca.pem"), emulator.mqtt_port)
            connected = session.open()
            session.close()
            return connected

        check(not connect(), "sensor-0001's first connect is dropped: its certificate is PENDING_ACTIVATION")

        port = free_port()
        print(f"2. cargo lambda watch --env-file local.env --env-var AWS_ENDPOINT_URL={emulator.endpoint} on :{port}")
        watch = subprocess.Popen(
            ["cargo", "lambda", "watch", "--invoke-port", str(port), "--env-file", "local.env",
             "--env-var", f"AWS_ENDPOINT_URL={emulator.endpoint}"], cwd=ROOT, env=ENV,
            stdout=open(WORK / "watch.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            raise Failure(f"cargo lambda watch did not listen on :{port}")

        print("3. cargo lambda invoke registration --data-file events/registration/01-happy-path.json")
        invoked = subprocess.run(
            ["cargo", "lambda", "invoke", "registration", "--invoke-port", str(port),
             "--data-file", str(SAMPLES / "01-happy-path.json")],
            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
        )
        print(f"     {invoked.stdout.strip()[:300]}")
        report = json.loads(invoked.stdout) if invoked.returncode == 0 else {}
        check(report.get("outcome") == "Activated", f"registration answered {report.get('outcome')} "
              f"(local.env's EXPECTED_ACCOUNT_ID, --env-var's endpoint) {invoked.stderr.strip()[-300:]}")
        check(connect(), "sensor-0001 connects")

        print("4. jitr webhook sign, then POST to the lifecycle Function URL path")
        signed = jitr("webhook", "sign", "--secret", SECRET, "--device", "sensor-0001", "--status", "rejected", "--raw")
        signature = signed.stderr.strip().split(": ", 1)[1]
        url = f"http://127.0.0.1:{port}/lambda-url/lifecycle/"
        status, answer = post(url, signed.stdout.encode(), signature)
        print(f"     HTTP {status} {answer[:300]}")
        check(status == 200 and json.loads(answer).get("outcome") == "Changed",
              "the signed webhook deactivated the device (200, Changed)")
        check(not connect(), "sensor-0001 can no longer connect")
        status, answer = post(url, signed.stdout.encode(), "0" * 64)
        check(status == 401, f"a forged signature answers {status}, not 500")
        print(f"\nlambda-loop: passed in {time.monotonic() - started:.1f} s")
        return 0
    except Exception as error:
        print(f"\nlambda-loop: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        log = WORK / "watch.log"
        if log.exists():
            print("-- cargo lambda watch (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]),
                  file=sys.stderr)
        return 1
    finally:
        if watch and watch.poll() is None:
            os.killpg(watch.pid, signal.SIGTERM)
            watch.wait(timeout=20)
        emulator.stop()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
