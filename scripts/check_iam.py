"""Checks every IAM statement in template.yaml against the Service Authorization Reference.

Offline: the reference is policy_sentry's bundled copy (requirements-iam.txt pins it). For each
statement of each role and policy (both branches of every !If), with the template's intrinsics
resolved to example values:
  - every action exists;
  - every resource is one the statement's actions accept: an ARN of a resource type one of them
    lists, or "*" only where an action lists no resource type (e.g. iot:ListAttachedPolicies);
  - every action is granted on at least one resource of a type it accepts.
A resource no action accepts grants nothing on AWS (and the action it was meant for is denied).
Run by `make lint`; exits 1 on any finding.
"""

import re
import sys
from pathlib import Path

import yaml
from policy_sentry.querying.actions import get_action_data

ROOT = Path(__file__).resolve().parent.parent
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "jitr",
}
# What GetAtt <resource>.Arn is for each resource type the policies name.
ARN_OF = {
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:eu-west-1:123456789012:table/{name}",
    "AWS::SQS::Queue": "arn:aws:sqs:eu-west-1:123456789012:{name}",
    "AWS::SNS::Topic": "arn:aws:sns:eu-west-1:123456789012:{name}",
    "AWS::SecretsManager::Secret": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:{name}-AbCdEf",
}


class Tagged(dict):
    """A CloudFormation short-form intrinsic (!Sub, !Ref, ...) as its long form."""


def _construct(tag):
    def build(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if tag == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return Tagged({("Ref" if tag == "Ref" else f"Fn::{tag}"): value})

    return build


class Loader(yaml.SafeLoader):
    pass


for _tag in ["Sub", "Ref", "GetAtt", "If", "Join", "Select", "Split", "Equals", "Not", "And", "Or", "Condition", "FindInMap", "Base64", "ImportValue", "GetAZs"]:
    Loader.add_constructor(f"!{_tag}", _construct(_tag))


class Resolver:
    def __init__(self, template):
        self.resources = template["Resources"]
        self.parameters = template.get("Parameters", {})

    def ref(self, name):
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            default = self.parameters[name].get("Default", "")
            return str(default) if default != "" else f"example-{name.lower()}"
        return f"jitr-{name.lower()}"

    def getatt(self, logical, attribute):
        kind = self.resources.get(logical, {}).get("Type", "")
        if attribute == "Arn" and kind in ARN_OF:
            return ARN_OF[kind].format(name=f"jitr-{logical.lower()}")
        return f"jitr-{logical.lower()}-{attribute.lower()}"

    def variants(self, value):
        """Every resolved form of value: one per combination of !If branches."""
        if isinstance(value, dict) and len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return [] if arg == "AWS::NoValue" else [self.ref(arg)]
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return [self.getatt(logical, attribute)]
            if key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]

                def one(match):
                    name = match.group(1)
                    if "." in name:
                        return self.getatt(*name.split(".", 1))
                    return self.ref(name)

                return [re.sub(r"\$\{([^}!]+)\}", one, text)]
            if key == "Fn::If":
                return self.variants(arg[1]) + self.variants(arg[2])
        if isinstance(value, dict):
            out = [{}]
            for key, item in value.items():
                options = self.variants(item)
                out = [{**o, key: v} for o in out for v in options] if options else out
            return out
        if isinstance(value, list):
            out = [[]]
            for item in value:
                options = self.variants(item)
                if options:
                    out = [o + [v] for o in out for v in options]
            return out
        return [value]


def documents(template, resolver):
    """(name, resolved policy document) for every IAM policy in the template."""
    for logical, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for resolved in resolver.variants(policy):
                    yield f"{logical}/{resolved['PolicyName']}", resolved["PolicyDocument"]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for document in resolver.variants(props["PolicyDocument"]):
                yield logical, document


def _tokens(pattern, is_format):
    """A pattern as tokens: ("LIT", c), ANY (one character) or STAR (any run of them). In a
    reference format a ${Placeholder} is one or more characters other than ":" (partition,
    region, account and the names these policies use never hold one)."""
    out, i = [], 0
    while i < len(pattern):
        if is_format and pattern.startswith("${", i):
            i = pattern.index("}", i) + 1
            out += [("ANY", ":"), ("STAR", ":")]
        elif not is_format and pattern[i] in "*?":
            out.append(("STAR", "") if pattern[i] == "*" else ("ANY", ""))
            i += 1
        else:
            out.append(("LIT", pattern[i]))
            i += 1
    return out


