"""End-to-end run of the deployed stack with real devices (`make e2e`).

ministack with AUTH=true (IAM and IoT policies enforced) -> the real template.yaml deployed
by `make deploy` (sam deploy, samconfig.toml, the SAM transform) -> a CA registered the real way -> devices as
real MQTT clients over mTLS: two CAs with their own registration profiles each get a device
admitted, a partner certificate naming the factory device's Thing is refused, a revoked device
and a stranger are kept out, a new CRL uploaded to S3 revokes an ACTIVE device, a device rejected
by a signed Mender webhook before its first connect never gets in (and a stale `accepted` changes
nothing), a rotated device ends with only its new certificate ACTIVE, a decommissioned device's
certificates (old and new) are refused, and each role is shown to be denied what it does not need. Prints
every step and a timeline; exits non-zero with the reason on any failure.
"""

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from emulator import REGION, Emulator
from mqtt_device import Session
from harness import ROOT, Failure, check, target_directory
from pki import Authority
import stack

TARGET = target_directory()
WORK = TARGET / "e2e"
STACK = "jitr-e2e"
# One PKI bucket holds the profiles document and the CRLs (the template grants crl/* beside it).
CRL_BUCKET, CRL_KEY = "fleet-pki", "crl/devices.crl.pem"
PROFILES_KEY = "profiles.json"
PARTNER_POLICY, SENSOR_TYPE = "jitr-e2e-partner", "e2e-sensor"
# The Thing attribute webhooks' device ids are looked up in; the profiles fill it from the CN.
DEVICE_ID_ATTRIBUTE, DEVICE_ID_TEMPLATE = "commonName", "{CN}"
# The template names each function's log group after the stack: "registration" or "lifecycle".
LOG_GROUP = f"/aws/lambda/{STACK}-{{}}"


