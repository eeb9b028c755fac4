"""Point the course at one GitHub repository: ``_config.yml`` names it, the rest follows from it.

Scope: the repository's URL and branch live in ``_config.yml`` alone (``repository: url:`` and
``branch:``), the package version in ``companion/__init__.py`` alone. Two places in every
notebook (``notebooks/*.ipynb`` and ``book/*.ipynb``) are derived from them:

- the Colab badge in the notebook's first markdown cell, which opens the notebook's file on the
  configured branch;
- the install cell, the first code cell, tagged ``install``: on Colab it installs the companion
  from the tag ``v<version>`` of the repository (``check.yml`` creates that tag).

``--url`` rewrites the ``url:`` line (and ``branch:`` with ``--branch``) of ``_config.yml``, every
byte of every other line kept, then every derived place; a file under the scanned folders that
named the old repository names the new one. ``--sync`` rewrites the derived places from the
current setting (after a version bump). ``--check`` changes nothing and lists every place that is
not what the setting derives, and every scanned file that names another GitHub repository.
A notebook is rewritten in the layout Jupyter saves it in, so only the changed places differ:
its outputs, execution counts and metadata stay as they are (the install cell gains its tag).

Usage (from the repository root; ``make set-repository`` and ``make sync-repository``)::

    python tools/set_repository.py --url https://github.com/ORG/NAME [--branch main]
    python tools/set_repository.py --sync     # after bumping companion.__version__
    python tools/set_repository.py --check    # exit 1 and list what is not derived
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "_config.yml"
VERSION_FILE = "companion/__init__.py"
NOTEBOOK_GLOBS = ("notebooks/*.ipynb", "book/*.ipynb")
# Where a file may name a GitHub repository; each must name the configured one.
SCANNED = ("notebooks", "book", "tools", ".github", ".ci", "README.md", "Makefile", CONFIG)
SKIPPED_DIRS = {"__pycache__", ".ipynb_checkpoints"}
INSTALL_TAG = "install"
# The placeholders that the docs and the Makefile use in place of a real repository.
PLACEHOLDERS = {("org", "name"), ("owner", "name")}

URL = re.compile(r"https://github\.com/(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))"
                 r"/(?P<name>[A-Za-z0-9_.-]{1,100})")
URL_FORM = "https://github.com/<owner>/<name>"
BRANCH = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._/-]*")
# A repository named in any text: github.com/OWNER/NAME (also git+https:// and git@github.com:)
# and Colab's colab.research.google.com/github/OWNER/NAME. docs.github.com and the like are not.
NAMED = re.compile(r"(?:colab\.research\.google\.com/github|(?<![\w.-])github\.com)[/:]"
                   r"(?P<owner>[A-Za-z0-9-]+)/(?P<name>[A-Za-z0-9_.-]+)")
BADGE = re.compile(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/"
                   r"colab-badge\.svg\)\]\(https://colab\.research\.google\.com/github/[^)\s]*\)")
SETTING_LINE = re.compile(r"^(?P<indent>[ \t]+)(?P<key>[A-Za-z_]+):(?P<space>[ \t]*)"
                          r"(?P<value>[^#\r\n]*?)(?P<comment>[ \t]+#[^\r\n]*)?(?P<eol>\r?\n?)$")


class Repository(NamedTuple):
    """The repository setting of ``_config.yml``: its URL and the branch the book is built from."""

    url: str
    branch: str

    @property
    def slug(self) -> str:
        """``owner/name``, as GitHub and Colab URLs write it."""
        return self.url.removeprefix("https://github.com/")


def validate_url(url: str) -> str:
    """Return ``url`` if it is ``https://github.com/<owner>/<name>``, else raise ValueError."""
    match = URL.fullmatch(url)
    if match and match["name"] not in (".", "..") and not match["name"].endswith(".git"):
        return url
    trimmed = url.strip().rstrip("/").removesuffix(".git")
    hint = f" Did you mean {trimmed}?" if trimmed != url and URL.fullmatch(trimmed) else ""
    raise ValueError(f"{url!r} is refused: the repository URL must be {URL_FORM}, with no "
                     "trailing slash, .git, path or query (http://, other hosts and SSH "
                     f"addresses are refused).{hint}")


