"""Checks template.yaml: it embeds the policy documents under policies/ exactly, and it keeps
the rules of real AWS that the emulator does not enforce.

The JSON files are the readable sources (IAM documents keep CloudFormation intrinsics in their
long form, e.g. {"Fn::Sub": "..."}); a reviewer reads those, and this check fails when the
template drifts from them. The AWS rules (issue 19) each cite the page they come from. Run by
`make lint`; `python scripts/check_template.py OTHER.yaml` checks another template's rules.
"""

import json
import re
import sys
import tomllib
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent


def plain(value):
    """The decoded template as plain dicts, lists and strings."""
    return json.loads(json.dumps(value, default=str))


def refs(value):
    """Every resource or parameter name a value refers to (Ref, GetAtt, Sub)."""
    text = json.dumps(value)
    return set(re.findall(r'"Ref": "([^"]+)"', text)) | set(re.findall(r'"Fn::GetAtt": \["([^"]+)"', text)) | set(
        re.findall(r"\$\{([A-Za-z0-9]+)", text)
    )


def aws_rules(template, samconfig):
    """(rule, ok) for each AWS behaviour the emulator does not check."""
    resources = template["Resources"]
    parameters = template["Parameters"]
    conditions = template.get("Conditions", {})
    of_type = lambda kind: {k: v for k, v in resources.items() if v["Type"] == kind}  # noqa: E731
    props = lambda r: r.get("Properties", {})  # noqa: E731
    functions = of_type("AWS::Serverless::Function")
    timeout = lambda f: props(f).get("Timeout", template["Globals"]["Function"]["Timeout"])  # noqa: E731
    rules = []

    # SNS: CloudWatch cannot use the AWS-managed key alias/aws/sns, so alarm notifications to a
    # topic encrypted with it are never delivered (SNS developer guide, "Key management":
    # https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html).
    for name, topic in of_type("AWS::SNS::Topic").items():
        key = json.dumps(props(topic).get("KmsMasterKeyId", ""))
        rules.append((f"{name}: no AWS-managed KMS key (alias/aws/...)", "alias/aws/" not in key))

    # X-Ray: Lambda checks the role's X-Ray access when a function with active tracing is created
    # or updated; a separate AWS::IAM::Policy may attach after it. The statement lives in the role.
    for name, policy in of_type("AWS::IAM::Policy").items():
        grants_xray = "xray:" in json.dumps(props(policy).get("PolicyDocument", {}))
        rules.append((f"{name}: X-Ray permissions in the role's own policy, not a separate one", not grants_xray))

    # IoT refuses to delete a policy attached to certificates: retain it on delete and replace.
    for name, policy in of_type("AWS::IoT::Policy").items():
        retained = policy.get("DeletionPolicy") == "Retain" and policy.get("UpdateReplacePolicy") == "Retain"
        rules.append((f"{name}: DeletionPolicy and UpdateReplacePolicy Retain", retained))

    # Reserved concurrency: Lambda keeps 100 unreserved per account, so 0 (= unreserved) must be
    # allowed (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
    for name, function in functions.items():
        reserved = props(function).get("ReservedConcurrentExecutions")
        params = [p for p in refs(reserved) if p in parameters] if reserved is not None else []
        rules.append((
            f"{name}: reserved concurrency from a parameter that allows 0 = unreserved",
            reserved is None or (bool(params) and all(parameters[p].get("MinValue", 1) == 0 for p in params) and "Fn::If" in reserved),
        ))
        # A public Function URL takes the account's concurrency unless the function reserves some.
        if "FunctionUrlConfig" in props(function):
            rules.append((f"{name}: a Function URL with reserved concurrency", reserved is not None))

    # Canary rollback alarms: not Lambda's Errors of the whole function (every version, the
    # schedule, Retryable throttles), but the live alias' new version or Permanent outcomes.
    for name, function in functions.items():
        alarms = props(function).get("DeploymentPreference", {}).get("Alarms", [])
        for alarm_ref in alarms:
            alarm = props(resources[alarm_ref["Ref"]])
            text = json.dumps(alarm)
            on_new_version = '"ExecutedVersion"' in text and ":live" in text
            on_permanent = alarm.get("Namespace") == "IotJitr" and {"Name": "Class", "Value": "Permanent"} in alarm.get("Dimensions", [])
            rules.append((f"{name}: rollback alarm {alarm_ref['Ref']} watches the new version or Permanent outcomes", on_new_version or on_permanent))
            rules.append((f"{name}: rollback alarm {alarm_ref['Ref']} needs more than one failure", float(alarm.get("Threshold", 0)) >= 3))

    # SQS event sources: visibility timeout at least 6x the function timeout, maxReceiveCount at
    # least 5, and no reservation below the source's maximum concurrency
    # (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html).
    for name, mapping in of_type("AWS::Lambda::EventSourceMapping").items():
        queue_name = props(mapping)["EventSourceArn"]["Fn::GetAtt"][0]
        function_name = next(iter(refs(props(mapping)["FunctionName"]))).removesuffix("Aliaslive")
        queue = props(resources[queue_name])
        rules.append((f"{name}: {queue_name} visibility timeout >= 6 x function timeout", queue.get("VisibilityTimeout", 30) >= 6 * timeout(functions[function_name])))
        rules.append((f"{name}: {queue_name} maxReceiveCount >= 5", queue.get("RedrivePolicy", {}).get("maxReceiveCount", 0) >= 5))
        reserved = props(functions[function_name]).get("ReservedConcurrentExecutions")
        if "ScalingConfig" in props(mapping):
            condition = reserved["Fn::If"][0] if isinstance(reserved, dict) and "Fn::If" in reserved else None
            rules.append((
                f"{name}: {function_name} reserves no concurrency when the source caps it",
                reserved is None or (condition is not None and "DirectInvoke" in json.dumps(conditions.get(condition))),
            ))

    # DynamoDB: SSEEnabled true alone moves the table to the AWS-managed key (billed); the free
    # AWS-owned default needs no SSESpecification.
    for name, table in of_type("AWS::DynamoDB::Table").items():
        sse = props(table).get("SSESpecification")
        rules.append((f"{name}: no AWS-managed KMS key by default", sse is None or "Fn::If" in sse or "KMSMasterKeyId" in sse))

    # Secrets Manager appends "-" and six characters: a name that ends so itself is ambiguous in
    # partial ARNs (https://docs.aws.amazon.com/secretsmanager/latest/userguide/troubleshoot.html).
    for name, secret in of_type("AWS::SecretsManager::Secret").items():
        rules.append((f"{name}: name not ending in a hyphen and six characters", not re.search(r"-[^-/]{6}$", json.dumps(props(secret).get("Name", "")).strip('"}'))))

    # S3 answers a missing object with 403 unless the reader may list the bucket.
    for name, policy in [*of_type("AWS::IAM::Policy").items()]:
        statements = props(policy)["PolicyDocument"]["Statement"]
        gets = any("s3:GetObject" in json.dumps(s["Action"]) for s in statements)
        lists = any("s3:ListBucket" in json.dumps(s["Action"]) for s in statements)
        rules.append((f"{name}: s3:ListBucket beside s3:GetObject (a missing object reads 404)", lists or not gets))

    # rust-cargolambda is a SAM beta build method: opted in so `sam build` does not prompt.
    if any(f.get("Metadata", {}).get("BuildMethod") == "rust-cargolambda" for f in functions.values()):
        beta = samconfig.get("default", {}).get("build", {}).get("parameters", {}).get("beta_features")
        rules.append(("samconfig.toml: beta_features for BuildMethod rust-cargolambda", beta is True))
    return rules


