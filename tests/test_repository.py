"""One repository setting: ``_config.yml`` names the repository, every other place follows from it.

tools/set_repository.py derives each notebook's Colab badge and install cell from the
``repository:`` block of _config.yml and from ``companion.__version__``. These tests check that
the committed files agree with that setting, that the tool rewrites exactly those places and
leaves every other byte alone (to another URL and back), that it refuses bad URLs, and that
installing the companion where torch and torchvision already are (as on Colab) keeps them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "set_repository.py"
OTHER = "https://github.com/some-org/some-course"


def _tool():
    spec = importlib.util.spec_from_file_location("set_repository", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _tool()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=120)


def _copy_course(destination: Path) -> dict[str, bytes]:
    """Copy every file the tool reads or may rewrite; return ``{relative path: bytes}``."""
    files = [*tool.scanned_files(ROOT), ROOT / tool.VERSION_FILE]
    copied = {}
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied[relative] = path.read_bytes()
    return copied


def _snapshot(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_every_file_names_the_configured_repository():
    """Check that each scanned file names no GitHub repository but the one in _config.yml."""
    configured = tool.read_setting(ROOT).slug
    wrong = {}
    for path in tool.scanned_files(ROOT):
        text = tool._read_text(path)
        others = {slug for slug in tool.repositories_named(text or "")
                  if slug.lower() != configured.lower()}
        if others:
            wrong[path.relative_to(ROOT).as_posix()] = sorted(others)
    assert wrong == {}, f"these files name another repository than {configured} (_config.yml)"


def test_repository_names_are_found_in_every_form():
    """Check the patterns: Colab, git+https, plain and SSH URLs; placeholders and docs excepted."""
    text = ("colab.research.google.com/github/a-org/one/blob/main/x.ipynb "
            "git+https://github.com/b-org/two.git@v1 (see https://github.com/c-org/three.) "
            "git@github.com:d-org/four.git https://docs.github.com/en/pages "
            "https://github.com/ORG/NAME github.com/OWNER/NAME")
    assert tool.repositories_named(text) == ["a-org/one", "b-org/two", "c-org/three", "d-org/four"]
    old = tool.Repository("https://github.com/b-org/two", "main")
    new = tool.Repository(OTHER, "main")
    assert tool.renamed("git+https://github.com/b-org/two.git@v1 github.com/b-org/twofold",
                        old, new) == ("git+https://github.com/some-org/some-course.git@v1 "
                                      "github.com/b-org/twofold")


def test_derived_places_are_current():
    """Check that every badge and install cell is what _config.yml and the version derive."""
    problems = tool.check(ROOT)
    assert problems == [], ("not derived from _config.yml and companion.__version__ (run "
                            "make sync-repository, then make execute):\n" + "\n".join(problems))


def test_version_lives_in_companion_init_alone():
    """Check that pyproject.toml reads the version from companion/__init__.py."""
    import companion

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "companion.__version__"}
    assert tool.read_version(ROOT) == companion.__version__


@pytest.mark.parametrize("path", [path.relative_to(ROOT).as_posix()
                                  for path in tool.notebook_paths(ROOT)])
def test_notebooks_load_and_save_byte_identical(path):
    """Check that the tool writes a notebook it did not change back to the same bytes."""
    text = (ROOT / path).read_bytes().decode("utf-8")
    assert tool.dump_notebook(tool.load_notebook(text)) == text


@pytest.mark.parametrize("url", [tool.read_setting(ROOT).url, OTHER])
def test_install_cell_source(url, monkeypatch, capsys):
    """Check the install cell: short lines, the tagged install on Colab only, the version check."""
    import companion

    version = tool.read_version(ROOT)
    source = tool.install_cell_source(url, version)
    assert max(len(line) for line in source.splitlines()) <= 88
    assert source.startswith("import sys\n\n") and "import companion\n" in source
    assert f'COMPANION_VERSION = "{version}"' in source
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: calls.append(command))
    exec(compile(source, "install-cell", "exec"), {})
    assert calls == [] and capsys.readouterr().out == f"companion {version}\n"
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(companion, "__version__", "0.0.1")
    exec(compile(source, "install-cell", "exec"), {})
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", f"git+{url}@v{version}"]]
    assert capsys.readouterr().out == f"companion 0.0.1, not {version}: numbers will differ\n"


def _changed_places(before: dict, after: dict, path: str, setting, version: str) -> None:
    """Assert that ``after`` differs from ``before`` in the badge and the install cell only."""
    assert {key: value for key, value in after.items() if key != "cells"} == \
        {key: value for key, value in before.items() if key != "cells"}
    assert len(after["cells"]) == len(before["cells"])
    badge = next(i for i, cell in enumerate(before["cells"]) if cell["cell_type"] == "markdown")
    install = tool.find_install_cell(before["cells"])
    for index, (old, new) in enumerate(zip(before["cells"], after["cells"])):
        if index == badge:
            assert len(new["source"]) == len(old["source"])
            for old_line, new_line in zip(old["source"], new["source"]):
                if tool.BADGE.search(old_line):
                    assert new_line.rstrip("\n") == tool.colab_badge(setting, path), path
                else:
                    assert new_line == old_line, path
            assert {**new, "source": None} == {**old, "source": None}, path
        elif index == install:
            assert tool._text(new["source"]) == tool.install_cell_source(setting.url, version)
            assert new["outputs"] == old["outputs"], path
            assert new["execution_count"] == old["execution_count"], path
            tags = new["metadata"].get("tags", [])
            assert tool.INSTALL_TAG in tags, path
            assert {**new["metadata"], "tags": None} == {**old["metadata"], "tags": None}, path
            assert {key: value for key, value in new.items() if key not in ("source", "metadata")} \
                == {key: value for key, value in old.items() if key not in ("source", "metadata")}
        else:
            assert new == old, f"{path}: cell {index} changed"


def test_set_repository_rewrites_the_derived_places_only_and_back(tmp_path):
    """Check --url: another repository and back changes only the setting and derived places."""
    course, synced = tmp_path / "course", tmp_path / "synced"
    originals = _copy_course(course)
    _copy_course(synced)
    setting, version = tool.read_setting(ROOT), tool.read_version(ROOT)

    result = _run("--root", str(course), "--url", OTHER)
    assert result.returncode == 0, result.stdout + result.stderr
    after = _snapshot(course)
    assert sorted(after) == sorted(originals), "a file was added or a temporary file left"
    old_config = originals[tool.CONFIG].decode().splitlines(keepends=True)
    new_config = after[tool.CONFIG].decode().splitlines(keepends=True)
    changed = [(old, new) for old, new in zip(old_config, new_config) if old != new]
    assert len(new_config) == len(old_config)
    assert changed == [(f"  url: {setting.url}\n", f"  url: {OTHER}\n")]
    notebooks = {path.relative_to(ROOT).as_posix() for path in tool.notebook_paths(ROOT)}
    new_setting = tool.Repository(OTHER, setting.branch)
    for path in notebooks:
        _changed_places(json.loads(originals[path]), json.loads(after[path]), path, new_setting,
                        version)
    for path, data in originals.items():
        if path not in notebooks and path != tool.CONFIG:
            try:
                expected = tool.renamed(data.decode("utf-8"), setting, new_setting).encode("utf-8")
            except UnicodeDecodeError:
                expected = data
            assert after[path] == expected, f"{path} changed beyond naming {OTHER}"
    for path in notebooks:
        assert (course / path).stat().st_mode == (ROOT / path).stat().st_mode

    result = _run("--root", str(course), "--url", setting.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert tool.apply(synced) == []  # --sync of the committed files, for comparison
    back = _snapshot(course)
    assert back[tool.CONFIG] == originals[tool.CONFIG]
    assert back == _snapshot(synced), "the round trip is not what --sync of the originals gives"
    assert _run("--root", str(course), "--check").returncode == 0


def test_sync_and_check_report_what_is_not_derived(tmp_path):
    """Check --check: it names a stale badge and a file naming another repository; --sync fixes
    the badge and leaves the foreign name, which it reports."""
    course = tmp_path / "course"
    _copy_course(course)
    tool.apply(course)  # start from derived notebooks
    setting = tool.read_setting(course)
    chapter = tool.notebook_paths(course)[0]
    relative = chapter.relative_to(course).as_posix()
    text = chapter.read_text(encoding="utf-8")
    chapter.write_text(text.replace(f"github/{setting.slug}/blob/{setting.branch}/",
                                    "github/someone/else/blob/main/"), encoding="utf-8")
    readme = course / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nFork of github.com/someone/else.\n",
                      encoding="utf-8")

    result = _run("--root", str(course), "--check")
    assert result.returncode == 1
    assert f"{relative}: cell 0: Colab badge" in result.stdout
    assert "README.md: names someone/else" in result.stdout
    assert chapter.read_text(encoding="utf-8") != text  # --check changed nothing

    result = _run("--root", str(course), "--sync")
    assert result.returncode == 1 and "README.md: names someone/else" in result.stderr
    assert chapter.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("url", [
    "http://github.com/some-org/some-course",
    "https://gitlab.com/some-org/some-course",
    "https://github.com/some-org",
    "https://github.com/some-org/some-course/",
    "https://github.com/some-org/some-course.git",
    "https://github.com/some-org/some-course/tree/main",
    "https://github.com/some-org/some-course?tab=readme",
    "git@github.com:some-org/some-course.git",
    "https://github.com/-org/some-course",
    " https://github.com/some-org/some-course",
])
def test_bad_urls_are_refused(url, tmp_path, capsys):
    """Check that a bad URL exits 2, says which form is allowed, and changes nothing."""
    (tmp_path / tool.CONFIG).write_bytes((ROOT / tool.CONFIG).read_bytes())
    with pytest.raises(SystemExit) as exit_:
        tool.main(["--root", str(tmp_path), "--url", url])
    assert exit_.value.code == 2
    assert "must be https://github.com/<owner>/<name>" in capsys.readouterr().err
    assert (tmp_path / tool.CONFIG).read_bytes() == (ROOT / tool.CONFIG).read_bytes()


def test_bad_url_and_branch_from_the_command_line():
    """Check the script's exit code 2 and messages for a bad URL and a bad branch."""
    result = _run("--url", "https://github.com/some-org/some-course.git")
    assert result.returncode == 2
    assert "Did you mean https://github.com/some-org/some-course?" in result.stderr
    result = _run("--url", OTHER, "--branch", "main..dev")
    assert result.returncode == 2 and "is not a branch name" in result.stderr
    assert _run("--branch", "dev", "--sync").returncode == 2