def validate_branch(branch: str) -> str:
    """Return ``branch`` if it is a plausible git branch name, else raise ValueError."""
    if (BRANCH.fullmatch(branch) and ".." not in branch and "//" not in branch
            and not branch.endswith(("/", ".", ".lock"))):
        return branch
    raise ValueError(f"{branch!r} is not a branch name: use letters, digits and . _ - / "
                     "(for example main).")


def _setting_lines(lines: list[str]) -> dict[str, tuple[int, re.Match[str]]]:
    """``{key: (line index, match)}`` for the direct children of the ``repository:`` block."""
    start = next((index for index, line in enumerate(lines)
                  if re.fullmatch(r"repository:[ \t]*(#.*)?", line.rstrip("\r\n"))), None)
    if start is None:
        raise ValueError(f"{CONFIG} has no 'repository:' block.")
    found: dict[str, tuple[int, re.Match[str]]] = {}
    child_indent = None
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            break  # the next top-level key
        match = SETTING_LINE.match(line)
        if match is None:
            continue
        child_indent = match["indent"] if child_indent is None else child_indent
        if match["indent"] == child_indent:
            found.setdefault(match["key"], (index, match))
    return found


def _unquoted(value: str) -> str:
    """A YAML scalar without its quotes."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_setting(text: str) -> Repository:
    """The repository setting in the text of ``_config.yml``; ValueError if it is missing or bad."""
    found = _setting_lines(text.splitlines(keepends=True))
    if "url" not in found:
        raise ValueError(f"the 'repository:' block of {CONFIG} has no 'url:' line.")
    url = validate_url(_unquoted(found["url"][1]["value"]))
    branch = _unquoted(found["branch"][1]["value"]) if "branch" in found else "main"
    return Repository(url, validate_branch(branch))


def config_with(text: str, url: str, branch: str | None = None) -> str:
    """``_config.yml``'s text with a new ``url:`` (and ``branch:``); every other byte kept."""
    lines = text.splitlines(keepends=True)
    found = _setting_lines(lines)
    if "url" not in found:
        raise ValueError(f"the 'repository:' block of {CONFIG} has no 'url:' line.")
    for key, value in (("url", url), ("branch", branch)):
        if value is None:
            continue
        if key not in found:  # no branch line yet: add one under the url line
            index, match = found["url"]
            if not lines[index].endswith("\n"):
                lines[index] += "\n"
            lines.insert(index + 1, f"{match['indent']}branch: {value}{match['eol']}")
            continue
        index, match = found[key]
        old = match["value"].strip()
        quote = old[0] if old[:1] in ("'", '"') and old[-1:] == old[:1] else ""
        lines[index] = (f"{match['indent']}{key}:{match['space'] or ' '}{quote}{value}{quote}"
                        f"{match['comment'] or ''}{match['eol']}")
    return "".join(lines)


def read_setting(root: Path = ROOT) -> Repository:
    """The repository setting of ``root/_config.yml``."""
    return parse_setting((root / CONFIG).read_text(encoding="utf-8"))


def read_version(root: Path = ROOT) -> str:
    """``companion.__version__``, read from the source without importing the package (or torch)."""
    tree = ast.parse((root / VERSION_FILE).read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and any(isinstance(target, ast.Name) and target.id == "__version__"
                        for target in node.targets)):
            return str(node.value.value)
    raise ValueError(f"{VERSION_FILE} sets no __version__ = \"...\".")


def colab_badge(setting: Repository, path: str) -> str:
    """The Markdown of the Colab badge that opens ``path`` (relative to the repository root)."""
    target = f"{setting.slug}/blob/{setting.branch}/{path}"
    return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{target})")


