"""One line per PostgreSQL version with its pass count, from JUnit XML files.

Usage: python dev/version_report.py DIR. Reads every ``DIR/<name>.xml`` with its
``DIR/<name>.version`` ("13.23"); exits 1 when a version has a failure, an
error, a non-zero ``DIR/<name>.rc`` or no result at all.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(xml: Path) -> dict[str, int]:
    """tests, failures, errors, skipped summed over the file's test suites."""
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    keys = ("tests", "failures", "errors", "skipped")
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}


def version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def main(folder: Path) -> int:
    ok = True
    lines = []
    for version_file in folder.glob("*.version"):
        version = version_file.read_text().strip()
        xml = version_file.with_suffix(".xml")
        rc_file = version_file.with_suffix(".rc")
        rc = rc_file.read_text().strip() if rc_file.exists() else "0"
        if not xml.exists():
            lines.append((version, f"PostgreSQL {version}: no result (exit status {rc})"))
            ok = False
            continue
        c = counts(xml)
        failed = c["failures"] + c["errors"]
        passed = c["tests"] - failed - c["skipped"]
        text = f"PostgreSQL {version}: {passed} passed, {failed} failed"
        if c["skipped"]:
            text += f", {c['skipped']} skipped"
        if rc != "0":
            text += f" (exit status {rc})"
        ok = ok and not failed and rc == "0"
        lines.append((version, text))
    if not lines:
        print("no test result", file=sys.stderr)
        return 1
    print("\n".join(text for _, text in sorted(lines, key=lambda v: version_key(v[0]))))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
