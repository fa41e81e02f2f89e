"""The README's Python example runs as written (issue 14: the example is a test).

The block is read from README.md, so an edit there that breaks it fails here. Only the
training length is shortened (``steps=3000`` -> ``steps=4``), and the two party tables
it assumes are made up here; everything else runs verbatim, in a temporary folder.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## VFLGAN from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def party_tables(n=64, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(n)
    bank = pd.DataFrame({"customer_id": ids, "balance": rng.normal(1000, 200, n).round(2),
                         "segment": rng.choice(["retail", "premium"], n)})
    shop = pd.DataFrame({"customer_id": rng.permutation(ids),
                         "spend": rng.gamma(2.0, 50.0, n).round(2),
                         "region": rng.choice(["north", "south", "east"], n)})
    return bank, shop


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    code = readme_example()
    assert "steps=3000" in code
    code = code.replace("steps=3000", "steps=4")
    bank, shop = party_tables()
    monkeypatch.chdir(tmp_path)
    ns = {"bank_table": bank, "shop_table": shop}
    exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 - the README's own code
    synthetic, same, control = ns["synthetic"], ns["same"], ns["control"]
    assert len(synthetic) == 1000 and set(synthetic.columns) == {
        "balance", "segment", "spend", "region"}
    assert same.equals(ns["loaded"].sample(1000, seed=7))
    assert not same.equals(control)
    assert (tmp_path / "runs" / "my-model" / "party-0").is_dir()
