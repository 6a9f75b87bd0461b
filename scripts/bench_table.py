#!/usr/bin/env python3
"""Prints `make bench`'s table from the rows the benchmarks appended, and writes it to the report.

Rows are `figure<TAB>target<TAB>measured<TAB>PASS|FAIL`; lines starting with `# ` are notes
(the critical path's call sequence). Usage: bench_table.py ROWS REPORT
"""
import datetime
import os
import platform
import subprocess
import sys


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, {rustc}"


def main():
    rows_path, report_path = sys.argv[1], sys.argv[2]
    rows, notes = [], []
    with open(rows_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# "):
                notes.append(line[2:])
            elif line:
                rows.append(line.split("\t"))
    on = machine()
    width = max(len(r[0]) for r in rows)
    twidth = max(len(r[1]) for r in rows)
    mwidth = max(len(r[2]) for r in rows)
    print(f"machine: {on}")
    print(f"{'figure':<{width}}  {'target':<{twidth}}  {'measured':<{mwidth}}  result")
    for figure, target, measured, verdict in rows:
        print(f"{figure:<{width}}  {target:<{twidth}}  {measured:<{mwidth}}  {verdict}")
    passed = sum(1 for r in rows if r[3] == "PASS")
    summary = f"bench: {passed} of {len(rows)} figures within target"

    today = datetime.date.today().isoformat()
    with open(report_path, "w") as out:
        out.write("# Benchmarks\n\n")
        out.write(f"The latest `make bench`, {today}, on {on}.\n")
        out.write("Regenerate with `make bench` (about 5 minutes after the release build).\n\n")
        out.write("| figure | target | measured | result |\n|---|---|---|---|\n")
        for figure, target, measured, verdict in rows:
            out.write(f"| {figure} | {target} | {measured} | {verdict} |\n")
        out.write(f"\n`{summary}`\n")
        if notes:
            out.write("\n## Critical path of a warm registration (50 ms added to every AWS call)\n\n")
            out.write("Calls as they ran, from the first call's start; calls that overlap ran concurrently.\n\n```\n")
            out.write("\n".join(notes) + "\n```\n")
    print(summary)


if __name__ == "__main__":
    main()
