"""The limits every reader enforces, stated once (README "Limits"). Each is far above what a real
policy, scenario, template or recording needs and low enough that a hostile or broken file is
refused in well under a second instead of exhausting the stack, the memory or the user's patience.
An input over a limit is an InputError (exit 2) that names the limit and its value.

    MAX_FILE_BYTES        a policy, scenario, template or Terraform file read whole
    MAX_DEPTH             nesting of mappings and sequences (YAML, JSON), and of an event line
    MAX_EXPANDED_NODES    YAML nodes that aliases add once expanded ("billion laughs")
    MAX_RULES             rules in one policy (more than Azure lets one firewall policy hold)
    MAX_EVENT_LINE_BYTES  one line of a recording's events.jsonl or workload.jsonl
    MAX_EXCERPT_CHARS     how much of a user's value an error message quotes
"""

from __future__ import annotations

__all__ = [
    "MAX_DEPTH",
    "MAX_EVENT_LINE_BYTES",
    "MAX_EXCERPT_CHARS",
    "MAX_EXPANDED_NODES",
    "MAX_FILE_BYTES",
    "MAX_RULES",
]

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 200_000
MAX_RULES = 20_000
MAX_EVENT_LINE_BYTES = 1024 * 1024
MAX_EXCERPT_CHARS = 60
