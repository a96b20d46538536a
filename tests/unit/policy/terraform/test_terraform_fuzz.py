"""Any damaged Terraform input gives a policy or one of our errors, never a traceback, within a
time bound: the fixtures mutated with a fixed seed (bounded so the suite stays fast)."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.policy.load import load_policy
from harness.policy.source import PolicyOptions

DATA = Path(__file__).parent / "data"
SOURCES = ["build-egress/main.tf", "classic-firewall.tf", "json-syntax.tf.json", "plan.json",
           "state.json", "module-style/main.tf"]  # fmt: skip
TOKENS = ["${", "}", "{", "[", "]", '"', "local.a", "var.x", "each.value", "dynamic", "for", ":",
          "=>", "...", "\n", "(", ")", "null", "[*]", "-1", "1e400", "\\", "%{", "?", "data.x.y",
          "module.m", "count.index", "azurerm_ip_group.x.id", "\\U0011FFFF", "\\uD800", "\xe9",
          "\x00", "<<EOT\n", "toset(", "locals = "]  # fmt: skip
CASES_PER_SEED = 60


def _mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        position = rng.randrange(len(chars))
        roll = rng.random()
        if roll < 0.4:
            del chars[position : position + rng.randint(1, 20)]
        elif roll < 0.8:
            chars.insert(position, rng.choice(TOKENS))
        else:
            chars[position:position] = chars[rng.randrange(len(chars)) :][: rng.randint(1, 200)]
    return "".join(chars)


@pytest.mark.parametrize("seed", range(5))
def test_any_mutated_terraform_input_is_a_policy_or_a_clean_error(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    for case in range(CASES_PER_SEED):
        source = rng.choice(SOURCES)
        folder = tmp_path / f"case{case}"
        folder.mkdir()
        if source.startswith("module-style"):
            shutil.copytree(DATA / "module-style" / "modules", folder / "modules")
        target = folder / Path(source).name
        target.write_bytes(_mutate(rng, (DATA / source).read_text()).encode("utf-8", "replace"))
        started = time.monotonic()
        try:
            load_policy(folder if target.suffix == ".tf" else target, PolicyOptions(environ={}))
        except HarnessError:
            pass
        assert time.monotonic() - started < 5, f"{source} case {case} took too long"
