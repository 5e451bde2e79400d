"""docs/finops.md: every YAML example is valid for the loader it is about."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from agent_finops.allocation import allocation_rules_from_mapping
from agent_finops.exports import GLMapping
from agent_finops.policy import Policy
from agent_finops.pricing import PricingConfig

DOC = Path(__file__).parents[1] / "docs" / "finops.md"


def test_every_yaml_example_loads() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 4
    for block in blocks:
        data = yaml.safe_load(re.sub(r"^ {2}", "", block, flags=re.M))
        if "mandatory_tags" in data:
            Policy.from_mapping(data)
        elif "rules" in data:
            allocation_rules_from_mapping(data)
        elif "mappings" in data:
            GLMapping.from_mapping(data)
        else:
            assert "compute" in data
            PricingConfig.from_mapping(data)
