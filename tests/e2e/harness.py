"""What the end-to-end run and the cargo-lambda loop share: the workspace, cargo's target
directory, and how a step passes or fails."""

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def target_directory() -> Path:
    """Cargo's target directory, wherever CARGO_TARGET_DIR or a config puts it."""
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return Path(json.loads(metadata)["target_directory"])


class Failure(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)
    print(f"   ok  {message}")
