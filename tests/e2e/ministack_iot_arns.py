"""Runs ministack with AWS's resource ARNs for the IoT calls it authorizes against "*".

ministack (1.5.33) derives an IoT request's IAM resource from the URL path. For seven calls
this project makes, the path does not name the resource AWS authorizes, so under AUTH=true
ministack checks them against "*" and denies every role scoped to this account's
certificates. AWS's own mapping (Service Authorization Reference, AWS IoT):

    AttachPolicy, DetachPolicy     PUT/POST /target-policies/{policy}   the target (cert ARN)
    ListAttachedPolicies           POST /attached-policies/{target}     "*" (no resource type)
    ListPrincipalThings            GET  /principals/things              x-amzn-principal (cert ARN)
    Attach/DetachThingPrincipal    PUT/DELETE /things/{name}/principals x-amzn-principal (cert ARN)
    DescribeCACertificate          GET  /cacertificate/{id}             cacert/{id}

This wrapper corrects exactly those routes and leaves every other decision to ministack,
so the template's least-privilege roles are tested as AWS would evaluate them.
"""

import json
import re
import sys
from urllib.parse import unquote

from ministack.core import iam_actions

_CERT_ARN = re.compile(r"^arn:aws[a-z-]*:iot:[a-z0-9-]+:\d{12}:(cert|thinggroup)/[^/]+$")
_ministack_resource_arn = iam_actions.extract_resource_arn


def _iot_arn_or_star(value):
    return value if isinstance(value, str) and _CERT_ARN.match(value) else "*"


def extract_resource_arn(service, method, path, headers, body, query_params, region, account_id):
    if service == "iot":
        parts = [unquote(p) for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "target-policies":
            try:
                target = json.loads(body or b"{}").get("target")
            except (ValueError, AttributeError):
                target = None
            return _iot_arn_or_star(target)
        if path.startswith("/attached-policies/"):
            # AWS lists no resource type for ListAttachedPolicies: it is authorized on "*".
            return "*"
        if len(parts) == 3 and parts[0] == "things" and parts[2] == "principals" and method in ("PUT", "DELETE"):
            return _iot_arn_or_star(headers.get("x-amzn-principal"))
        if parts == ["principals", "things"]:
            return _iot_arn_or_star(headers.get("x-amzn-principal"))
        if len(parts) == 2 and parts[0] == "cacertificate":
            return f"arn:aws:iot:{region}:{account_id}:cacert/{parts[1]}"
    return _ministack_resource_arn(service, method, path, headers, body, query_params, region, account_id)


iam_actions.extract_resource_arn = extract_resource_arn

if __name__ == "__main__":
    from ministack.app import main

    sys.argv[0] = "ministack"
    sys.exit(main())