def test_derive_notebook_adds_a_missing_badge_and_tag_and_reports_a_late_install_cell():
    """Check the places of a notebook that lacks them: badge under the title, tag added once,
    an install cell after other code reported (not moved), and no install cell reported."""
    setting, version = tool.Repository(OTHER, "dev"), "9.9.9"
    markdown = {"cell_type": "markdown", "id": "a", "metadata": {}, "source": ["# Title\n", "text"]}
    code = {"cell_type": "code", "id": "b", "metadata": {"collapsed": False, "tags": ["install"]},
            "execution_count": 3, "outputs": [{"output_type": "stream", "name": "stdout",
                                              "text": ["old\n"]}], "source": ["print(1)"]}
    first = {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": 1, "outputs": [],
             "source": "import os"}
    notebook = {"cells": [markdown, first, code], "metadata": {}, "nbformat": 4}
    derived, problems = tool.derive_notebook(notebook, setting, version, "notebooks/x.ipynb")
    assert notebook["cells"][2]["source"] == ["print(1)"]  # the input is left alone
    assert derived["cells"][0]["source"] == [
        "# Title\n", "\n", tool.colab_badge(setting, "notebooks/x.ipynb") + "\n", "\n", "text"]
    assert "blob/dev/notebooks/x.ipynb" in derived["cells"][0]["source"][2]
    install = derived["cells"][2]
    assert tool._text(install["source"]) == tool.install_cell_source(OTHER, version)
    assert install["metadata"] == code["metadata"] and install["outputs"] == code["outputs"]
    assert derived["cells"][1] == first
    assert problems == ["the install cell is cell 2, not the first code cell (cell 1): move it up"]
    _, problems = tool.derive_notebook({"cells": [markdown, first]}, setting, version, "x.ipynb")
    assert problems and problems[0].startswith("no install cell")