def _meet(x, y):
    """Whether one character can satisfy both single-character tokens."""
    if x[0] == "LIT" and y[0] == "LIT":
        return x[1] == y[1]
    if x[0] == "LIT":
        return x[1] not in y[1]
    if y[0] == "LIT":
        return y[1] not in x[1]
    return True


def overlaps(resource, arn_format):
    """Whether some ARN matches both the policy's resource (with * and ?) and the reference's
    format (with ${Placeholder}s): the two patterns' languages intersect."""
    a, b = _tokens(resource, False), _tokens(arn_format, True)
    seen = set()

    def one(token):
        return ("ANY", token[1]) if token[0] == "STAR" else token

    def reach(i, j):
        if (i, j) in seen:
            return False
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i][0] == "STAR" and reach(i + 1, j):
            return True
        if j < len(b) and b[j][0] == "STAR" and reach(i, j + 1):
            return True
        if i < len(a) and j < len(b) and _meet(one(a[i]), one(b[j])):
            # A star consumes one character and stays; any other token moves on.
            next_i = i if a[i][0] == "STAR" else i + 1
            next_j = j if b[j][0] == "STAR" else j + 1
            if (next_i, next_j) != (i, j) and reach(next_i, next_j):
                return True
            if (next_i, next_j) == (i, j) and (reach(i + 1, j + 1) or reach(i, j + 1) or reach(i + 1, j)):
                return True
        return False

    return reach(0, 0)


def as_list(value):
    return value if isinstance(value, list) else [value]


def accepted_formats(action):
    service, name = action.split(":", 1)
    data = get_action_data(service, name)
    rows = data.get(service, []) if data else []
    if not rows:
        return None
    return [row["resource_arn_format"] for row in rows]


def check_statement(where, statement):
    findings = []
    actions = as_list(statement.get("Action", []))
    resources = as_list(statement.get("Resource", []))
    formats = {}
    for action in actions:
        accepted = accepted_formats(action)
        if accepted is None:
            findings.append(f"{where}: {action} is not in the Service Authorization Reference")
            continue
        formats[action] = accepted

    def accepts(action, resource):
        accepted = formats[action]
        if resource == "*":
            return accepted == ["*"]
        return any(f != "*" and overlaps(resource, f) for f in accepted)

    for action in formats:
        if not any(accepts(action, r) for r in resources):
            wanted = ", ".join(f for f in formats[action])
            findings.append(f"{where}: {action} is granted on {resources}, none of them a resource it accepts ({wanted})")
    for resource in resources:
        if formats and not any(accepts(a, resource) for a in formats):
            findings.append(f"{where}: {resource} is accepted by none of {sorted(formats)}")
    return findings


def _self_check():
    """The matcher on pairs whose answer is known, so a broken matcher cannot pass every policy."""
    cert = "arn:${Partition}:iot:${Region}:${Account}:cert/${Certificate}"
    stream = "arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}:log-stream:${LogStreamName}"
    known = [
        ("arn:aws:iot:eu-west-1:123456789012:cert/*", cert, True),
        ("arn:aws:iot:eu-west-1:123456789012:cert/abc", cert, True),
        ("arn:aws:iot:eu-west-1:123456789012:thing/*", cert, False),
        ("arn:aws:iot:*:*:thing/*", cert, False),
        ("arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/f:*", stream, True),
        ("arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/f", stream, False),
    ]
    for resource, arn_format, expected in known:
        assert overlaps(resource, arn_format) == expected, (resource, arn_format, expected)


def main() -> int:
    _self_check()
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"
    template = yaml.load(path.read_text(), Loader=Loader)
    resolver = Resolver(template)
    findings, statements = [], 0
    for name, document in documents(template, resolver):
        for statement in as_list(document["Statement"]):
            statements += 1
            findings += check_statement(f"{name}/{statement.get('Sid', '?')}", statement)
    for finding in dict.fromkeys(findings):
        print(f"FAILED: {finding}")
    print(f"IAM against the Service Authorization Reference: {statements} statements, {len(set(findings))} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
