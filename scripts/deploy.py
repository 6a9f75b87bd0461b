"""`make deploy` and `make delete`: SAM without prompts, then what the operator needs next.

deploy: `sam deploy` of the built template with samconfig.toml's settings, never interactive.
The Function URL's authentication is a decision samconfig.toml states (`WebhookAuthType` in
`parameter_overrides`); without it nothing is deployed, so no prompt can abort half-way
(`sam deploy --guided` asks "has no authentication. Is this okay?" and stops on the default
answer). Prints the stack's outputs, the command that reads the webhook key, and the retained
resources. Runs with the SAM environment's Python (boto3 is there); AWS_ENDPOINT_URL is honoured
by both sam and boto3, which is how the end-to-end run points it at the emulator.

delete: `sam delete --no-prompts`, then names what the stack retains and how to remove it.
"""

import argparse
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
SAMCONFIG = ROOT / "samconfig.toml"
# Retained on delete (DeletionPolicy: Retain in template.yaml): logical id -> what it is.
RETAINED = {
    "DeviceLedgerTable": "device ledger table (decisions and admissions)",
    "DevicePolicy": "device policy (IoT refuses to delete one attached to certificates)",
}
AUTH_CHOICES = {
    "NONE": "no AWS authentication: each webhook is authenticated by its HMAC signature "
    "(Mender cannot sign AWS requests)",
    "AWS_IAM": "AWS_IAM: senders sign requests with SigV4",
}


def parse_overrides(text: str) -> dict[str, str]:
    """`Key=Value Key2="a b"` as sam's --parameter-overrides takes it."""
    pairs = {}
    for word in shlex.split(text):
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise SystemExit(f"make deploy: parameter {word!r} is not Key=Value")
        pairs[key] = value
    return pairs


def samconfig_overrides(path: Path) -> dict[str, str]:
    config = tomllib.loads(path.read_text())
    deploy = config.get("default", {}).get("deploy", {}).get("parameters", {})
    return parse_overrides(deploy.get("parameter_overrides", ""))


def outputs(cloudformation, stack: str) -> dict[str, str]:
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def deploy(args) -> int:
    config = Path(args.config)
    overrides = samconfig_overrides(config) | parse_overrides(args.parameters)
    auth = overrides.get("WebhookAuthType")
    if auth not in AUTH_CHOICES:
        print(
            f"make deploy: {config.name} must state the Function URL's authentication: "
            f"WebhookAuthType=NONE or AWS_IAM in parameter_overrides (found {auth!r})",
            file=sys.stderr,
        )
        return 2
    template = Path(args.template)
    if not template.is_file():
        print(f"make deploy: {template} does not exist (make sam-build writes it)", file=sys.stderr)
        return 2
    print(f"Function URL authentication: {AUTH_CHOICES[auth]} (WebhookAuthType, samconfig.toml)")
    command = [
        args.sam, "deploy",
        # Explicit: sam looks for its config beside the template it is given otherwise.
        "--config-file", str(config),
        "--template-file", str(template),
        "--stack-name", args.stack,
        "--parameter-overrides", " ".join(f"{k}={shlex.quote(v)}" for k, v in overrides.items()),
        "--no-confirm-changeset",
        "--no-fail-on-empty-changeset",
    ]
    deployed = subprocess.run(command, cwd=ROOT, env={**os.environ, "SAM_CLI_TELEMETRY": "0"})
    if deployed.returncode != 0:
        print(f"make deploy: sam deploy failed (exit {deployed.returncode}); its message is above", file=sys.stderr)
        return deployed.returncode
    found = outputs(boto3.client("cloudformation"), args.stack)
    print(f"\nstack {args.stack} deployed. Outputs:")
    for key in sorted(found):
        print(f"  {key:34} {found[key]}")
    secret = found.get("WebhookSecretArn")
    if secret:
        print("\nThe webhook key for Mender (or put Mender's own value into the secret; read at run time):")
        print(f"  aws secretsmanager get-secret-value --secret-id {secret} --query SecretString --output text")
    print(
        "Next: register each device CA (jitr ca register --ca-cert CA.pem --ca-key CA.key), then "
        "put its id into AllowedCaCertificateIds or a profile."
    )
    return 0


def delete(args) -> int:
    cloudformation = boto3.client("cloudformation")
    try:
        summaries = cloudformation.list_stack_resources(StackName=args.stack)["StackResourceSummaries"]
    except cloudformation.exceptions.ClientError as error:
        print(f"make delete: stack {args.stack}: {error}", file=sys.stderr)
        return 1
    kept = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries if r["LogicalResourceId"] in RETAINED}
    deleted = subprocess.run(
        [args.sam, "delete", "--config-file", str(args.config), "--stack-name", args.stack, "--no-prompts"],
        cwd=ROOT, env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    if deleted.returncode != 0:
        print(f"make delete: sam delete failed (exit {deleted.returncode}); its message is above", file=sys.stderr)
        return deleted.returncode
    print(f"\nstack {args.stack} deleted. Retained on purpose:")
    for logical_id, physical_id in kept.items():
        print(f"  {RETAINED[logical_id]}: {physical_id}")
    if "DevicePolicy" in kept:
        policy = kept["DevicePolicy"]
        print(
            "To remove the policy: detach it from each certificate "
            f"(aws iot list-targets-for-policy --policy-name {policy}; aws iot detach-policy ...), "
            f"then aws iot delete-policy --policy-name {policy}"
        )
    if "DeviceLedgerTable" in kept:
        print(f"To remove the ledger: aws dynamodb delete-table --table-name {kept['DeviceLedgerTable']}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["deploy", "delete"])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--sam", required=True, help="the sam executable")
    parser.add_argument("--template", default=".aws-sam/build/template.yaml")
    parser.add_argument("--parameters", default="", help="Key=Value ... over samconfig.toml's")
    parser.add_argument("--config", default=str(SAMCONFIG), help="the SAM config file (samconfig.toml)")
    args = parser.parse_args()
    return deploy(args) if args.action == "deploy" else delete(args)


if __name__ == "__main__":
    sys.exit(main())
