"""Keeps README.md and docs/*.md true to the code (issue 20): every local link and anchor
resolves; every `make X` is a Makefile target; every `jitr X [Y]` is a command; every
environment variable named in backticks is read somewhere in the code, the template or the
tooling (or is one of AWS's own); every `Param=value` is a template parameter and every
"`X` output" a template output. Standard library only; run by `make lint`. Exits 1 on any finding.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Variables AWS, Lambda, cargo or the tooling define, which the docs may name without the code.
FOREIGN_VARIABLES = {
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IOT", "AWS_ENDPOINT_URL_S3",
    "AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME",
    "CARGO_TARGET_DIR", "RUST_LOG", "PATH", "SAM_CLI_TELEMETRY",
}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen = set(), {}
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        base = slug(line.lstrip("#"))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def prose(page: Path) -> str:
    return page.read_text()


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z0-9][a-z0-9-]*):", text, re.M))


def jitr_commands() -> set[str]:
    text = (ROOT / "cli" / "src" / "main.rs").read_text()
    names = set()
    for variant in re.findall(r"^\s{4}([A-Z][a-zA-Z]+) \{", text, re.M):
        names.add(re.sub(r"(?<!^)([A-Z])", r"-\1", variant).lower())
    return names


def template_names() -> tuple[set[str], set[str]]:
    text = (ROOT / "template.yaml").read_text()

    def section(name: str) -> set[str]:
        block = text.split(f"\n{name}:\n", 1)[1]
        block = re.split(r"\n[A-Z][A-Za-z]+:\n", block, maxsplit=1)[0]
        return set(re.findall(r"^  ([A-Za-z0-9]+):", block, re.M))

    return section("Parameters"), section("Outputs")


def code_text() -> str:
    parts = []
    for folder in ["crates", "functions", "cli", "tests", "scripts"]:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".rs", ".py", ".toml"} and "target" not in path.parts:
                parts.append(path.read_text(errors="replace"))
    for name in ["template.yaml", "Makefile", "Cargo.toml"]:
        parts.append((ROOT / name).read_text())
    return "\n".join(parts)


def main() -> int:
    findings = []
    targets, commands = makefile_targets(), jitr_commands()
    parameters, outputs = template_names()
    code = code_text()
    page_anchors = {page: anchors(page) for page in PAGES}
    for page in PAGES:
        text = prose(page)
        where = page.relative_to(ROOT)
        for target, anchor in re.findall(r"\]\(([^)\s:]*?)(?:#([^)\s]+))?\)", text):
            destination = (page.parent / target).resolve() if target else page
            if target and not destination.exists():
                findings.append(f"{where}: link to {target}, which does not exist")
                continue
            if anchor and destination.suffix == ".md" and anchor not in page_anchors.get(destination, anchors(destination)):
                findings.append(f"{where}: link to {target or ''}#{anchor}, no such heading")
        for target in re.findall(r"(?:`|^\s*)make ([a-z][a-z0-9-]+)", text, re.M):
            if target not in targets:
                findings.append(f"{where}: `make {target}`: no such Makefile target")
        for command in re.findall(r"(?:`|-- |^\s*)jitr ([a-z][a-z-]+)", text, re.M):
            if command not in commands:
                findings.append(f"{where}: `jitr {command}`: no such command")
        for variable in set(re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)(?:=[^`]*)?`", text)):
            if variable not in FOREIGN_VARIABLES and variable not in code:
                findings.append(f"{where}: `{variable}` is read nowhere in the code")
        # CamelCase names only: Makefile variables (SQS=1) and metric dimensions (Outcome=)
        # are not parameters.
        for name in set(re.findall(r"`([A-Z][a-z0-9]+[A-Z][a-zA-Z0-9]*)=[^`]*`", text)):
            if name not in parameters:
                findings.append(f"{where}: `{name}=...` is not a template parameter")
        for name in set(re.findall(r"`([A-Z][a-zA-Z0-9]+)` output", text)):
            if name not in outputs:
                findings.append(f"{where}: the `{name}` output is not in the template")
    for finding in findings:
        print(f"FAILED: {finding}")
    print(f"docs: {len(PAGES)} pages, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