class Timeline:
    def __init__(self):
        self.entries: list[tuple[float, str]] = []
        self.origin: float | None = None

    def mark(self, what: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        self.origin = self.origin if self.origin is not None else at
        self.entries.append((at, what))

    def show(self) -> None:
        print("\n== timeline (seconds from the first connect) ==")
        for at, what in sorted(self.entries):
            print(f"  {at - self.origin:+8.3f} s  {what}")


class Run:
    def __init__(self, emulator: Emulator):
        self.emulator = emulator
        self.iot = emulator.client("iot")
        self.s3 = emulator.client("s3")
        self.logs = emulator.client("logs")
        self.iam = emulator.client("iam")
        self.cloudformation = emulator.client("cloudformation")
        self.account = emulator.client("sts").get_caller_identity()["Account"]
        self.timeline = Timeline()
        self.files = WORK / "devices"
        self.files.mkdir(parents=True, exist_ok=True)
        (self.files / "broker-ca.pem").write_bytes(emulator.broker_ca())
        self.ca = Authority("Example Fleet Device CA")
        self.partner_ca = Authority("Example Partner Device CA")
        self.stranger_ca = Authority("Unregistered Lab CA")
        self.genuine = self.ca.device("sensor-e2e-0001")
        self.revoked = self.ca.device("sensor-e2e-0002")
        self.stranger = self.stranger_ca.device("sensor-e2e-0003")
        self.later_revoked = self.ca.device("sensor-e2e-0004")
        self.partner = self.partner_ca.device("partner-e2e-0001")
        # Rejected by device management before it ever connects.
        self.vetoed = self.ca.device("sensor-e2e-0005")
        # One device, two certificates: the newer one (later notBefore) replaces the older.
        self.rotated_old = self.ca.device("sensor-e2e-0006", issued_ago=timedelta(minutes=10))
        self.rotated_new = self.ca.device("sensor-e2e-0006")
        # A fresh certificate for the device that will be decommissioned.
        self.reissued = self.ca.device("sensor-e2e-0001")
        # A partner certificate whose CN names the factory device's Thing.
        self.takeover = self.partner_ca.device("sensor-e2e-0001")
        self.partner_ca_id = ""
        self.outputs: dict[str, str] = {}
        self.resources: dict[str, str] = {}
        self.ca_id = ""
        self.timeline_shown = False

    def check_absent(self, describe, message: str) -> None:
        """Passes when the IoT describe call answers ResourceNotFound."""
        try:
            describe()
        except self.iot.exceptions.ResourceNotFoundException:
            check(True, message)
            return
        check(False, message)

    def session(self, device) -> Session:
        return Session(device, self.files, str(self.files / "broker-ca.pem"), self.emulator.mqtt_port)

    # ------------------------------------------------------------------ 1. deploy
    def deploy(self) -> None:
        print("1. make deploy: template.yaml through sam deploy (SAM transform, samconfig.toml), native bootstraps")
        self.s3.create_bucket(Bucket=CRL_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        self.s3.put_object(Bucket=CRL_BUCKET, Key=CRL_KEY, Body=self.ca.crl([self.revoked]))
        profiles = {
            "version": 1,
            "profiles": {
                # The factory CA: the template's policy, typed Things, the CRL of the parameters.
                self.ca.certificate_id: {"name": "factory", "thingType": SENSOR_TYPE},
                # The partner CA: its own policy, untyped Things, no CRL.
                self.partner_ca.certificate_id: {
                    "name": "partner",
                    "policies": [PARTNER_POLICY],
                    "revocation": {"sources": []},
                },
            },
        }
        self.s3.put_object(Bucket=CRL_BUCKET, Key=PROFILES_KEY, Body=json.dumps(profiles).encode())
        # Webhooks find a typed Thing by DEVICE_ID_ATTRIBUTE only if the type makes it searchable.
        self.iot.create_thing_type(
            thingTypeName=SENSOR_TYPE, thingTypeProperties={"searchableAttributes": [DEVICE_ID_ATTRIBUTE]}
        )
        self.iot.create_policy(policyName=PARTNER_POLICY, policyDocument=(ROOT / "policies" / "device-policy.json").read_text())
        parameters = {
            "RevocationListBucket": CRL_BUCKET,
            "RevocationListKey": CRL_KEY,
            "RegistrationProfilesBucket": CRL_BUCKET,
            "RegistrationProfilesKey": PROFILES_KEY,
            "DevicePolicyName": "jitr-e2e-device",
            # The optional parts on: X-Ray permissions, a mail subscription to the alarms.
            "Tracing": "Active",
            "AlarmEmail": "ops@example.com",
            # Webhooks name devices by a device-management id found on a Thing attribute
            # (Mender's id in production). Here the attribute every profile fills with the
            # CN, so each webhook below finds its Thing through ListThings under the role.
            "DeviceIdAttribute": DEVICE_ID_ATTRIBUTE,
            "DeviceIdTemplate": DEVICE_ID_TEMPLATE,
        }
        started = time.monotonic()
        deployed = stack.make_deploy(self.emulator, STACK, WORK, TARGET / "debug", parameters)
        check(deployed.returncode == 0, f"make deploy STACK={STACK} PARAMETERS=... exit 0" + ("" if deployed.returncode == 0 else f": {deployed.stderr.strip()[-600:]}"))
        self.outputs = stack.outputs(self.cloudformation, STACK)
        for needle, what in (
            ("Function URL authentication: no AWS authentication", "states the Function URL's authentication from samconfig.toml"),
            ("aws secretsmanager get-secret-value --secret-id", "prints the command that reads the webhook key"),
            (f"ok       stack {STACK}: CREATE_COMPLETE", "runs jitr doctor on the new stack"),
        ):
            check(needle in deployed.stdout, what)
        self.resources = stack.resources(self.cloudformation, STACK)
        check(
            {"RegistrationFunctionArn", "LifecycleFunctionArn", "WebhookUrl"} <= self.outputs.keys(),
            f"stack {STACK} CREATE_COMPLETE in {time.monotonic() - started:.1f} s: "
            f"{len(self.resources)} resources, outputs {sorted(self.outputs)}",
        )
        dashboard = self.emulator.client("cloudwatch").get_dashboard(DashboardName=self.outputs["OperationsDashboardName"])
        titles = [w["properties"]["title"] for w in json.loads(dashboard["DashboardBody"])["widgets"]]
        check(len(titles) == 5, f"dashboard {dashboard['DashboardName']}: {'; '.join(titles)}")
        alarms = self.emulator.client("cloudwatch").describe_alarms()["MetricAlarms"]
        topic = self.outputs["AlarmTopicArn"]
        notifying = [a["AlarmName"] for a in alarms if topic in a.get("AlarmActions", []) and topic in a.get("OKActions", [])]
        check(len(notifying) == 6, f"all {len(notifying)} alarms notify the alarm topic (and recover on it)")
        # The canary's rollback alarm watches the version the live alias runs, not the function.
        release = next(a for a in alarms if "RegistrationReleaseErrorsAlarm" in a["AlarmName"])
        dimensions = {d["Name"]: d["Value"] for d in release["Dimensions"]}
        live = self.emulator.client("lambda").get_alias(FunctionName=f"{STACK}-registration", Name="live")
        check(
            dimensions.get("Resource") == f"{STACK}-registration:live" and dimensions.get("ExecutedVersion") == live["FunctionVersion"],
            f"the rollback alarm watches the live alias' version {live['FunctionVersion']} ({dimensions})",
        )
        subscriptions = self.emulator.client("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        check([s["Endpoint"] for s in subscriptions] == ["ops@example.com"], "AlarmEmail is subscribed to it")
        policies = self.iam.list_role_policies(RoleName=self.resources["LifecycleRole"])["PolicyNames"]
        check("xray-tracing" in policies, f"Tracing=Active gives the roles X-Ray write access ({policies})")

    # ------------------------------------------------------------------ 2. CA
    def register_ca(self) -> None:
        print("2. register both device CAs with `jitr ca register` (registration code, verification certificate made locally)")
        for authority, label in ((self.ca, "factory"), (self.partner_ca, "partner")):
            certificate, key = authority.write(self.files, label)
            result = self.jitr("ca", "register", "--ca-cert", certificate, "--ca-key", key)
            check(result.returncode == 0, f"jitr ca register: {label} CA {result.stderr.strip()}")
            ca_id = result.stdout.split()[1] if result.stdout.startswith("CA ") else ""
            check(ca_id == authority.certificate_id, f"{label} CA id printed, the SHA-256 of its DER")
            check(
                "event configurations: " in result.stdout and "JITR needs none of them" in result.stdout,
                "and which registry event configurations are on (JITR needs none)",
            )
            described = self.iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
            check(
                described["status"] == "ACTIVE" and described["autoRegistrationStatus"] == "ENABLE",
                f"{label} CA {ca_id[:12]}… ACTIVE with auto-registration",
            )
        self.ca_id, self.partner_ca_id = self.ca.certificate_id, self.partner_ca.certificate_id

    # ------------------------------------------------------------------ 2b. doctor
    def doctor(self) -> None:
        print("2b. `jitr doctor` on the deployed stack: healthy, then with three problems planted")
        # ministack's CloudFormation skips a table's TimeToLiveSpecification (AWS applies it);
        # the doctor reports exactly that, and its fix is applied here.
        table = self.resources["DeviceLedgerTable"]
        dynamodb = self.emulator.client("dynamodb")
        if dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED":
            print("   ..  the emulator left the ledger's TTL off: applying the doctor's fix")
            dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"})
        healthy = self.jitr("doctor", "--stack", STACK)
        check(healthy.returncode == 0, f"healthy stack: exit 0, no PROBLEM line ({healthy.stderr.strip()})")
        check("PROBLEM" not in healthy.stdout, "every check ok")
        # Three things an operator meets when devices stay PENDING_ACTIVATION.
        rule = self.resources["CertificateRegisteredRule"]
        dlq = self.outputs["RegistrationDeadLetterQueueUrl"]
        sqs = self.emulator.client("sqs")
        self.iot.disable_topic_rule(ruleName=rule)
        self.iot.update_ca_certificate(certificateId=self.partner_ca_id, newAutoRegistrationStatus="DISABLE")
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"planted": "by the end-to-end run"}))
        try:
            sick = self.jitr("doctor", "--stack", STACK)
            problems = [l for l in sick.stdout.splitlines() if l.startswith("PROBLEM")]
            check(sick.returncode == 1, f"exit 1 with {len(problems)} problems ({sick.stderr.strip()})")
            for needle, label in (
                (f"topic rule {rule} is disabled", "the disabled topic rule"),
                (f"CA {self.partner_ca_id}", "the partner CA's auto-registration off"),
                ("RegistrationDeadLetterQueue holds 1", "the message in the registration DLQ"),
            ):
                check(any(needle in l for l in problems), f"shows {label}")
            check(len(problems) == 3, "and nothing else")
        finally:
            self.iot.enable_topic_rule(ruleName=rule)
            self.iot.update_ca_certificate(certificateId=self.partner_ca_id, newAutoRegistrationStatus="ENABLE")
            sqs.purge_queue(QueueUrl=dlq)

    # ------------------------------------------------------------------ 3. genuine device
    def watch_status(self, certificate_id: str, label: str, seen: set | None = None) -> threading.Thread:
        """Marks the moment the certificate leaves PENDING_ACTIVATION, as an operator would see it;
        with `seen`, keeps polling for the whole window and collects every status it saw."""

        def watch():
            deadline = time.monotonic() + (12 if seen is not None else 30)
            marked = False
            while time.monotonic() < deadline:
                try:
                    status = self.iot.describe_certificate(certificateId=certificate_id)["certificateDescription"][
                        "status"
                    ]
                except self.iot.exceptions.ResourceNotFoundException:
                    status = None
                if seen is not None and status is not None:
                    seen.add(status)
                if status not in (None, "PENDING_ACTIVATION") and not marked:
                    self.timeline.mark(f"{label}: certificate {status}")
                    marked = True
                    if seen is None:
                        return
                time.sleep(0.02)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread

    def connect_with_backoff(self, device, label: str, attempts: int = 7) -> Session | None:
        delay = 0.25
        for attempt in range(1, attempts + 1):
            session = self.session(device)
            self.timeline.mark(f"{label}: connect #{attempt}")
            if session.open():
                self.timeline.mark(f"{label}: connected ({session.detail})")
                return session
            self.timeline.mark(f"{label}: connect #{attempt} dropped: {session.detail}")
            session.close()
            time.sleep(delay)
            delay = min(delay * 2, 4.0)
        return None

    def genuine_device(self) -> None:
        device = self.genuine
        print(f"3. genuine device {device.name}: first connect dropped, JITR, retry connects and publishes")
        watcher = self.watch_status(device.certificate_id, device.name)
        session = self.connect_with_backoff(device, device.name)
        watcher.join(timeout=5)
        check(session is not None, f"{device.name} connected after JITR (retry with backoff)")
        certificate = self.iot.describe_certificate(certificateId=device.certificate_id)["certificateDescription"]
        check(certificate["status"] == "ACTIVE", "its certificate is ACTIVE")
        check(
            self.iot.list_thing_principals(thingName=device.name)["principals"] == [certificate["certificateArn"]],
            f"Thing {device.name} exists with the certificate attached",
        )
        policies = self.iot.list_attached_policies(target=certificate["certificateArn"])["policies"]
        check([p["policyName"] for p in policies] == ["jitr-e2e-device"], "the device policy is attached")
        thing = self.iot.describe_thing(thingName=device.name)
        check(
            thing.get("thingTypeName") == SENSOR_TYPE and thing["attributes"].get("caCertificateId") == self.ca_id,
            f"profile factory: Thing of type {SENSOR_TYPE}, bound to the factory CA",
        )
        self.registration_outcome(device.certificate_id)

        own = f"devices/{device.name}/telemetry"
        check(session.subscribe(own), f"SUBSCRIBE {own} granted")
        check(session.publish(own, b'{"temperature":21.5}'), f"PUBLISH {own} acknowledged (PUBACK)")
        check(session.received(own), f"message received back on {own}")
        self.timeline.mark(f"{device.name}: published to its own topic")
        foreign = "devices/sensor-e2e-9999/telemetry"
        acknowledged = session.publish(foreign, b"{}")
        check(not acknowledged and session.closed_by_broker, f"PUBLISH {foreign} refused: connection closed")
        session.close()

    def never_connects(self, device, label: str, attempts: int, message: str) -> dict:
        """Connects with backoff while JITR decides, checks that no attempt got in, and returns
        RegistrationFunction's log fields for the certificate."""
        watcher = self.watch_status(device.certificate_id, label)
        check(self.connect_with_backoff(device, label, attempts=attempts) is None, message)
        watcher.join(timeout=5)
        return self.registration_outcome(device.certificate_id)

    def registration_outcome(self, certificate_id: str) -> dict:
        """RegistrationFunction's newest log fields for this certificate; its invocation and
        outcome go on the timeline."""
        label, log_group = "RegistrationFunction", LOG_GROUP.format("registration")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = sorted(self.logs.filter_log_events(logGroupName=log_group)["events"], key=lambda e: e["timestamp"])
            outcomes = [e for e in events if certificate_id in e["message"] and '"outcome"' in e["message"]]
            if outcomes:
                # The invocation that logged the newest outcome for this certificate.
                latest = outcomes[-1]
                starts = [e for e in events if e["message"].startswith("START ") and e["timestamp"] <= latest["timestamp"]]
                at = (starts[-1] if starts else latest)["timestamp"] / 1000
                fields = json.loads(latest["message"]).get("fields", {})
                reason = f" ({fields['reason']})" if fields.get("reason") else ""
                self.timeline.mark(f"{label} invoked: {fields.get('outcome')}{reason}", at)
                print(f"   ..  {label} logged outcome {fields.get('outcome')}{reason}")
                return fields
            time.sleep(0.2)
        raise Failure(f"{label} left no log for certificate {certificate_id[:12]}… in {log_group}")

    # ------------------------------------------------------------------ 3b. the partner CA
    def partner_devices(self) -> None:
        device = self.partner
        print(f"3b. partner device {device.name} admitted with the partner profile; a partner takeover of {self.takeover.name} refused")
        watcher = self.watch_status(device.certificate_id, device.name)
        session = self.connect_with_backoff(device, device.name)
        watcher.join(timeout=5)
        check(session is not None, f"{device.name} connected after JITR")
        session.close()
        certificate = self.iot.describe_certificate(certificateId=device.certificate_id)["certificateDescription"]
        policies = [p["policyName"] for p in self.iot.list_attached_policies(target=certificate["certificateArn"])["policies"]]
        thing = self.iot.describe_thing(thingName=device.name)
        check(
            policies == [PARTNER_POLICY] and "thingTypeName" not in thing,
            f"profile partner: policy {PARTNER_POLICY}, untyped Thing",
        )
        fields = self.registration_outcome(device.certificate_id)
        check(fields.get("profile") == "partner", "the function logged the partner profile")

        forged = self.takeover
        genuine_arn = self.iot.describe_certificate(certificateId=self.genuine.certificate_id)["certificateDescription"]["certificateArn"]
        fields = self.never_connects(forged, f"{forged.name} (partner CA)", 4,
                                     f"a partner certificate with CN {forged.name} never connects")
        check(fields.get("reason") == "ThingBoundToOtherCa", "the function refused it: ThingBoundToOtherCa")
        status = self.iot.describe_certificate(certificateId=forged.certificate_id)["certificateDescription"]["status"]
        check(status == "INACTIVE", f"its certificate is {status}")
        check(
            self.iot.list_thing_principals(thingName=forged.name)["principals"] == [genuine_arn],
            f"Thing {forged.name} still has only the factory device's certificate",
        )

    # ------------------------------------------------------------------ 4b. revoke an ACTIVE device
    def revoke_active(self) -> None:
        device = self.later_revoked
        print(f"4b. {device.name} admitted, then a new CRL uploaded to S3 revokes it while ACTIVE")
        session = self.connect_with_backoff(device, device.name)
        check(session is not None, f"{device.name} connected after JITR")
        session.close()
        function_arn = self.outputs["RegistrationFunctionArn"]
        self.s3.put_bucket_notification_configuration(
            Bucket=CRL_BUCKET,
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [
                    {
                        "LambdaFunctionArn": function_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "crl/"}]}},
                    }
                ]
            },
        )
        uploaded = time.time()
        self.timeline.mark(f"{device.name}: new CRL uploaded (lists its serial)", uploaded)
        self.s3.put_object(Bucket=CRL_BUCKET, Key=CRL_KEY, Body=self.ca.crl([self.revoked, device]))
        status, deadline = "", time.monotonic() + 60
        while time.monotonic() < deadline:
            status = self.iot.describe_certificate(certificateId=device.certificate_id)["certificateDescription"]["status"]
            if status == "REVOKED":
                break
            time.sleep(0.1)
        self.timeline.mark(f"{device.name}: certificate {status}")
        check(status == "REVOKED", f"its ACTIVE certificate is REVOKED {time.time() - uploaded:.1f} s after the upload")
        check(self.connect_with_backoff(device, device.name, attempts=2) is None, f"{device.name} can no longer connect")

    # ------------------------------------------------------------------ 4c. jitr explain
    def jitr(self, *args: str) -> subprocess.CompletedProcess:
        """Runs the `jitr` CLI against the emulator with the function's configuration."""
        env = {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": REGION,
            # The function's configuration, as the stack set it.
            "DEVICE_POLICY_NAME": "jitr-e2e-device",
            "REVOCATION_LIST": f"s3://{CRL_BUCKET}/{CRL_KEY}",
            "REGISTRATION_PROFILES": f"s3://{CRL_BUCKET}/{PROFILES_KEY}",
            "DEVICE_LEDGER_TABLE": self.resources["DeviceLedgerTable"],
            "DEVICE_ID_ATTRIBUTE": DEVICE_ID_ATTRIBUTE,
            "DEVICE_ID_TEMPLATE": DEVICE_ID_TEMPLATE,
        }
        # Built by `make e2e` / `make test` beside the bootstraps (cargo build --bins).
        command = [str(TARGET / "debug" / "jitr"), *args, "--endpoint-url", self.emulator.endpoint]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        print(f"   $ jitr {' '.join(args)}")
        for text in result.stdout.splitlines():
            print(f"     {text}")
        return result

    def explain(self) -> None:
        print("4c. jitr explain: why each device can or cannot connect (the real decision code, reads only)")
        cases = [
            (["--thing", self.genuine.name], ["registration now reconcile", "profile          factory"]),
            (["--thing", self.partner.name], ["registration now reconcile", "profile          partner"]),
            (["--certificate", self.takeover.certificate_id], ["status           INACTIVE", "would reject (ThingBoundToOtherCa)"]),
            (["--certificate", self.later_revoked.certificate_id], ["status           REVOKED", "would revoke (SerialRevoked"]),
        ]
        for args, expected in cases:
            result = self.jitr("explain", *args)
            check(result.returncode == 0 and all(e in result.stdout for e in expected),
                  f"explain {' '.join(args)}: {', '.join(expected)}" + (f" ({result.stderr.strip()})" if result.returncode else ""))

    # ------------------------------------------------------------------ 4. kept out
    def kept_out(self) -> None:
        device = self.revoked
        print(f"4. revoked device {device.name} and stranger {self.stranger.name} never connect")
        self.never_connects(device, device.name, 4, f"{device.name} never connected")
        status = self.iot.describe_certificate(certificateId=device.certificate_id)["certificateDescription"]["status"]
        check(status == "REVOKED", f"its certificate (serial in the CRL) is {status}")
        self.check_absent(lambda: self.iot.describe_thing(thingName=device.name), f"no Thing {device.name}")

        before = {c["certificateId"] for c in self.iot.list_certificates()["certificates"]}
        check(self.connect_with_backoff(self.stranger, self.stranger.name, attempts=3) is None,
              f"{self.stranger.name} (unregistered CA) never connected")
        after = {c["certificateId"] for c in self.iot.list_certificates()["certificates"]}
        check(self.stranger.certificate_id not in after and before == after,
              "no certificate was registered for it")

    # ------------------------------------------------------------------ 5. decommission
    def webhook(self, body: bytes, signature: str) -> tuple[int, str]:
        url_id = self.outputs["WebhookUrl"].split("//", 1)[1].split(".", 1)[0]
        request = urllib.request.Request(
            f"{self.emulator.endpoint}/_aws/lambda-url/{url_id}/",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Men-Algorithm": "MEN-HMAC-SHA256-Payload",
                "X-Men-Signature": signature,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def webhook_secret(self) -> bytes:
        return self.emulator.client("secretsmanager").get_secret_value(
            SecretId=self.resources["WebhookSecret"]
        )["SecretString"].encode()

    @staticmethod
    def mender_event(kind: str, device: str, status: str | None = None, at: datetime | None = None) -> bytes:
        """A Mender webhook body: its own id and time, which the ledger orders events by."""
        data = {"id": device} | ({"status": status} if status else {})
        at = at or datetime.now(timezone.utc)
        return json.dumps(
            {"id": str(uuid.uuid4()), "type": kind, "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "data": data}
        ).encode()

    def signed_webhook(self, body: bytes) -> tuple[int, dict]:
        status, answer = self.webhook(body, hmac.new(self.webhook_secret(), body, hashlib.sha256).hexdigest())
        try:
            return status, json.loads(answer)
        except ValueError:
            return status, {"raw": answer[:160]}

    # ------------------------------------------------------------------ 5a. decisions stand
    def decisions_stand(self) -> None:
        device = self.vetoed
        print(f"5a. {device.name} rejected by a signed webhook before its first connect; a stale 'accepted' changes nothing; a newer one admits it")
        rejected_at = datetime.now(timezone.utc)
        status, answer = self.signed_webhook(self.mender_event("device-status-changed", device.name, "rejected", rejected_at))
        self.timeline.mark(f"{device.name}: 'rejected' webhook answered {status}")
        check(status == 200 and answer.get("recorded") is True,
              f"the rejection of a device IoT Core has never seen is recorded ({status}: {answer})")
        seen: set[str] = set()
        watcher = self.watch_status(device.certificate_id, device.name, seen)
        check(self.connect_with_backoff(device, device.name, attempts=4) is None, f"{device.name} never connected")
        fields = self.registration_outcome(device.certificate_id)
        check(fields.get("reason") == "DeviceDenied", "the function refused it: DeviceDenied")
        # The delayed delivery of an older 'accepted' (Mender retries): older than the rejection.
        stale = self.mender_event("device-status-changed", device.name, "accepted", rejected_at - timedelta(minutes=2))
        status, answer = self.signed_webhook(stale)
        self.timeline.mark(f"{device.name}: stale 'accepted' answered {status} {answer.get('outcome')}")
        check(status == 200 and answer.get("outcome") == "Stale", f"a stale 'accepted' answers 200 Stale ({answer})")
        check(self.connect_with_backoff(device, device.name, attempts=2) is None, f"{device.name} still cannot connect")
        watcher.join()
        final = self.iot.describe_certificate(certificateId=device.certificate_id)["certificateDescription"]["status"]
        check("ACTIVE" not in seen and final == "INACTIVE",
              f"its certificate was never ACTIVE (statuses seen: {sorted(seen)}), now {final}")
        self.check_absent(lambda: self.iot.describe_thing(thingName=device.name), f"no Thing {device.name}")
        # Never admitted, so no Thing to read the id from: the device is asked for by its id.
        result = self.jitr("history", "--device-id", device.name)
        # A stale event is only a log line (outcome Stale): replays cannot grow the history.
        check(result.returncode == 0 and "denied (by deactivate" in result.stdout
              and "Rejected" in result.stdout and "DeviceDenied" in result.stdout,
              "jitr history shows the denial standing and the refused registration"
              + (f" ({result.stderr.strip()})" if result.returncode else ""))
        # Mender's everyday flow: pending at the first connect, accepted later. IoT Core publishes
        # nothing for an INACTIVE certificate, so the refused one is deleted and registers again.
        status, answer = self.signed_webhook(self.mender_event("device-status-changed", device.name, "accepted"))
        self.timeline.mark(f"{device.name}: 'accepted' webhook answered {status}")
        deleted = [c.get("certificateId") for c in answer.get("certificates", []) if c.get("after") == "DELETED"]
        check(status == 200 and deleted == [device.certificate_id],
              f"accepted later: its refused certificate is deleted so JITR can register it again ({answer})")
        session = self.connect_with_backoff(device, f"{device.name} (accepted)")
        check(session is not None, f"{device.name} connects once accepted")
        session.close()
        status = self.iot.describe_certificate(certificateId=device.certificate_id)["certificateDescription"]["status"]
        check(status == "ACTIVE", f"its certificate is {status}, its Thing {device.name} created")

    # ------------------------------------------------------------------ 5b. rotation
    def rotation(self) -> None:
        old, new = self.rotated_old, self.rotated_new
        print(f"5b. {old.name} rotates to a newer certificate: only the new one stays ACTIVE")
        session = self.connect_with_backoff(old, f"{old.name} (old)")
        check(session is not None, f"{old.name} connected with its first certificate")
        session.close()
        session = self.connect_with_backoff(new, f"{new.name} (new)")
        check(session is not None, f"{new.name} connected with its new certificate")
        session.close()
        deadline, statuses = time.monotonic() + 10, {}
        while time.monotonic() < deadline:
            statuses = {
                arn.rsplit("/", 1)[1]: self.iot.describe_certificate(certificateId=arn.rsplit("/", 1)[1])[
                    "certificateDescription"]["status"]
                for arn in self.iot.list_thing_principals(thingName=new.name)["principals"]
            }
            if statuses.get(old.certificate_id) == "INACTIVE":
                break
            time.sleep(0.1)
        self.timeline.mark(f"{new.name}: statuses after rotation {sorted(statuses.values())}")
        active = {c for c, status in statuses.items() if status == "ACTIVE"}
        check(active == {new.certificate_id} and statuses.get(old.certificate_id) == "INACTIVE",
              f"only the new certificate is ACTIVE; the old one is {statuses.get(old.certificate_id)} (deactivate-previous)")
        check(self.connect_with_backoff(old, f"{old.name} (old)", attempts=2) is None,
              "the old certificate can no longer connect")

    # ------------------------------------------------------------------ 5c. decommission
    def decommission(self) -> None:
        device = self.genuine
        print(f"5c. signed Mender webhook decommissions {device.name}")
        # The function reads the secret from Secrets Manager, never from its environment, and a
        # rotation needs no redeploy: a mismatch makes it read the secret again (the first at once,
        # then at most once a minute; here the forged request below is that first mismatch).
        secrets = self.emulator.client("secretsmanager")
        old = self.webhook_secret()
        function = self.emulator.client("lambda").get_function_configuration(FunctionName=f"{STACK}-lifecycle")
        variables = function.get("Environment", {}).get("Variables", {})
        check(old.decode() not in variables.values() and "WEBHOOK_SECRET" not in variables,
              f"the secret is not in the function's environment ({sorted(variables)})")
        secrets.put_secret_value(SecretId=self.resources["WebhookSecret"], SecretString=f"rotated-{uuid.uuid4().hex}")
        check(self.webhook_secret() != old, "the webhook secret is rotated in Secrets Manager")
        body = self.mender_event("device-decommissioned", device.name)
        forged = hmac.new(b"not-the-webhook-secret", body, hashlib.sha256).hexdigest()
        status, _ = self.webhook(body, forged)
        check(status == 401, f"a webhook signed with another secret is refused ({status})")
        check(self.iot.describe_thing(thingName=device.name)["thingName"] == device.name, "and changes nothing")

        self.timeline.mark(f"{device.name}: decommission webhook sent")
        status, answer = self.signed_webhook(body)
        self.timeline.mark(f"{device.name}: webhook answered {status}")
        check(status == 200, f"the webhook signed with the rotated secret is accepted, no redeploy ({status}: {str(answer)[:160]})")
        check(answer.get("thingNames") == [device.name],
              f"the device id {device.name} resolved to its Thing through {DEVICE_ID_ATTRIBUTE} ({answer.get('thingNames')})")
        self.check_absent(lambda: self.iot.describe_thing(thingName=device.name), f"Thing {device.name} deleted")
        self.check_absent(
            lambda: self.iot.describe_certificate(certificateId=device.certificate_id), "its certificate deleted"
        )
        # Auto-registration has forgotten the deleted certificate, so the device's next connect
        # registers it again: the function must recognise the device from the ledger.
        fields = self.never_connects(device, f"{device.name} (again)", 4, f"{device.name} can no longer connect")
        check(fields.get("reason") == "Decommissioned", "JITR brought its certificate back; the function revoked it as decommissioned")
        status = self.iot.describe_certificate(certificateId=device.certificate_id)["certificateDescription"]["status"]
        check(status == "REVOKED", f"its certificate is {status}")
        # Decommission is of the device, not of one certificate.
        fields = self.never_connects(self.reissued, f"{device.name} (new certificate)", 4,
                                     f"{device.name} with a second, never-seen certificate cannot connect either")
        check(fields.get("reason") == "Decommissioned", "the function revoked the second certificate as decommissioned")
        self.check_absent(lambda: self.iot.describe_thing(thingName=device.name), f"no Thing {device.name} created again")

    # ------------------------------------------------------------------ 6. least privilege
    def least_privilege(self) -> None:
        print("6. each function role is denied what it does not need (IAM policy evaluation under AUTH=true)")
        arn = f"arn:aws:iot:{REGION}:{self.account}"
        certificate = f"{arn}:cert/{self.genuine.certificate_id}"
        crl = f"arn:aws:s3:::{CRL_BUCKET}/{CRL_KEY}"
        ledger = f"arn:aws:dynamodb:{REGION}:{self.account}:table/{self.resources['DeviceLedgerTable']}"
        other_table = f"arn:aws:dynamodb:{REGION}:{self.account}:table/another-table"
        secret = self.emulator.client("secretsmanager").describe_secret(SecretId=self.resources["WebhookSecret"])["ARN"]
        expectations = {
            "RegistrationRole": [
                ("iot:CreateThing", f"{arn}:thing/sensor-x", True),
                ("iot:AttachPolicy", certificate, True),
                ("iot:DescribeCACertificate", f"{arn}:cacert/{self.ca_id}", True),
                ("iot:ListCACertificates", "*", True),
                ("iot:GetPolicy", f"{arn}:policy/jitr-e2e-device", True),
                ("s3:GetObject", crl, True),
                ("iot:UpdateThing", f"{arn}:thing/sensor-x", True),
                ("iot:ListPrincipalThings", certificate, True),
                ("s3:GetObject", f"arn:aws:s3:::{CRL_BUCKET}/{PROFILES_KEY}", True),
                ("s3:GetObject", f"arn:aws:s3:::{CRL_BUCKET}/crl/partner.crl", True),
                ("dynamodb:GetItem", ledger, True),
                ("dynamodb:Query", ledger, True),
                ("dynamodb:UpdateItem", ledger, True),
                ("dynamodb:PutItem", ledger, True),
                ("dynamodb:Scan", ledger, False),
                ("dynamodb:DeleteItem", ledger, False),
                ("dynamodb:GetItem", other_table, False),
                ("dynamodb:UpdateItem", other_table, False),
                ("iot:DeleteThing", f"{arn}:thing/sensor-x", False),
                ("secretsmanager:GetSecretValue", secret, False),
                ("iot:UpdateThingGroup", f"{arn}:thinggroup/fleet", False),
                ("iot:DeleteCertificate", certificate, False),
                ("iot:UpdateCACertificate", f"{arn}:cacert/{self.ca_id}", False),
                ("iot:CreatePolicy", f"{arn}:policy/anything", False),
                ("s3:GetObject", f"arn:aws:s3:::{CRL_BUCKET}/other-object", False),
                ("s3:PutObject", crl, False),
                ("iot:CreateThing", f"arn:aws:iot:us-east-1:{self.account}:thing/sensor-x", False),
            ],
            "LifecycleRole": [
                ("iot:DeleteThing", f"{arn}:thing/sensor-x", True),
                # DeviceIdAttribute is set: devices are found by attribute (no resource-level form).
                ("iot:ListThings", "*", True),
                ("iot:DeleteCertificate", certificate, True),
                ("iot:DetachThingPrincipal", certificate, True),
                ("secretsmanager:GetSecretValue", secret, True),
                ("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:{REGION}:{self.account}:secret:{STACK}/other-AbCdEf", False),
                ("secretsmanager:PutSecretValue", secret, False),
                ("dynamodb:GetItem", ledger, True),
                ("dynamodb:UpdateItem", ledger, True),
                ("dynamodb:PutItem", ledger, True),
                ("dynamodb:Query", ledger, False),
                ("dynamodb:Scan", ledger, False),
                ("dynamodb:DeleteItem", ledger, False),
                ("dynamodb:UpdateItem", other_table, False),
                ("iot:CreateThing", f"{arn}:thing/sensor-x", False),
                ("iot:AttachPolicy", certificate, False),
                # Decommission works from the ledger's record, never by re-attaching.
                ("iot:AttachThingPrincipal", certificate, False),
                ("iot:DeleteCACertificate", f"{arn}:cacert/{self.ca_id}", False),
                ("s3:GetObject", crl, False),
                ("s3:PutObject", f"arn:aws:s3:::{CRL_BUCKET}/anything", False),
            ],
        }
        for logical_id, cases in expectations.items():
            role_arn = self.iam.get_role(RoleName=self.resources[logical_id])["Role"]["Arn"]
            for action, resource, allowed in cases:
                decision = self.iam.simulate_principal_policy(
                    PolicySourceArn=role_arn, ActionNames=[action], ResourceArns=[resource]
                )["EvaluationResults"][0]["EvalDecision"]
                short = resource.replace(f"{self.account}", "<account>")
                check((decision == "allowed") == allowed, f"{logical_id}: {action} on {short} -> {decision}")

    # ------------------------------------------------------------------ cleanup
    def delete_stack(self) -> None:
        print("7. delete the stack")
        # Revoked certificates keep their policies (IoT refuses them at connect anyway); the
        # template's policy can only be deleted once nothing is attached to it.
        targets = self.iot.list_targets_for_policy(policyName="jitr-e2e-device")["targets"]
        for target in targets:
            self.iot.detach_policy(policyName="jitr-e2e-device", target=target)
        check(True, f"device policy detached from the {len(targets)} certificate(s) still holding it")
        deleted = stack.make_delete(self.emulator, STACK)
        check(deleted.returncode == 0, f"make delete STACK={STACK} exit 0" + ("" if deleted.returncode == 0 else f": {deleted.stderr.strip()[-600:]}"))
        check("device ledger table (decisions and admissions): " in deleted.stdout, "and names the ledger table it retains")
        functions = [f["FunctionName"] for f in self.emulator.client("lambda").list_functions()["Functions"]]
        check(not any(f.startswith(STACK) for f in functions), f"stack {STACK} deleted with its functions")

    def dump_function_logs(self) -> None:
        for name in ("registration", "lifecycle"):
            group = LOG_GROUP.format(name)
            try:
                events = self.logs.filter_log_events(logGroupName=group)["events"]
            except Exception as error:  # the log group may not exist when deploy failed
                print(f"-- {group}: {error}")
                continue
            print(f"-- {group} (last 20 lines)")
            for event in events[-20:]:
                print("   " + event["message"].rstrip()[:400])


def main() -> int:
    emulator = Emulator(WORK / "ministack")
    started = time.monotonic()
    run = None
    try:
        emulator.start()
        print(f"ministack on {emulator.endpoint} (MQTT/mTLS :{emulator.mqtt_port}), AUTH=true")
        run = Run(emulator)
        run.deploy()
        run.register_ca()
        run.doctor()
        run.genuine_device()
        run.partner_devices()
        run.kept_out()
        run.revoke_active()
        run.explain()
        run.decisions_stand()
        run.rotation()
        run.decommission()
        run.least_privilege()
        run.timeline.show()
        run.timeline_shown = True
        run.delete_stack()
        print(f"\nend-to-end: passed in {time.monotonic() - started:.1f} s")
        return 0
    except Exception as error:
        print(f"\nend-to-end: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        if run is not None:
            if not run.timeline_shown:
                run.timeline.show()
            run.dump_function_logs()
        print(f"-- ministack log (tail)\n{emulator.log_tail()}", file=sys.stderr)
        return 1
    finally:
        emulator.stop()
        shutil.rmtree(WORK, ignore_errors=True)
        print("cleaned up: emulator stopped, its state and the device keys removed")


if __name__ == "__main__":
    sys.exit(main())