def test_config_rewrite_keeps_every_other_byte():
    """Check that only the url (and branch) values change: comments, quotes, CRLF kept."""
    text = ("# the repository\r\nrepository:\r\n  url: \"https://github.com/a-org/one\"  # here\r\n"
            "  path_to_book: \"\"\r\nhtml:\r\n  url: https://example.org\r\n")
    assert tool.parse_setting(text) == tool.Repository("https://github.com/a-org/one", "main")
    new = tool.config_with(text, OTHER, "dev")
    assert new == text.replace("a-org/one", "some-org/some-course").replace(
        "# here\r\n", "# here\r\n  branch: dev\r\n")
    assert tool.parse_setting(new) == tool.Repository(OTHER, "dev")
    assert tool.config_with(new, OTHER, "main") == new.replace("branch: dev", "branch: main")


def test_pip_install_keeps_the_installed_torch(tmp_path):
    """Check that installing the companion where torch and torchvision are (Colab) keeps them."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-build-isolation",
         "--no-index", "--report", str(report), str(ROOT)],
        capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and ("No matching distribution" in result.stderr
                                   or "Could not find a version" in result.stderr):
        pytest.skip("pip cannot resolve the companion offline here (a dependency is not "
                    f"installed): {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stdout + result.stderr
    installed = {item["metadata"]["name"].lower(): item["metadata"]["version"]
                 for item in json.loads(report.read_text(encoding="utf-8"))["install"]}
    assert installed.get("companion") == tool.read_version(ROOT)
    assert "torch" not in installed and "torchvision" not in installed
