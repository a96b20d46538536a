"""The pytest plugin (entry point `pytest11 = egress`): collects scenario files and offers the
`egress` fixture. Composition root 2: turns harness errors into pytest reports."""

from __future__ import annotations