def install_cell_source(url: str, version: str) -> str:
    """The source of every notebook's install cell: on Colab, pip installs ``url`` at v``version``.

    Lines stay within 88 characters for URLs of up to 61 characters.
    """
    url = url.rstrip("/").removesuffix(".git")
    return (
        "import sys\n"
        "\n"
        f'COMPANION_VERSION = "{version}"  # the companion these pages were made with\n'
        'if "google.colab" in sys.modules:  # on Colab: install it (torch, torchvision are there)\n'
        "    import subprocess\n"
        f'    package = "git+{url}@v{version}"\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)\n'
        "import companion\n"
        "\n"
        "if companion.__version__ == COMPANION_VERSION:\n"
        '    print(f"companion {companion.__version__}")\n'
        "else:\n"
        '    print(f"companion {companion.__version__}, not {COMPANION_VERSION}:",\n'
        '          "numbers will differ")'
    )


def load_notebook(text: str) -> dict:
    """A notebook's JSON, key order kept."""
    return json.loads(text)


def dump_notebook(notebook: dict) -> str:
    """The notebook in Jupyter's layout: indent 1, non-ASCII kept as is, a final newline."""
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def _text(source: str | list[str]) -> str:
    """A cell's source as one string (nbformat stores it as a list of lines or a string)."""
    return source if isinstance(source, str) else "".join(source)


def _like(source: str | list[str], text: str) -> str | list[str]:
    """``text`` stored the way ``source`` was: one string, or a list of lines as nbformat does."""
    return text if isinstance(source, str) else text.splitlines(keepends=True)


def find_install_cell(cells: list[dict]) -> int | None:
    """The index of the cell tagged ``install``, else of the first code cell naming google.colab."""
    code = [index for index, cell in enumerate(cells) if cell["cell_type"] == "code"]
    for index in code:
        if INSTALL_TAG in cells[index].get("metadata", {}).get("tags", []):
            return index
    return next((index for index in code if "google.colab" in _text(cells[index]["source"])),
                None)


def _with_badge(source: str | list[str], badge: str) -> str | list[str]:
    """A markdown cell's source with every Colab badge replaced, or one added under its title."""
    lines = [source] if isinstance(source, str) else list(source)
    if any(BADGE.search(line) for line in lines):
        lines = [BADGE.sub(lambda _: badge, line) for line in lines]
        return lines[0] if isinstance(source, str) else lines
    text = _text(source)
    title, newline, rest = text.partition("\n")
    if not title.startswith("#"):
        return _like(source, f"{badge}\n\n{text}")
    return _like(source, f"{title}\n\n{badge}\n{newline}{rest}" if rest else f"{title}\n\n{badge}")


def derive_notebook(notebook: dict, setting: Repository, version: str,
                    path: str) -> tuple[dict, list[str]]:
    """The notebook with its badge and install cell derived from the setting, and what it lacks.

    ``path`` is the notebook's path relative to the repository root. The input is not changed;
    the returned problems are the places that cannot be rewritten without moving cells.
    """
    notebook = copy.deepcopy(notebook)
    cells = notebook.get("cells", [])
    problems = []
    markdown = next((cell for cell in cells if cell["cell_type"] == "markdown"), None)
    if markdown is None:
        problems.append("no markdown cell to carry the Colab badge")
    else:
        markdown["source"] = _with_badge(markdown["source"], colab_badge(setting, path))
    index = find_install_cell(cells)
    if index is None:
        problems.append(f"no install cell (a code cell tagged {INSTALL_TAG!r} or naming "
                        "google.colab): add one as the first code cell")
        return notebook, problems
    first_code = next(i for i, cell in enumerate(cells) if cell["cell_type"] == "code")
    if index != first_code:
        problems.append(f"the install cell is cell {index}, not the first code cell "
                        f"(cell {first_code}): move it up")
    cell = cells[index]
    wanted = install_cell_source(setting.url, version)
    if _text(cell["source"]) != wanted:
        cell["source"] = _like(cell["source"], wanted)  # outputs and execution_count kept
    metadata = cell.setdefault("metadata", {})
    tags = metadata.get("tags", [])
    if INSTALL_TAG not in tags:
        was_sorted = list(metadata) == sorted(metadata)
        metadata["tags"] = [*tags, INSTALL_TAG]
        if was_sorted:  # keep the key order nbformat writes
            cell["metadata"] = dict(sorted(metadata.items()))
    return notebook, problems


