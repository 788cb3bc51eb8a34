"""The benchmarks' own plumbing: the studies they hand to `ablate run` are valid experiment files
with the intended variants, and their RESULTS.md sections replace only themselves. (Their timings
are measured by running them, never here.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ablation.config import load_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import mfu_recipes  # noqa: E402  benchmarks/ is a folder of scripts, not a package
import study_speed  # noqa: E402


@pytest.mark.parametrize("size", sorted(study_speed.SIZES))
def test_study_speed_writes_a_valid_study_of_each_size(size, tmp_path):
    spec_size = study_speed.SIZES[size]
    spec = load_spec(study_speed.ablate_toml(spec_size, tmp_path, "s", "auto"))
    assert spec.baseline.learning_rate == spec_size.learning_rate
    assert spec.baseline.batch_size == spec_size.batch_size
    expected = {name: change for name, change in spec_size.variants.items() if change}
    assert spec.variants == expected
    lr_variant = [name for name in spec_size.variants if name.startswith("lr")]
    assert spec.variants[lr_variant[0]]["learning_rate"] == spec_size.variant_learning_rate
    # --full trains off the loss plateau: its baseline rate is not the lr variant's
    assert study_speed.SIZES["full"].learning_rate != study_speed.SIZES["full"].variant_learning_rate


def test_mfu_recipes_are_valid_variants_with_toml_booleans(tmp_path):
    size = study_speed.SIZES["full"]
    spec = load_spec(study_speed.ablate_toml(size, tmp_path, "m", "auto", mfu_recipes.RECIPES))
    assert spec.variants["grouped-bs32"] == {"group_by_length": True, "batch_size": 32}
    assert set(spec.variants) == set(mfu_recipes.RECIPES) - {"baseline"}


def test_results_sections_replace_only_themselves(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nintro\n\n<!-- a:begin -->\nold\n<!-- a:end -->\n\nafter\n")
    study_speed.replace_section(results, "<!-- a:begin -->\nnew\n<!-- a:end -->\n",
                                "<!-- a:begin -->", "<!-- a:end -->")
    study_speed.replace_section(results, "<!-- b:begin -->\nb\n<!-- b:end -->\n",
                                "<!-- b:begin -->", "<!-- b:end -->")
    assert results.read_text() == ("# Benchmark results\n\nintro\n\n<!-- a:begin -->\nnew\n"
                                   "<!-- a:end -->\n\nafter\n\n<!-- b:begin -->\nb\n<!-- b:end -->\n")
