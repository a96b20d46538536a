"""debootstrap's minbase package lists, worked out as debootstrap does (harness.sandbox.minbase)."""

from __future__ import annotations

from harness.sandbox.minbase import minbase_packages, suite_script

INDEX = """\
Package: bash
Priority: required
Pre-Depends: libc6 (>= 2.36), libtinfo6 (>= 6)
Depends: base-files (>= 2.1.12), debianutils (>= 5.6-0.1)

Package: libc6
Priority: optional
Depends: libgcc-s1

Package: libgcc-s1
Priority: optional

Package: libtinfo6
Priority: optional
Depends: libc6:any

Package: base-files
Priority: required
Depends: awk | mawk

Package: mawk
Priority: required
Provides: awk

Package: gawk
Priority: optional
Provides: awk

Package: debianutils
Priority: required
Depends: usrmerge | usr-is-merged

Package: usrmerge
Priority: optional
Depends: perl

Package: perl
Priority: standard

Package: apt
Priority: important
Depends: libapt-pkg7.0 (>= 3.0), gpgv | gpgv2, libc6

Package: libapt-pkg7.0
Priority: optional
Depends: libzstd1

Package: libzstd1
Priority: optional

Package: gpgv
Priority: optional
"""


def test_required_with_their_dependencies_then_apts_own() -> None:
    required, base = minbase_packages(INDEX)
    # libc6 is not `required` but bash needs it (Pre-Depends, version dropped); a virtual
    # first alternative (awk) adds nothing, as in debootstrap; usrmerge is never pulled in.
    assert required == ["base-files", "bash", "debianutils", "libc6", "libgcc-s1", "libtinfo6",
                        "mawk"]  # fmt: skip
    assert base == ["apt", "gpgv", "libapt-pkg7.0", "libzstd1"]


def test_an_extra_base_package_and_one_the_index_lacks() -> None:
    _, base = minbase_packages(INDEX, ["apt", "ca-certificates"])
    assert "ca-certificates" not in base and "apt" in base


def test_the_suite_script_sources_the_suites_own_and_fills_the_lists() -> None:
    script = suite_script("trixie", ["bash", "libc6"], ["apt"])
    assert script.splitlines() == [
        '. "$DEBOOTSTRAP_DIR/scripts/trixie"',
        "work_out_debs () {",
        '\trequired="bash libc6"',
        '\tbase="apt"',
        "}",
    ]
