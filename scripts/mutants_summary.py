"""The last line of `make mutants`: counts from cargo-mutants' outcomes.json, and a failure
below the goal (90 % caught). Unviable mutants (they do not compile) are not counted; a
timeout counts as neither caught nor missed. Missed mutants are listed first: each needs a test
or a line in docs/mutants.md."""

import json
import sys
from pathlib import Path

GOAL = 90.0


def main() -> int:
    path, seconds = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if not path.exists():
        print(f"mutants: no {path} (cargo-mutants did not run; see the log beside it)")
        return 1
    outcomes = json.loads(path.read_text())["outcomes"]
    counts = {"CaughtMutant": 0, "MissedMutant": 0, "Timeout": 0, "Unviable": 0}
    missed = []
    for outcome in outcomes:
        summary = outcome.get("summary")
        if outcome.get("scenario") == "Baseline":
            if summary != "Success":
                print("mutants: the unmutated baseline failed its tests")
                return 1
            continue
        counts[summary] = counts.get(summary, 0) + 1
        if summary == "MissedMutant":
            mutant = outcome["scenario"]["Mutant"]
            missed.append(mutant.get('name') or f"{mutant['file']}: {mutant.get('replacement')}")
    for line in sorted(missed):
        print(f"missed: {line}")
    caught, missed_n, timeouts = counts["CaughtMutant"], counts["MissedMutant"], counts["Timeout"]
    judged = caught + missed_n
    score = 100.0 * caught / judged if judged else 0.0
    print(f"({counts['Unviable']} unviable, not counted; {seconds} s)")
    print(f"mutants: {caught} caught, {missed_n} missed, {timeouts} timeouts, {score:.1f}%")
    return 0 if score >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
