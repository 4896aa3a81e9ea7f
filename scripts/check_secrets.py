"""Fail when a tracked file holds a secret that .secrets.baseline does not list (make lint).

detect-secrets scans every file git tracks with the plugins and filters the baseline names;
a finding that is not in the baseline (same file, type and hashed value: line numbers may
move) is printed and fails the check. The baseline lists the test values and placeholders
that look like secrets, each audited as not one (`is_secret: false`). After adding such a
value on purpose, refresh it with `make secrets-baseline` and commit the change.
"""
from __future__ import annotations

import sys

from detect_secrets.core import baseline

BASELINE = ".secrets.baseline"


def main() -> int:
    """Scan the tracked files; print each secret the baseline does not know; 1 if any."""
    known = baseline.load(baseline.load_from_file(BASELINE), BASELINE)
    found = baseline.create(".")
    new = found - known
    for filename, secret in new:
        print(f"{filename}:{secret.line_number}: {secret.type} not in {BASELINE}")
    if new:
        print(f"A real secret must leave the repository (and be rotated); a test value: "
              f"`make secrets-baseline`, then commit {BASELINE}.")
        return 1
    print(f"secrets: none but the {len(list(known))} known in {BASELINE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