def _named(match: re.Match[str]) -> tuple[str, str, int]:
    """``(owner, name, end of the name)`` of a NAMED match, without .git or a final full stop."""
    name = match["name"].rstrip(".")
    name = name.removesuffix(".git")
    return match["owner"], name, match.start("name") + len(name)


def repositories_named(text: str) -> list[str]:
    """Every ``owner/name`` of a GitHub repository that ``text`` names, placeholders excepted."""
    named = []
    for match in NAMED.finditer(text):
        owner, name, _ = _named(match)
        if (owner.lower(), name.lower()) not in PLACEHOLDERS:
            named.append(f"{owner}/{name}")
    return named


def renamed(text: str, old: Repository, new: Repository) -> str:
    """``text`` with every mention of the ``old`` repository naming the ``new`` one."""
    pieces, position = [], 0
    for match in NAMED.finditer(text):
        owner, name, end = _named(match)
        if f"{owner}/{name}".lower() == old.slug.lower():
            pieces += [text[position:match.start("owner")], new.slug]
            position = end
    return "".join(pieces) + text[position:]


def scanned_files(root: Path) -> list[Path]:
    """The text files that may name a repository: those under SCANNED, binary files excepted."""
    files = []
    for entry in SCANNED:
        path = root / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for candidate in candidates:
            if candidate.is_file() and not SKIPPED_DIRS.intersection(candidate.parts):
                files.append(candidate)
    return files


def _read_text(path: Path) -> str | None:
    """The file's text, newlines untouched; None for a binary file."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


def notebook_paths(root: Path) -> list[Path]:
    """Every notebook with a badge and an install cell: the chapters, then the book's pages."""
    return [path for pattern in NOTEBOOK_GLOBS for path in sorted(root.glob(pattern))]


def _badge_target(cell: dict) -> str:
    """The URL that the Colab badge of a markdown cell opens, for a message."""
    match = BADGE.search(_text(cell["source"]))
    return match.group(0).rsplit("](", 1)[1].rstrip(")") if match else "its page"


def _differences(before: dict, after: dict, relative: str) -> list[str]:
    """One line per derived place of a notebook that the rewrite changes."""
    lines = []
    for index, (old, new) in enumerate(zip(before.get("cells", []), after.get("cells", []))):
        if old == new:
            continue
        if old["cell_type"] == "markdown":
            lines.append(f"{relative}: cell {index}: Colab badge (to open {_badge_target(new)})")
        else:
            what = [] if _text(old["source"]) == _text(new["source"]) else ["source not current"]
            if old.get("metadata") != new.get("metadata"):
                what.append(f"no {INSTALL_TAG!r} tag")
            lines.append(f"{relative}: cell {index}: install cell ({', '.join(what)})")
    return lines


