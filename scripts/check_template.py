"""Checks that template.yaml embeds the policy documents under policies/ exactly.

The JSON files are the readable sources (IAM documents keep CloudFormation intrinsics in their
long form, e.g. {"Fn::Sub": "..."}); a reviewer reads those, and this check fails when the
template drifts from them. Run by `make lint`.
"""

import json
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent


def plain(value):
    """The decoded template as plain dicts, lists and strings."""
    return json.loads(json.dumps(value, default=str))


def main() -> int:
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
    for path, in_template in checks:
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
