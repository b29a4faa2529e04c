"""Dependency audit: pip-audit of the installed environment against PyPI's advisories.

``make audit`` runs it. Exit status: 0 when every installed package was checked and none has
a known vulnerability (other than those in ``IGNORED``), 1 when some have, 2 when some
packages could not be checked at all, which is what pip-audit reports, without failing, when
its vulnerability service cannot be reached ("Dependency not found on PyPI"): an audit that
checked nothing must not read as a clean one. ``--allow-unchecked`` turns 2 into 0 with a
warning (``make test`` uses it where the service is unreachable, see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

IGNORED: dict[str, str] = {
    # "PYSEC-YYYY-NNN": "why it does not apply to this project; when to look again",
}
"""Known vulnerabilities accepted on purpose, each with its reason (empty: none accepted)."""


def run_pip_audit(python: str) -> dict[str, object]:
    """pip-audit's JSON report for the environment of ``python`` (editable installs, i.e.
    this project itself, skipped). Raises SystemExit(2) when pip-audit itself fails."""
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "audit.json")
        argv = [sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner=off"]
        argv += ["--format=json", f"--output={report}"]
        argv += [f"--ignore-vuln={vuln}" for vuln in IGNORED]
        env = {**os.environ, "PIPAPI_PYTHON_LOCATION": python}
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if not os.path.exists(report):
            print(f"audit: pip-audit failed (status {result.returncode}):\n{result.stderr}")
            raise SystemExit(2)
        with open(report) as file:
            loaded: dict[str, object] = json.load(file)
            return loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="environment to audit")
    parser.add_argument("--allow-unchecked", action="store_true", help="exit 0 when unchecked")
    args = parser.parse_args()
    dependencies = run_pip_audit(args.python)["dependencies"]
    assert isinstance(dependencies, list)
    unchecked = [d for d in dependencies if "skip_reason" in d]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln["fix_versions"]) or "no fix yet"
            print(f"audit: {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})")
    checked = len(dependencies) - len(unchecked)
    print(
        f"audit: {checked} of {len(dependencies)} packages checked, {len(vulnerable)} with "
        f"known vulnerabilities, {len(IGNORED)} vulnerabilities ignored on purpose"
    )
    if vulnerable:
        return 1
    if unchecked:
        print(
            f"audit: NOT DONE for {len(unchecked)} packages, e.g. {unchecked[0]['skip_reason']}.\n"
            "audit: pip-audit's vulnerability service (PyPI's JSON API, "
            "/pypi/<name>/<version>/json) did not answer for them; run `make audit` where it "
            "is reachable."
        )
        return 0 if args.allow_unchecked else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