def plan(root: Path, setting: Repository, version: str,
         old: Repository | None = None) -> tuple[dict[Path, str], list[str], list[str]]:
    """What deriving everything from ``setting`` and ``version`` would do under ``root``.

    Returns ``(new text per file that changes, a line per place that changes, problems left)``;
    with ``old``, files that name the old repository are made to name ``setting`` instead.
    ``_config.yml`` itself is left to ``config_with``.
    """
    writes: dict[Path, str] = {}
    changes: list[str] = []
    problems: list[str] = []
    notebooks = set(notebook_paths(root))
    for path in scanned_files(root):
        relative = path.relative_to(root).as_posix()
        text = _read_text(path)
        if text is None or relative == CONFIG:
            continue
        derived_text = text
        if path in notebooks:
            try:
                notebook = load_notebook(text)
            except json.JSONDecodeError as error:
                problems.append(f"{relative}: not a notebook ({error})")
                continue
            derived, missing = derive_notebook(notebook, setting, version, relative)
            problems += [f"{relative}: {problem}" for problem in missing]
            if derived != notebook:
                if dump_notebook(notebook) != text:
                    problems.append(f"{relative}: not saved in Jupyter's layout (indent 1), so "
                                    "it is left alone: save it in Jupyter, then run this again")
                    continue
                changes += _differences(notebook, derived, relative)
                derived_text = dump_notebook(derived)
        new_text = derived_text
        if old is not None and old.slug.lower() != setting.slug.lower():
            new_text = renamed(derived_text, old, setting)
            if new_text != derived_text:
                changes.append(f"{relative}: {old.slug} renamed {setting.slug}")
        others = sorted({slug for slug in repositories_named(new_text)
                         if slug.lower() != setting.slug.lower()})
        if others:
            problems.append(f"{relative}: names {', '.join(others)}, not {setting.slug}")
        if new_text != text:
            writes[path] = new_text
    return writes, changes, problems


def check(root: Path = ROOT) -> list[str]:
    """Every place under ``root`` that is not what ``_config.yml`` and the version derive."""
    _, changes, problems = plan(root, read_setting(root), read_version(root))
    return changes + problems


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8, newlines as given) via a temporary file beside it."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(text.encode("utf-8"))
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def apply(root: Path, url: str | None = None, branch: str | None = None) -> list[str]:
    """Set the repository (when ``url`` is given), then rewrite every derived place under ``root``.

    Returns the problems that are left (places that cannot be derived without moving cells).
    """
    config = root / CONFIG
    text = config.read_text(encoding="utf-8")
    try:
        old = parse_setting(text)
    except ValueError:
        if url is None:
            raise
        old = None  # a bad setting is what --url is there to replace
    if url is not None:
        text = config_with(text, validate_url(url),
                           validate_branch(branch) if branch is not None else None)
    setting = parse_setting(text)
    writes, changes, problems = plan(root, setting, read_version(root), old)
    if url is not None and text != config.read_text(encoding="utf-8"):
        writes[config] = text
        changes.insert(0, f"{CONFIG}: repository {setting.url}, branch {setting.branch}")
    for path, new_text in writes.items():
        write_atomically(path, new_text)
    for line in changes:
        print(f"rewrote {line}")
    if not changes:
        print(f"nothing to rewrite: everything names {setting.url} ({setting.branch})")
    return problems


def main(argv: list[str] | None = None) -> int:
    """The command line; 0 when everything is derived, 1 when places are left, 2 on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--url", help=f"set the repository: {URL_FORM}")
    action.add_argument("--sync", action="store_true",
                        help="rewrite the derived places from _config.yml and the version")
    action.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 and list what is not derived")
    parser.add_argument("--branch", help="with --url: the branch the badges open (default: kept)")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the repository root (default: the one holding this script)")
    args = parser.parse_args(argv)
    if args.branch is not None and args.url is None:
        parser.error("--branch goes with --url")
    try:
        if args.url is not None:
            validate_url(args.url)
        if args.branch is not None:
            validate_branch(args.branch)
        if args.check:
            problems = check(args.root)
            for line in problems:
                print(line)
            if problems:
                print("run: python tools/set_repository.py --sync (make sync-repository)")
            return 1 if problems else 0
        problems = apply(args.root, args.url, args.branch)
    except ValueError as error:
        parser.error(str(error))
    for line in problems:
        print(f"left: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
