"""Package the real template.yaml for the emulator and deploy it with `make deploy`.

The only change made to the template is the packaging step's own: each function's CodeUri
(the source folder that `sam build` compiles with cargo-lambda) becomes the S3 location of a
zip holding its `bootstrap`. Here the bootstrap is the native build: the emulator runs
`provided.*` functions as local processes, so an arm64 binary could not run on this host.
Resource types the emulator's CloudFormation does not know (`EMULATOR_LACKS`) are left out and
named in the run's output; cfn-lint and `sam validate --lint` check them.
"""

import io
import json
import os
import shlex
import subprocess
import zipfile
from pathlib import Path

from cfnlint.decode import cfn_yaml

from harness import ROOT

ARTIFACT_BUCKET = "jitr-e2e-artifacts"
# ministack 1.5.33 has neither the resource nor the Logs API behind it (PutQueryDefinition).
EMULATOR_LACKS = {"AWS::Logs::QueryDefinition"}
# Nor CodeDeploy, which a function's DeploymentPreference (gradual traffic shift) is made of: the
# functions keep their alias, without the shift.
EMULATOR_LACKS_PROPERTIES = {("AWS::Serverless::Function", "DeploymentPreference")}


def _zip_bootstrap(binary: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        entry = zipfile.ZipInfo("bootstrap")
        entry.external_attr = 0o755 << 16
        archive.writestr(entry, binary.read_bytes())
    return buffer.getvalue()


def package(template_path: Path, binaries: Path, s3) -> tuple[str, list[str]]:
    """The template as JSON with each cargo-lambda function pointing at its uploaded zip, and
    the logical ids of the resources left out for the emulator."""
    template = cfn_yaml.loads(template_path.read_text())
    left_out = sorted(name for name, r in template["Resources"].items() if r["Type"] in EMULATOR_LACKS)
    for name in left_out:
        del template["Resources"][name]
    for name, resource in template["Resources"].items():
        for kind, prop in EMULATOR_LACKS_PROPERTIES:
            if resource["Type"] == kind and prop in resource.get("Properties", {}):
                del resource["Properties"][prop]
                left_out.append(f"{name}.{prop}")
    s3.create_bucket(Bucket=ARTIFACT_BUCKET, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    packaged = 0
    for resource in template["Resources"].values():
        metadata = resource.get("Metadata", {})
        if resource["Type"] != "AWS::Serverless::Function" or metadata.get("BuildMethod") != "rust-cargolambda":
            continue
        binary = binaries / metadata["BuildProperties"]["Binary"]
        if not binary.is_file():
            raise RuntimeError(f"{binary} is missing: build the functions first (make e2e does)")
        key = f"{binary.name}.zip"
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=_zip_bootstrap(binary))
        resource["Properties"]["CodeUri"] = {"Bucket": ARTIFACT_BUCKET, "Key": key}
        packaged += 1
    if packaged != 2:
        raise RuntimeError(f"expected the two cargo-lambda functions in {template_path}, found {packaged}")
    return json.dumps(template), left_out


def make_deploy(emulator, name: str, work: Path, binaries: Path, parameters: dict[str, str]) -> subprocess.CompletedProcess:
    """`make deploy` as an operator runs it, pointed at the emulator: AWS_ENDPOINT_URL, its
    credentials, and DEPLOY_TEMPLATE = the emulator's packaging (instead of `sam build`'s arm64
    bootstraps, which cannot run on this host). Prints its output indented."""
    body, left_out = package(ROOT / "template.yaml", binaries, emulator.client("s3"))
    print(f"   ..  left out, unknown to the emulator (cfn-lint checks them): {', '.join(left_out) or 'none'}")
    packaged = work / "packaged-template.json"
    packaged.write_text(body)
    overrides = " ".join(f"{key}={shlex.quote(value)}" for key, value in parameters.items())
    return make(emulator, "deploy", f"STACK={name}", f"DEPLOY_TEMPLATE={packaged}", f"PARAMETERS={overrides}")


def make_delete(emulator, name: str) -> subprocess.CompletedProcess:
    return make(emulator, "delete", f"STACK={name}")


def make(emulator, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **emulator.operator_environment()}
    result = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    print(f"   $ make {args[0]}")
    for line in result.stdout.splitlines():
        print(f"     {line}")
    return result


def outputs(cloudformation, name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
def resources(cloudformation, name: str) -> dict[str, str]:
    """Logical id -> physical id."""
    summaries = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries}


