"""The packages of a debootstrap `--variant=minbase`, worked out the way debootstrap does, in
a second instead of its ~20 s of shell and perl over the Packages file (measured on 2 vCPU:
debootstrap's two "Resolving dependencies" steps were 22 s of a 50 s base build).

debootstrap then gets them in a suite script of ours (`suite_script`: the suite's own with
the lists filled in) and `--no-resolve-deps`: it still checks the Release
signature, the Packages file's checksum and every package's, so nothing here is trusted; a list
that misses something makes debootstrap fail, and the caller runs it again resolving itself.

debootstrap's rule (scripts/debian-common and `resolve_deps` in its functions): every package of
`Priority: required`, and `apt`; then, until nothing is added, each one's Depends and
Pre-Depends, the first alternative of each, without its version and architecture qualifier,
kept only when a package of that name exists (a virtual name adds nothing); `usrmerge` never.
"""

from __future__ import annotations

__all__ = ["MINBASE_BASE", "minbase_packages", "packages_index_url", "suite_script"]

import re
from collections.abc import Iterable, Sequence

MINBASE_BASE = ("apt",)
# debootstrap drops this dependency for every suite after bullseye.
EXCLUDED_DEPENDENCIES = frozenset({"usrmerge"})
_FIELD = re.compile(r"^(Package|Priority|Depends|Pre-Depends): (.*)$", re.MULTILINE)
_QUALIFIERS = re.compile(r"\(.*?\)|:\S*")


def packages_index_url(mirror: str, suite: str, arch: str, component: str = "main") -> str:
    return f"{mirror.rstrip('/')}/dists/{suite}/{component}/binary-{arch}/Packages.xz"


def minbase_packages(index: str, base: Iterable[str] = MINBASE_BASE) -> tuple[list[str], list[str]]:
    """What debootstrap's minbase installs from this Packages index (its text): the required
    packages with their dependencies, and the base ones (apt's) not among them; sorted."""
    depends: dict[str, set[str]] = {}
    required: set[str] = set()
    wanted: set[str] = set()
    # One pass over the index's lines of interest: each stanza opens with its Package line.
    for key, value in _FIELD.findall(index):
        if key == "Package":
            wanted = depends.setdefault(value, set())
            name = value
        elif key == "Priority":
            if value == "required":
                required.add(name)
        else:
            for clause in value.split(","):
                first = _QUALIFIERS.sub("", clause.split("|")[0]).strip()
                if first:
                    wanted.add(first)
    required_closure = _closure(required, depends)
    base_closure = _closure(set(base), depends) - required_closure
    return sorted(required_closure), sorted(base_closure)


def _closure(names: set[str], depends: dict[str, set[str]]) -> set[str]:
    chosen = {name for name in names if name in depends}
    todo = list(chosen)
    while todo:
        for dependency in depends[todo.pop()]:
            if (
                dependency in depends
                and dependency not in chosen
                and dependency not in EXCLUDED_DEPENDENCIES
            ):
                chosen.add(dependency)
                todo.append(dependency)
    return chosen


def suite_script(suite: str, required: Sequence[str], base: Sequence[str]) -> str:
    """A debootstrap suite script: the suite's own, with the package lists given (run with
    `--no-resolve-deps`). Installing `required` first matters: debootstrap's first stage
    unpacks only those, and they must run a shell in the chroot (libc6 is not `required`)."""
    return (
        f'. "$DEBOOTSTRAP_DIR/scripts/{suite}"\n'
        "work_out_debs () {\n"
        f'\trequired="{" ".join(required)}"\n'
        f'\tbase="{" ".join(base)}"\n'
        "}\n"
    )
