"""Check the installed packages against known vulnerabilities (`make audit`, CI).

Runs pip-audit (https://pypi.org/project/pip-audit/) over this virtualenv, asking PyPI's
vulnerability database (the OSV advisories PyPI serves per release). Exit codes:

    0  no known vulnerability with a fixed release (ones without a fix are printed)
    1  a known vulnerability has a fixed release: upgrade (the message says how)
    2  the audit could not run: pip-audit failed (no network to pypi.org), or PyPI answered
       for none of the packages (pip-audit itself then says "No known vulnerabilities
       found" while it skipped every one: a mirror without PyPI's per-release JSON API
       does that). "Could not look" is never reported as "nothing found".

`--allow-unavailable` turns exit 2 into 0 after a banner saying that nothing was audited
(.ci/run uses it unless AUDIT_REQUIRED=1, for machines whose PyPI is such a mirror).
Packages PyPI does not know (the project itself is skipped as editable) are listed as not
audited. Other arguments go to pip-audit (e.g. `-r requirements.txt --no-deps`).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

UPGRADE_HINT = ("Raise the package's lower bound in pyproject.toml (or run "
                "`.venv/bin/pip install -U <package>` for a dependency of a dependency), "
                "then `make install` and `make audit` again (README: Dependency audit).")


def findings(report: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """Return (vulnerabilities with a fixed release, those without, packages that could
    not be audited), one line each."""
    fixable, unfixed, skipped = [], [], []
    for dependency in report.get("dependencies", []):
        if dependency.get("skip_reason"):
            skipped.append(f"{dependency['name']}: {dependency['skip_reason']}")
            continue
        for vuln in dependency.get("vulns", []):
            aliases = ", ".join(vuln.get("aliases") or [])
            line = (f"{dependency['name']} {dependency['version']}: {vuln['id']}"
                    + (f" ({aliases})" if aliases else ""))
            if vuln.get("fix_versions"):
                fixable.append(f"{line} fixed in {', '.join(vuln['fix_versions'])}")
            else:
                unfixed.append(f"{line} has no fixed release yet")
    return fixable, unfixed, skipped


def run_audit(extra_args: list[str]) -> tuple[dict[str, Any] | None, str]:
    """Run pip-audit; return its JSON report (None when it could not produce one) and its
    error output."""
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "audit.json"
        result = subprocess.run(
            [sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off",
             "--format", "json", "--output", str(output), *extra_args],
            capture_output=True, text=True, timeout=600)
        try:
            return json.loads(output.read_text()), result.stderr
        except (OSError, ValueError):
            return None, result.stderr or result.stdout


def unavailable(reason: str, allow: bool) -> int:
    """Say loudly that nothing was audited; return 2, or 0 when that is allowed."""
    banner = "=" * 78
    print(f"{banner}\nDEPENDENCY AUDIT NOT PERFORMED: {reason}\n"
          f"No package was checked; this is not a pass.\n{banner}", file=sys.stderr)
    return 0 if allow else 2


def main(argv: list[str]) -> int:
    """Audit, print what was found, and return the exit code described above."""
    allow = "--allow-unavailable" in argv
    report, errors = run_audit([arg for arg in argv if arg != "--allow-unavailable"])
    if report is None:
        return unavailable("pip-audit could not query the vulnerability database "
                           "(is pypi.org reachable?):\n" + errors.strip()[-1500:], allow)
    fixable, unfixed, skipped = findings(report)
    audited = len(report.get("dependencies", [])) - len(skipped)
    if audited == 0:
        return unavailable(f"PyPI answered for none of the {len(skipped)} packages "
                           f"(e.g. {skipped[0] if skipped else 'none installed'})", allow)
    for line in skipped:
        print(f"not audited: {line}")
    for line in unfixed:
        print(f"warning: {line}")
    if fixable:
        print("Known vulnerabilities with a fix available:", file=sys.stderr)
        for line in fixable:
            print(f"  {line}", file=sys.stderr)
        print(UPGRADE_HINT, file=sys.stderr)
        return 1
    print(f"dependency audit: {audited} packages, no known vulnerability with a fix available")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