def main() -> int:
    if len(sys.argv) > 1:
        template, matches = decode(sys.argv[1])
        rules = aws_rules(plain(template), tomllib.loads((ROOT / "samconfig.toml").read_text()))
        for rule, ok in rules:
            print(f"{'ok' if ok else 'FAILED'}: {rule}")
        return 0 if all(ok for _, ok in rules) else 1
    template, matches = decode(str(ROOT / "template.yaml"))
    if matches:
        for match in matches:
            print(f"template.yaml: {match}")
        return 1
    resources = plain(template)["Resources"]

    def inline_policy(role, name):
        policies = resources[role]["Properties"]["Policies"]
        return next(p["PolicyDocument"] for p in policies if p["PolicyName"] == name)

    checks = [
        ("policies/device-policy.json", resources["DevicePolicy"]["Properties"]["PolicyDocument"]),
        ("policies/registration-iam.json", inline_policy("RegistrationRole", "registration")),
        ("policies/registration-crl-iam.json", resources["RegistrationRevocationListPolicy"]["Properties"]["PolicyDocument"]),
        ("policies/registration-profiles-iam.json", resources["RegistrationProfilesPolicy"]["Properties"]["PolicyDocument"]),
        ("policies/lifecycle-iam.json", inline_policy("LifecycleRole", "lifecycle")),
        ("policies/lifecycle-device-id-iam.json", resources["LifecycleDeviceIdPolicy"]["Properties"]["PolicyDocument"]),
    ]
    failed = 0
    for rule, ok in aws_rules(plain(template), tomllib.loads((ROOT / "samconfig.toml").read_text())):
        checks.append((rule, None))
        if not ok:
            failed += 1
        print(f"{'ok' if ok else 'FAILED'}: {rule}")
    for path, in_template in checks:
        if in_template is None:
            continue
        on_disk = json.loads((ROOT / path).read_text())
        if on_disk == in_template:
            print(f"ok: template.yaml matches {path}")
        else:
            failed += 1
            print(f"FAILED: template.yaml differs from {path}")
            print("  template:", json.dumps(in_template, sort_keys=True))
            print("  file:    ", json.dumps(on_disk, sort_keys=True))
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
