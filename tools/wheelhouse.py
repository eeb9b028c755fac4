"""Download, as wheels, what an offline machine needs to test the course (``make wheels``).

A GPU machine without internet usually has Python and a CUDA build of torch, but not nbclient,
jupyterquiz, nbval, timm or the companion itself. This script walks the requirements of the
companion and of its extras (those of ``make install``: book, test, lab) through the packages
installed in this environment, and
downloads the wheel of each one at the version installed here (``pip download --no-deps``), plus
setuptools, the build backend that ``pip install -e .`` needs for the companion itself. torch,
torchvision, triton and the nvidia-* CUDA libraries are left out unless ``--with-torch``: they
weigh gigabytes and must match the machine's driver. The folder holds a ``.gitignore`` of its
own, so git never sees it.

On the offline machine, from a copy of the repository, with the machine's own torch::

    python3 -m venv --system-site-packages .venv     # sees the machine's torch
    PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/wheelhouse make gpu-check

or without make: ``pip install --no-index --find-links wheelhouse -e '.[test]'`` and
``python tools/gpu_check.py``.

Usage::

    python tools/wheelhouse.py                       # into wheelhouse/
    python tools/wheelhouse.py --python-version 3.12 # for another Python (binary wheels only)
    python tools/wheelhouse.py --dry-run             # list the packages, download nothing
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "companion"
HEAVY = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")
ALWAYS = ("setuptools",)  # the build backend of `pip install -e .`


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str], extras: tuple[str, ...] = ("test",), with_torch: bool = False) -> dict[str, str]:
    """``{distribution name: installed version}`` of ``roots`` and everything they require here.

    Requirements are followed with their environment markers and extras evaluated for this
    interpreter; ``extras`` applies to the roots only. Heavy CUDA packages (torch, torchvision,
    triton, nvidia-*) are left out, with what only they need, unless ``with_torch``.
    Usage: ``closure(["companion"])``
    """
    found: dict[str, str] = {}
    todo = [(root, tuple(extras)) for root in roots]
    while todo:
        name, wanted_extras = todo.pop()
        key = _canonical(name)
        if not with_torch and HEAVY.match(key):
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise ValueError(f"{name!r} is required but not installed here: run 'make install' first.") from None
        if key in found and not wanted_extras:
            continue
        found[key] = distribution.version
        for line in distribution.requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in wanted_extras] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                if _canonical(requirement.name) not in found or requirement.extras:
                    todo.append((requirement.name, tuple(sorted(requirement.extras))))
    return found


def download_command(packages: dict[str, str], dest: Path, python_version: str | None) -> list[str]:
    """The ``pip download`` command for exact versions of ``packages``, wheels only, no resolution."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest)]
    if python_version:
        command += ["--python-version", python_version]
    # a local version label (torch 2.5.1+cu121) names no file on PyPI: ask for the public version
    return command + [f"{name}=={version.split('+')[0]}" for name, version in sorted(packages.items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / "wheelhouse", help="folder (default: wheelhouse/)")
    parser.add_argument("--extras", default="book,test,lab",
                        help="extras of the companion to include, comma-separated (default: those of make install)")
    parser.add_argument("--with-torch", action="store_true", help="also torch, torchvision and the CUDA libraries")
    parser.add_argument("--python-version", help="target Python, e.g. 3.12 (default: this one)")
    parser.add_argument("--dry-run", action="store_true", help="print the packages and the command only")
    args = parser.parse_args(argv)

    extras = tuple(extra for extra in args.extras.split(",") if extra)
    packages = closure([PROJECT], extras, with_torch=args.with_torch)
    packages.pop(PROJECT, None)  # installed from the repository copy, not from a wheel
    for name in ALWAYS:
        packages.setdefault(name, metadata.version(name))
    command = download_command(packages, args.dest, args.python_version)
    print(f"{len(packages)} packages for companion[{','.join(extras)}]"
          f"{'' if args.with_torch else ' (torch and the CUDA libraries left out)'}:")
    print("  " + " ".join(f"{name}=={version}" for name, version in sorted(packages.items())))
    if args.dry_run:
        print(" ".join(command))
        return 0
    args.dest.mkdir(parents=True, exist_ok=True)
    (args.dest / ".gitignore").write_text("# written by tools/wheelhouse.py\n*\n")
    subprocess.run(command, check=True)
    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(path.stat().st_size for path in wheels) / 2**20
    print(f"{len(wheels)} wheels, {size:.0f} MiB, in {args.dest}. On the offline machine: "
          f"PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/{args.dest.name} make gpu-check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
