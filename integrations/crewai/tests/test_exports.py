"""The package's front door: `__all__` lists exactly its public names."""

from __future__ import annotations

import agent_finops_crewai


def test_all_matches_public_names() -> None:
    public = {n for n in dir(agent_finops_crewai) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(agent_finops_crewai, n)).__name__ == "module"}
    assert set(agent_finops_crewai.__all__) == public - modules
