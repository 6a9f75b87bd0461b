"""The crates depend on each other by layer, one way (`make lint`, issue 21; docs/development.md
"Layout"): jitr-domain <- jitr-aws <- the functions and the CLI; jitr-pki beside the domain for
the CLI and the tests; jitr-testkit a dev-dependency only (and of jitr-tests, the emulator test
crate). Cargo already refuses a circle between packages; this refuses a dependency that runs
against the layers, and anything in jitr-domain's normal dependency tree that would bring the
SDK, an HTTP or TLS stack, or a tokio runtime into the pure crate.
"""

import json
import subprocess
import sys

# Which of our crates each may depend on, by kind: "normal" (also build) and "dev".
ALLOWED = {
    "jitr-domain": {"normal": set(), "dev": {"jitr-pki"}},
    "jitr-pki": {"normal": {"jitr-domain"}, "dev": set()},
    "jitr-aws": {"normal": {"jitr-domain"}, "dev": set()},
    "jitr-testkit": {"normal": {"jitr-domain", "jitr-aws", "jitr-pki"}, "dev": set()},
    "jitr-registration": {"normal": {"jitr-domain", "jitr-aws"}, "dev": {"jitr-testkit"}},
    "jitr-lifecycle": {"normal": {"jitr-domain", "jitr-aws"}, "dev": {"jitr-testkit"}},
    "jitr-cli": {
        "normal": {"jitr-domain", "jitr-aws", "jitr-pki", "jitr-registration", "jitr-lifecycle"},
        "dev": set(),
    },
    "jitr-tests": {
        "normal": {"jitr-domain", "jitr-aws", "jitr-testkit", "jitr-registration", "jitr-lifecycle"},
        "dev": set(),
    },
}
# Never in jitr-domain's normal tree (name prefixes).
FORBIDDEN_IN_DOMAIN = ("aws-sdk-", "aws-smithy-", "aws-config", "hyper", "rustls", "tokio-rustls", "lambda_runtime")
# tokio for the caches' locks only: no runtime, no I/O.
TOKIO_FEATURES_IN_DOMAIN = {"sync", "default"}


def metadata() -> dict:
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def domain_tree() -> list[tuple[str, set[str]]]:
    out = subprocess.run(
        ["cargo", "tree", "-p", "jitr-domain", "-e", "normal", "--prefix", "none", "-f", "{p}|{f}"],
        check=True, capture_output=True, text=True,
    ).stdout
    packages = []
    for line in out.splitlines():
        name_version, _, features = line.partition("|")
        name = name_version.split(" ")[0]
        packages.append((name, {f for f in features.strip().split(",") if f}))
    return packages


def main() -> int:
    problems = []
    ours = {p["name"]: p for p in metadata()["packages"] if p["name"].startswith("jitr-")}
    for name, package in sorted(ours.items()):
        if name == "jitr-fuzz":
            continue
        allowed = ALLOWED.get(name)
        if allowed is None:
            problems.append(f"{name}: a new crate: give it a layer in scripts/check_crate_layers.py")
            continue
        for dep in package["dependencies"]:
            if not dep["name"].startswith("jitr-"):
                continue
            kind = "dev" if dep["kind"] == "dev" else "normal"
            if dep["name"] not in allowed[kind] | (allowed["normal"] if kind == "dev" else set()):
                problems.append(f"{name} depends on {dep['name']} ({kind}): against the layers")
    tree = domain_tree()
    for dep, features in tree:
        if dep.startswith(FORBIDDEN_IN_DOMAIN):
            problems.append(f"jitr-domain's dependency tree holds {dep}: the pure crate links no SDK, HTTP or TLS stack")
        if dep == "tokio" and not features <= TOKIO_FEATURES_IN_DOMAIN:
            extra = ", ".join(sorted(features - TOKIO_FEATURES_IN_DOMAIN))
            problems.append(f"jitr-domain's tokio has features {extra}: only sync (the caches' locks)")
    problems = list(dict.fromkeys(problems))  # a package appears once per path to it
    for problem in problems:
        print(problem)
    if problems:
        print(f"crate layers: broken ({len(problems)} problems)")
    else:
        packages = len({name for name, _ in tree})
        print(f"crate layers: kept ({len(ours)} crates; jitr-domain's tree: {packages} packages, no SDK/HTTP/TLS)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
