"""The README followed to the letter, as a newcomer would (`make test` runs it; `make newcomer`).

Each code block the README marks `<!-- newcomer-check: NAME -->` is read from README.md and run
as typed, one bash session per block, in the working copy; nothing of a command is rewritten.
Around the commands the check only adds what a person at a terminal does: it waits for a server
started with `&` to answer before typing the next command, pauses between commands, and keeps
each command's output and exit status to judge.

- deploy and teardown run against a fresh emulator: `AWS_ENDPOINT_URL` and the emulator's root
  credentials in the environment, and `DEPLOY_TEMPLATE` set to the emulator's packaging of
  template.yaml. That last one is the only departure, and why: `make deploy` would otherwise
  `sam build` arm64 bootstraps, which the emulator (it runs functions as processes of this x86_64
  host) cannot execute, and which take about 8 minutes to compile cold; the native debug
  bootstraps `make test` has built are packaged instead. The emulator also lacks CodeDeploy
  (the functions' DeploymentPreference) and AWS::Logs::QueryDefinition: left out, and said.
  The CA and device files the README names are made for the run and removed after it.
- local-loop runs with nothing set: the README's own `ministack &` on :4566 and :8883, seeded by
  the README's `jitr seed`, `cargo lambda watch --env-file local.env &` on :9000.

Exits non-zero naming the command, what it printed and what was expected.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

from cryptography.hazmat.primitives import serialization

from emulator import Emulator
from harness import ROOT, Failure, check, target_directory
from pki import Authority, pem
import stack

TARGET = target_directory()
WORK = TARGET / "newcomer"
README = ROOT / "README.md"
# What answers once a server the README starts with `&` is ready (a person waits for its banner).
READY = {"ministack": 4566, "cargo lambda watch": 9000}
# Files the README's deploy block names, made for the run in the working copy.
DEPLOY_FILES = ["fleet-ca.pem", "fleet-ca.key.pem", "device.pem", "device.key.pem"]


def readme_block(name: str) -> list[str]:
    """The commands of the ```sh block after `<!-- newcomer-check: NAME -->`, continuation lines
    joined, comment-only lines (the README's sample output) dropped."""
    text = README.read_text()
    marker = f"<!-- newcomer-check: {name} -->"
    if marker not in text:
        raise Failure(f"README.md has no block marked {marker}")
    body = text.split(marker, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands, pending = [], ""
    for line in body.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    return commands


def without_comment(command: str) -> str:
    return re.sub(r"\s+#.*$", "", command).strip()


def session_script(commands: list[str], pause: float) -> str:
    """One bash session: each command framed by markers carrying its exit status; a background
    command's output goes to its own log, and the next command waits for its port."""
    lines = ["exec 2>&1", "cleanup() { kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; }", "trap cleanup EXIT"]
    for index, command in enumerate(commands):
        bare = without_comment(command)
        lines.append(f"echo '::begin {index}'")
        if bare.endswith("&"):
            lines.append(f"{bare[:-1].rstrip()} > {WORK}/background-{index}.log 2>&1 &")
            port = next((p for name, p in READY.items() if bare.startswith(name)), None)
            if port is None:
                raise Failure(f"the check does not know when `{bare}` is ready: add it to READY")
            lines.append(
                f"for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.2; done"
            )
            lines.append(f"echo '::end {index} 0'")
        else:
            lines.append(command)
            lines.append(f"echo \"::end {index} $?\"")
        lines.append(f"sleep {pause}")
    return "\n".join(lines) + "\n"


def run_block(name: str, env: dict[str, str], pause: float) -> list[tuple[str, int, str]]:
    """(command, exit status, output) for each command of the README's block."""
    commands = readme_block(name)
    print(f"== README block `{name}`: {len(commands)} commands")
    script = session_script(commands, pause)
    # A fresh shell, not a make recipe's (make test runs this).
    env = {k: v for k, v in env.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    # Its own process group: what the block started with `&` (and their children) stops with it.
    process = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=1800)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        process.wait()
    outputs: list[tuple[str, int, str]] = []
    current, collected = None, []
    for line in (stdout + "\n").splitlines():
        if line.startswith("::begin "):
            current, collected = int(line.split()[1]), []
        elif line.startswith("::end ") and current is not None:
            status = int(line.split()[2])
            outputs.append((commands[current], status, "\n".join(collected)))
            print(f"   $ {without_comment(commands[current])}\n     -> exit {status}")
            for text in collected[-12:]:
                print(f"        {text[:200]}")
            current = None
        elif current is not None:
            collected.append(line)
    if len(outputs) != len(commands):
        raise Failure(f"block `{name}` stopped after {len(outputs)} of {len(commands)} commands:\n"
                      f"{stdout[-2000:]}\n{stderr[-2000:]}")
    return outputs


def expect(outputs, command_pattern: str, status: int, needle: str, what: str, nth: int = 0) -> None:
    """The nth command matching the pattern exited with `status` and printed `needle`."""
    matching = [(c, s, o) for c, s, o in outputs if re.search(command_pattern, c)]
    if len(matching) <= nth:
        raise Failure(f"the README's block has no command matching {command_pattern!r} (#{nth + 1})")
    command, got, output = matching[nth]
    check(got == status and needle in output,
          f"{what}: `{without_comment(command)[:90]}` exit {got}, printed {needle!r}"
          + ("" if needle in output else f"; it printed:\n{output[-1500:]}"))


def the_rest_succeeded(outputs, judged: set[int]) -> None:
    for index, (command, status, output) in enumerate(outputs):
        if index not in judged:
            check(status == 0, f"`{without_comment(command)[:90]}` exit 0" + ("" if status == 0 else f":\n{output[-1500:]}"))


def indices(outputs, *patterns: str) -> set[int]:
    return {i for i, (c, _, _) in enumerate(outputs) if any(re.search(p, c) for p in patterns)}


def deploy_and_teardown() -> None:
    print("1. the README's deploy and teardown blocks against a fresh emulator")
    if _listening(8883):
        raise Failure("port 8883 is taken: `jitr device connect` as the README types it reaches the broker there")
    emulator = Emulator(WORK / "ministack")
    emulator.mqtt_port = 8883  # the MQTT port the README's `jitr device connect` uses (AWS's)
    made = [ROOT / name for name in DEPLOY_FILES]
    clash = [p.name for p in made if p.exists()]
    if clash:
        raise Failure(f"the working copy already holds {clash}: the check would overwrite them")
    try:
        emulator.start()
        fleet = Authority("Newcomer Fleet CA")
        fleet.write(ROOT, "fleet")
        device = fleet.device("newcomer-0001")
        (ROOT / "device.pem").write_text(pem(device.certificate))
        (ROOT / "device.key.pem").write_bytes(device.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        body, left_out = stack.package(ROOT / "template.yaml", TARGET / "debug", emulator.client("s3"))
        packaged = WORK / "packaged-template.json"
        packaged.write_text(body)
        print(f"   ..  DEPLOY_TEMPLATE={packaged.name}: the native debug bootstraps instead of sam build's arm64 ones, "
              "which the emulator (functions run as processes of this x86_64 host) cannot execute")
        print(f"   ..  left out, unknown to the emulator (no CodeDeploy, no Logs Insights queries): {', '.join(left_out)}")
        env = {**os.environ, **emulator.operator_environment(), "DEPLOY_TEMPLATE": str(packaged)}
        env.pop("PARAMETERS", None)
        # The decision `sam deploy --guided` asked at a prompt (and aborted on by default) must be
        # in the configuration: without it, nothing is deployed and the message says what to add.
        undecided = WORK / "undecided-samconfig.toml"
        undecided.write_text((ROOT / "samconfig.toml").read_text().replace('parameter_overrides = "WebhookAuthType=NONE"', ""))
        refused = subprocess.run(
            [str(ROOT / ".venv-sam" / "bin" / "python"), "scripts/deploy.py", "--sam", "false", "--stack", "iot-jitr",
             "--template", str(packaged), "--config", str(undecided), "deploy"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        check(refused.returncode == 2 and "must state the Function URL's authentication" in refused.stderr,
              f"make deploy refuses a configuration without WebhookAuthType: {refused.stderr.strip()}")
        outputs = run_block("deploy", env, pause=3)
        expect(outputs, r"^make deploy", 0, "Function URL authentication: no AWS authentication",
               "make deploy states the Function URL decision from samconfig.toml")
        expect(outputs, r"^make deploy", 0, "WebhookUrl", "prints the outputs")
        expect(outputs, r"^make deploy", 0, "aws secretsmanager get-secret-value",
               "prints the command that reads the webhook key")
        expect(outputs, r"ca register", 0, "registered: ACTIVE, auto-registration on",
               "jitr ca register as written")
        expect(outputs, r"device connect", 1, "closed the connection without a CONNACK",
               "the first connect is closed while JITR registers the certificate", nth=0)
        expect(outputs, r"device connect", 0, "connected to", "the next connect is admitted", nth=1)
        # The emulator leaves the ledger's TTL off (AWS applies TimeToLiveSpecification), and the
        # README's deploy subscribes no one to the alarms (AlarmEmail): doctor says both, nothing else.
        doctor = [o for c, _, o in outputs if "doctor" in c][0]
        problems = [line for line in doctor.splitlines() if line.startswith("PROBLEM")]
        check(len(problems) == 2 and "TTL off" in problems[0] and "alarm topic" in problems[1],
              f"jitr doctor finds only what the emulator and the default parameters leave: {problems}")
        the_rest_succeeded(outputs, indices(outputs, r"device connect", r"doctor"))
        outputs = run_block("teardown", env, pause=0)
        expect(outputs, r"^make delete", 0, "device ledger table (decisions and admissions)",
               "make delete names what it retains")
        stacks = emulator.client("cloudformation").list_stacks(StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE"])
        check(not [s for s in stacks["StackSummaries"] if s["StackName"] == "iot-jitr"], "stack iot-jitr is gone")
    finally:
        for path in made:
            path.unlink(missing_ok=True)
        emulator.stop()


def local_loop() -> None:
    print("2. the README's local loop, as typed (ministack on :4566 and :8883, cargo lambda watch on :9000)")
    busy = [port for port in (4566, 8883, 9000) if _listening(port)]
    if busy:
        raise Failure(f"ports {busy} are taken: the README's local loop uses them as typed; stop what listens there")
    # A person's shell: no AWS settings (local.env has the functions' own).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    try:
        outputs = run_block("local-loop", env, pause=0.5)
    finally:
        (ROOT / "webhook.json").unlink(missing_ok=True)
    expect(outputs, r"device connect", 1, "closed the connection without a CONNACK",
           "sensor-0001's first connect is closed: PENDING_ACTIVATION", nth=0)
    expect(outputs, r"invoke registration", 0, '"outcome":"Activated"', "cargo lambda invoke registration answers Activated")
    expect(outputs, r"device connect", 0, "connected to", "sensor-0001 connects", nth=1)
    expect(outputs, r"invoke lifecycle", 0, '"statusCode":200', "cargo lambda invoke lifecycle answers 200")
    expect(outputs, r"invoke lifecycle", 0, "Changed", "and Changed")
    the_rest_succeeded(outputs, indices(outputs, r"device connect"))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    try:
        deploy_and_teardown()
        local_loop()
        print(f"\nnewcomer: passed in {time.monotonic() - started:.1f} s")
        return 0
    except Exception as error:
        print(f"\nnewcomer: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        for log in sorted(WORK.glob("background-*.log")):
            print(f"-- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:]),
                  file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
