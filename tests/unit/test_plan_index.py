"""The index of where each operation's plan is built (deploytool/engine/plan.py) names functions that exist."""

from __future__ import annotations

import importlib
import re

from deploytool.engine import plan


def test_every_plan_builder_named_in_the_index_exists() -> None:
    doc = plan.__doc__ or ""
    index = doc[doc.index("Where each operation's plan is built:"):doc.index("Their commands come from")]
    names = re.findall(r"(deploytool\.[\w.]+)((?: / \w+)*)", index)
    assert len(names) == 8
    for path, more in names:
        module_path, _, attr = path.rpartition(".")
        if module_path.endswith(".Deploy"):  # a method
            module = importlib.import_module(module_path.rpartition(".")[0])
            owner = module.Deploy
        else:
            owner = importlib.import_module(module_path)
        for name in [attr, *(m.strip() for m in more.split("/") if m.strip())]:
            assert callable(getattr(owner, name)), f"{path}: {name}"
