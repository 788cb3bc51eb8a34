"""The experiment files shipped in experiments/ stay valid: each loads and plans the trials its
comment promises, and `ablate validate` passes on its real data (offline cache, shared files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import SHARED_DIR

from ablation import cli
from ablation.config import load_spec
from ablation.sweep import select_trials

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))
# bert-base-chinese is not in the offline cache: the same data is checked with the cached MiniLM.
WAIMAI_CSV = SHARED_DIR / "datasets" / "waimai_10k.csv"
WAIMAI = ["--set", f'data.dataset="{WAIMAI_CSV}"',
          "--set", 'model.name="sentence-transformers/all-MiniLM-L6-v2"']


def sets_for(path: Path) -> list[str]:
    """The --set options a file needs here: waimai_cw names its CSV by file name only."""
    if path.stem != "waimai_cw":
        return []
    if not WAIMAI_CSV.is_file():
        pytest.skip(f"needs {WAIMAI_CSV}")
    return WAIMAI


def test_every_experiment_file_is_found():
    assert {p.stem for p in EXPERIMENTS} >= {"bs_lr", "class_weight", "tweets_loo", "waimai_cw"}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_file_loads_and_plans_its_variants(path: Path):
    spec = load_spec(path, sets_for(path)[1::2])
    trials = select_trials(spec, None)
    variants = {t.variant for t in trials}
    assert "baseline" in variants and len(variants) >= 2
    assert len(trials) == len(variants) * len(spec.experiment.seeds)
    promised = re.search(r"\b(\d+) trials\b", path.read_text(encoding="utf-8"))
    if promised:  # the count its comment gives (and times)
        assert len(trials) == int(promised.group(1))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_file_validates_on_its_real_data(offline_hf, path: Path, capsys):
    sets = sets_for(path)
    capsys.readouterr()
    assert cli.main(["validate", str(path), *sets]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("ok: ")
    if path.stem == "waimai_cw":  # one file, no splits: test then validation carved from it
        assert "test carved from 'train'" in out and "validation carved from 'train'" in out
        assert "labels negative, positive" in out
