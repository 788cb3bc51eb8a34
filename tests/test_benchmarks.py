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
import scaling  # noqa: E402
import step_ops  # noqa: E402
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


def test_study_speed_writes_the_seed_asked_for(tmp_path):
    spec = load_spec(study_speed.ablate_toml(study_speed.SIZES["tiny"], tmp_path, "s", "auto", seed=43))
    assert spec.experiment.seeds == [43]


def _recipe_runs(f1_by_seed: dict[int, float]) -> dict[int, dict[str, dict]]:
    return {seed: {name: {"train_runtime_s": 12.0, "in_train_eval_s": 2.0, "steps": 10,
                          "validation": {"macro_f1": f1}} for name in mfu_recipes.RECIPES}
            for seed, f1 in f1_by_seed.items()}


def test_mfu_recipes_averages_seeds_and_shows_their_f1_range_for_minilm_only():
    np = pytest.importorskip("numpy")
    size, data = study_speed.SIZES["full"], {"train_lengths": np.array([20] * 100)}
    args = (data, 1_000_000, 100.0, "python benchmarks/mfu_recipes.py", "2026-11-23 02:00")
    minilm = mfu_recipes.render(size, "minilm", _recipe_runs({42: 0.5, 43: 0.7}), *args)
    # 6 × 1e6 parameters × 2,000 tokens / 10 s / 100 GFLOP/s = 1.2 %
    assert "| baseline | 16 | random | " in minilm
    assert "| 10.0 s | 200 | 1.2% | 0.6000 (0.5000–0.7000) |" in minilm
    assert minilm.startswith("<!-- mfu_recipes:begin -->") and "seeds 42, 43" in minilm
    base = mfu_recipes.render(size, "bert-base", _recipe_runs({42: 0.5}), *args)
    assert base.startswith("<!-- mfu_recipes:bert-base:begin -->")
    assert "| 10.0 s | 200 | 1.2% |\n" in base and "macro-F1" not in base
    assert "measured at the start)" in base
    drifted = mfu_recipes.render(size, "bert-base", _recipe_runs({42: 0.5}), *args, rate_after=80.0)
    assert "measured at the start; 80 GFLOP/s measured again at the end)" in drifted


def test_mfu_recipes_reads_utilisation_against_the_rate_probed_between_steps_too():
    np = pytest.importorskip("numpy")
    size, data = study_speed.SIZES["full"], {"train_lengths": np.array([20] * 100)}
    runs = _recipe_runs({42: 0.5})
    for run in runs[42].values():  # 2 s of probes inside the 12 s of training; 512 at 50 GFLOP/s is best
        run["probe"] = {"key": "k", "probes": 10, "seconds": 2.0,
                        "sizes": {"512": {"seconds": 0.5, "flops": 25e9},
                                  "4096": {"seconds": 1.0, "flops": 40e9}}}
    section = mfu_recipes.render(size, "minilm", runs, data, 1_000_000, 100.0,
                                 "python benchmarks/mfu_recipes.py", "2026-12-03 17:00")
    # 12 s − 2 s of evaluation − 2 s of probes = 8 s: 6 × 1e6 × 2,000 / 8 s = 1.5 GFLOP/s
    assert "| 8.0 s | 250 | 1.5% | 50 GFLOP/s | 3.0% | 0.5000 |" in section
    assert "| rate between steps | MFU against it | val macro-F1 |" in section
    del runs[42]["bs32"]  # --recipes without it
    assert "| bs32 |" not in mfu_recipes.render(size, "minilm", runs, data, 1_000_000, 100.0, "c", "t")
    assert "rate between steps" not in mfu_recipes.render(size, "minilm", _recipe_runs({42: 0.5}), data,
                                                         1_000_000, 100.0, "c", "t")


def test_mfu_recipes_repeated_runs_read_each_against_its_own_rate_between_steps():
    np = pytest.importorskip("numpy")
    size, data = study_speed.SIZES["full"], {"train_lengths": np.array([20] * 100)}
    runs = {}
    for repeat, best in enumerate((50e9, 25e9, 100e9)):  # FLOPs timed in 1 s at 512: 50, 25, 100 GFLOP/s
        runs[(42, repeat)] = _recipe_runs({42: 0.5})[42]
        for run in runs[(42, repeat)].values():
            run["probe"] = {"seconds": 2.0, "sizes": {"512": {"seconds": 1.0, "flops": best}}}
    section = mfu_recipes.render(size, "minilm", runs, data, 1_000_000, 100.0, "c", "t")
    # 1.5 GFLOP/s of training (8 s) against 50, 25 and 100 GFLOP/s: 3.0, 6.0 and 1.5 %, mean 3.5 %
    # the rate column pools the runs' probes: 175e9 FLOPs in 3 s, 58 GFLOP/s
    assert "| 8.0 s | 250 | 1.5% | 58 GFLOP/s | 3.5% (1.5%–6.0%) | 0.5000 (0.5000–0.5000) |" in section
    assert "seed 42, each run 3 times" in section and "their range in brackets" in section


def test_mfu_recipes_refuses_no_repeats(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["mfu_recipes.py", "--repeats", "0"])
    with pytest.raises(SystemExit) as exit_:
        mfu_recipes.main()
    assert exit_.value.code == 2 and "--repeats 0: give 1 or more" in capsys.readouterr().err


def test_the_rate_probe_measures_the_sizes_in_turn_within_its_budget_of_the_steps_time():
    import _rate_probe
    import torch

    probe = _rate_probe.RateProbe(sizes=(8, 16), budget=0.5, timed_s=0.001)
    drawn = torch.get_rng_state()
    probe.on_step_end(None, None, None)  # no step time yet: 0 ≤ 0.5 × 0, a probe of 8
    assert probe.probes == 1 and probe.seconds > 0
    assert torch.equal(torch.get_rng_state(), drawn)  # the trial's dropout draws are not touched
    probe.step_seconds = 1000.0  # far within budget: the next size, then the first again
    probe.on_step_end(None, None, None)
    probe.on_step_end(None, None, None)
    assert probe.probes == 3
    probe.seconds = 1e6  # over budget: no probe
    probe.on_step_end(None, None, None)
    record = probe.record("baseline-s42")
    assert record["key"] == "baseline-s42" and record["probes"] == 3
    assert set(record["sizes"]) == {"8", "16"}
    assert record["sizes"]["8"]["flops"] % (2 * 8**3) == 0 and record["sizes"]["8"]["flops"] >= 2 * 2 * 8**3
    assert all(timed["seconds"] >= 0.001 for timed in record["sizes"].values())


def test_the_rate_probe_runs_ablate_with_a_probe_in_every_trial_and_writes_a_line_each(monkeypatch,
                                                                                         tmp_path):
    import json
    from types import SimpleNamespace

    import _rate_probe

    from ablation import cli, train

    def fake_trial(trial, *args, extra_callbacks=None, **kwargs):
        for _ in range(trial.steps):
            for callback in extra_callbacks:
                callback.on_step_end(None, None, None)
        return {"steps": trial.steps}

    def fake_ablate(argv):
        assert argv == ["run", "study.toml"]
        results = [train.train_trial(SimpleNamespace(key=f"v{steps}-s42", steps=steps)) for steps in (2, 3)]
        return 0 if [r["steps"] for r in results] == [2, 3] else 1

    monkeypatch.setattr(train, "train_trial", fake_trial)
    monkeypatch.setattr(cli, "main", fake_ablate)
    probes = tmp_path / "probes.jsonl"
    monkeypatch.setattr(_rate_probe, "SIZES", (8,))
    monkeypatch.setattr(_rate_probe, "TIMED_S", 0.001)
    monkeypatch.setattr(_rate_probe, "BUDGET", 1e9)  # a probe after every step
    assert _rate_probe.main([str(probes), "run", "study.toml"]) == 0
    lines = [json.loads(line) for line in probes.read_text().splitlines()]
    assert [(line["key"], line["probes"], list(line["sizes"])) for line in lines] == [
        ("v2-s42", 2, ["8"]), ("v3-s42", 3, ["8"])]


def test_step_ops_tabulates_phases_mfu_and_the_profiled_shares():
    shares = {category: 0.1 for category in step_ops.CATEGORIES} | {"other": 0.5}
    rows = [{"model": "MiniLM", "setting": step_ops.SETTINGS[0], "phases": [90.0, 110.0, 10.0, 20.0],
             "nonembedding": 1_000_000, "total": 230.0, "real_tokens": 546.0, "padded_tokens": 555.0,
             "mfu": 0.444, "shares": shares},
            {"model": "MiniLM", "setting": step_ops.SETTINGS[2], "phases": [90.0, 100.0, 5.0, 10.0],
             "total": 205.0, "real_tokens": 546.0, "padded_tokens": 555.0, "mfu": 0.478}]
    versus = {"steps": 50, "tokens": 34_000, "trainer_s": 10.0, "loop_s": 8.5}
    section = step_ops.render(rows, 32, 12, 340.0, "python benchmarks/step_ops.py", "2026-11-23 03:00",
                              versus)
    assert section.startswith(step_ops.BEGIN) and section.rstrip().endswith(step_ops.END)
    assert ("| MiniLM | fp32, as the Trainer runs it | 90 | 110 | 10 | 20 | 230 | 546 / 555 | 44.4% |"
            in section)
    assert "| MiniLM | word embeddings frozen | 90 | 100 | 5 | 10 | 205 | 546 / 555 | 47.8% |" in section
    assert "| linear layers (mm, addmm) | 10.0% |" in section and "| other | 50.0% |" in section
    # 6 × 1e6 × 34,000 tokens / 10 s / 340 GFLOP/s = 6.0 %
    assert "| transformers Trainer | 10.00 | 3400 | 6.0% |" in section
    assert "| bare PyTorch loop | 8.50 | 4000 | 7.1% |" in section


def _tiny_bert(name: str = "MiniLM"):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=3))


def test_paired_steps_take_turns_step_by_step_swapping_the_order_every_batch(monkeypatch):
    import torch

    monkeypatch.setattr(step_ops, "build_model", _tiny_bert)
    turns: list[str] = []
    sides = {"a": lambda model: turns.append("a"), "b": lambda model: turns.append("b")}
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 3:] = 0
    batch = {"input_ids": torch.randint(1, 100, (2, 6)), "attention_mask": mask,
             "labels": torch.tensor([0, 2])}
    result = step_ops.paired_steps("MiniLM", step_ops.SETTINGS[4], sides, [batch] * 3, passes=2)
    assert turns == ["a", "b", "b", "a", "a", "b"] + ["b", "a", "a", "b", "b", "a"]
    assert set(result["ms"]) == {"a", "b"} and len(result["differences"]["b"]) == 6
    assert result["nonembedding"] > 0


def test_step_pairs_switch_the_dropout_draws_and_the_embedding_gradient(monkeypatch):
    import step_pairs
    import torch

    from ablation import cpu_dropout
    from ablation.embedding_gradient import KeptGradientEmbedding

    monkeypatch.setattr(cpu_dropout, "keep_mask", cpu_dropout.keep_mask)  # restored after the test
    integers = cpu_dropout.keep_mask
    model = _tiny_bert()
    sides = step_pairs.switches()["both"]
    before, now = sides.values()
    before(model)
    assert cpu_dropout.keep_mask is step_pairs.float_mask
    assert type(model.get_input_embeddings()) is torch.nn.Embedding
    now(model)
    assert cpu_dropout.keep_mask is integers
    assert type(model.get_input_embeddings()) is KeptGradientEmbedding
    assert step_pairs.float_mask(torch.Size([1000]), 0.0).all()


def test_step_pairs_switch_packed_attention_and_time_both_sides_alike(monkeypatch):
    import step_pairs
    import torch

    from ablation import cpu_dropout

    monkeypatch.setattr(cpu_dropout, "_attend_packed", cpu_dropout._attend_packed)  # restored after
    function = cpu_dropout._attend_packed
    before, now = step_pairs.switches()["packed attention"].values()
    model = _tiny_bert()
    before(model)
    assert cpu_dropout._attend_packed is step_pairs.autograd_attention
    now(model)
    assert cpu_dropout._attend_packed is function
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 2:] = 0
    timed = step_pairs.attention_ms({"attention_mask": mask})
    assert list(timed) == ["autograd graph", "one Function, two length groups (ablate)"]
    assert all(ms > 0 for ms in timed.values())


def test_round_cells_give_each_sides_rounds_median_mfu_at_the_median_and_speed_up():
    # The packing section's first rows (RESULTS.md, 2026-12-03 11:25).
    rows = {"padded": [{"total": 482.0, "mfu": 0.290}, {"total": 425.0}, {"total": 503.0}],
            "packed": [{"total": 299.0, "mfu": 0.433 * 324 / 299}, {"total": 324.0}, {"total": 350.0}]}
    assert step_ops.round_cells(rows) == {"padded": "482, 425, 503 | 482 | 29.0% | 1.00×",
                                          "packed": "299, 324, 350 | 324 | 43.3% | 1.49×"}
    assert step_ops.mfu_definition(149.4).startswith("MFU: 6 × non-embedding parameters × real tokens")
    assert step_ops.mfu_definition(149.4).endswith(
        "/ 149 GFLOP/s (the best fp32 matmul rate measured at the start).")


def test_best_checkpoint_tabulates_each_way_per_model():
    import best_checkpoint  # noqa: PLC0415  benchmarks/ is on sys.path above

    times = {"MiniLM": {way: {"save": [0.3, 0.1, 0.2], "load": [0.01, 0.02, 0.03]}
                        for way in best_checkpoint.WAYS}}
    section = best_checkpoint.render(times, 3, "python benchmarks/best_checkpoint.py", "2026-12-03 15:00")
    assert section.startswith(best_checkpoint.BEGIN) and section.rstrip().endswith(best_checkpoint.END)
    assert "| MiniLM (22.7 M parameters) | in memory (ablate) | 0.200 (0.100–0.300) | 0.020 (0.010–0.030) |" \
        in section


def test_step_pairs_times_calls_taking_turns():
    import step_pairs  # noqa: PLC0415  benchmarks/ is on sys.path above

    order: list[str] = []
    medians = step_pairs.alternating_ms({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                                        repeats=4)
    assert set(medians) == {"a", "b"} and all(ms >= 0 for ms in medians.values())
    assert order == ["b", "a", "a", "b", "b", "a", "a", "b", "b", "a"]  # a warm-up round, then 4


def test_step_pairs_step_adamw_over_the_whole_table_and_over_the_reachable_rows(monkeypatch):
    import step_pairs  # noqa: PLC0415  benchmarks/ is on sys.path above
    import torch

    from ablation import embedding_gradient

    monkeypatch.setattr(step_ops, "build_model", _tiny_bert)
    stepped_apart = []
    real = embedding_gradient.step_reachable_rows
    monkeypatch.setattr(embedding_gradient, "step_reachable_rows",
                        lambda *args: stepped_apart.append(real(*args)) or stepped_apart[-1])
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 3:] = 0
    batch = {"input_ids": torch.randint(1, 50, (2, 6)) * mask, "attention_mask": mask,
             "labels": torch.tensor([0, 2])}
    reached = torch.arange(50)  # half of the tiny vocabulary; `reachable_pairs` exits where not stepped apart
    result = step_pairs.reachable_pairs([batch] * 2, reached, passes=2)
    assert list(result["ms"]) == list(step_pairs.REACHABLE_SIDES)
    assert len(result["differences"][step_pairs.REACHABLE_SIDES[1]]) == 4
    timed = step_pairs.adamw_ms(batch, reached)
    assert list(timed) == list(step_pairs.REACHABLE_SIDES) and all(ms > 0 for ms in timed.values())
    assert stepped_apart == [True, True]  # one model of the two, in each function


@pytest.mark.parametrize(("argv", "message"), [
    (["--workdir", "{file}"], "not a folder"),
    (["--results", "{tmp}/no/such/RESULTS.md"], "no folder"),
    (["--results", "{tmp}"], "a folder; give a markdown file"),
])
def test_study_speed_refuses_bad_paths_before_measuring(argv, message, tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("")
    argv = [a.format(file=tmp_path / "a-file", tmp=tmp_path) for a in argv]
    monkeypatch.setattr(sys, "argv", ["study_speed.py", *argv])
    monkeypatch.setattr(study_speed, "run", lambda *_: pytest.fail("measured before checking its paths"))
    with pytest.raises(SystemExit) as exit_:
        study_speed.main()
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_study_speed_interrupted_keeps_results_and_removes_its_temporary_folder(tmp_path, monkeypatch,
                                                                                 capsys):
    results, work = tmp_path / "RESULTS.md", tmp_path / "study_speed-x"
    results.write_text("# Benchmark results\n")
    work.mkdir()

    def interrupted(args, folder):  # type: ignore[no-untyped-def]
        (folder / "usual-baseline.log").write_text("half a run")
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "argv", ["study_speed.py", "--results", str(results)])
    monkeypatch.setattr(study_speed.tempfile, "mkdtemp", lambda **_: str(work))
    monkeypatch.setattr(study_speed, "run", interrupted)
    with pytest.raises(SystemExit) as exit_:
        study_speed.main()
    assert exit_.value.code == 130 and "interrupted" in capsys.readouterr().err
    assert not work.exists() and results.read_text() == "# Benchmark results\n"


def test_study_speed_interrupted_stops_the_ways_process(tmp_path, monkeypatch):
    started = []
    popen = study_speed.subprocess.Popen

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        started.append(popen(*args, **kwargs))
        return started[-1]

    def ctrl_c(seconds, line):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(study_speed.subprocess, "Popen", recording)
    child = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(600)"]
    with pytest.raises(KeyboardInterrupt):
        study_speed.run_process(child, tmp_path / "way.log", on_line=ctrl_c)
    assert started[0].poll() is not None  # killed and reaped, not left running


def test_results_are_replaced_whole(tmp_path):
    results = tmp_path / "RESULTS.md"
    study_speed.replace_section(results, "<!-- a:begin -->\nnew\n<!-- a:end -->\n",
                                "<!-- a:begin -->", "<!-- a:end -->")
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]


@pytest.mark.parametrize("script", [mfu_recipes, scaling], ids=["mfu_recipes", "scaling"])
def test_benchmarks_remove_their_temporary_studies_even_when_stopped(script, tmp_path, monkeypatch):
    work = tmp_path / "work"

    def stopped(folder):  # type: ignore[no-untyped-def]
        (folder / "study" / "swanlog").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(script.tempfile, "mkdtemp", lambda *_, **__: str(work.mkdir() or work))
    monkeypatch.setattr(script, "measure", stopped)
    with pytest.raises(KeyboardInterrupt):
        script.main()
    assert not work.exists()


@pytest.mark.parametrize(("argv", "writes"), [
    ([], True), (["--full"], True), (["--tiny"], False), (["--tiny", "--results", "{tmp}/R.md"], True),
    (["--no-write"], False)])
def test_study_speed_writes_results_except_for_a_smoke_run(argv, writes, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "argv", ["study_speed.py", *(a.format(tmp=tmp_path) for a in argv)])
    monkeypatch.setattr(study_speed.tempfile, "mkdtemp", lambda **_: str(tmp_path / "work"))
    monkeypatch.setattr(study_speed, "run", lambda args, work: seen.append(args))
    study_speed.main()
    assert seen[0].no_write is not writes
    assert seen[0].results == (tmp_path / "R.md" if "--results" in argv else study_speed.HERE / "RESULTS.md")


@pytest.mark.parametrize("argv", [["--examples", "-5"], ["--repeats", "0"]])
def test_report_stats_refuses_counts_below_one(argv, monkeypatch, capsys):
    import report_stats

    monkeypatch.setattr(sys, "argv", ["report_stats.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        report_stats.main()
    assert exit_.value.code == 2 and f"{argv[0]} {argv[1]}: give 1 or more" in capsys.readouterr().err


def test_study_speed_calls_a_run_noisy_when_the_matmul_rate_drifts_or_when_told():
    """Another process's work moves the matmul rate between the start and the end of the run:
    the results are headed as noisy without --note-noisy too."""
    steady = [{"fp32": {512: 80.0, 1024: 94.0}}, {"fp32": {512: 79.0, 1024: 90.0}}]
    busy = [{"fp32": {512: 60.0, 1024: 78.0}}, {"fp32": {512: 80.0, 1024: 94.0}}]
    assert study_speed.rate_drift(busy) == pytest.approx(16 / 94)
    assert study_speed.noisy_note(False, steady) == ""
    assert "timings are noisy" in study_speed.noisy_note(True, steady)
    assert "moved 17 % between the start and the end" in study_speed.noisy_note(False, busy)


def _study_speed_run(train_runtime_s: float, f1: float, **extra: float) -> dict:
    """One variant's measurements as way 1, 2 or 3 reports them (_trainer_figures.py, way_ablate)."""
    return {"train_runtime_s": train_runtime_s, "in_train_eval_s": 1.0, "evaluations": 2, "steps": 13,
            "validation": {"accuracy": f1 + 0.1, "macro_f1": f1}, "validation_s": 0.5,
            "validation_samples_per_s": 20.0, "test": {"accuracy": f1 + 0.1, "macro_f1": f1},
            "test_s": 0.25, "validation_labels": [0, 1, 2, 0, 1, 2, 0, 1, 2, 0], **extra}


def _study_speed_section(end_rate: float = 49.0, bf16: bool = False) -> tuple[str, dict]:
    """study_speed's section rendered from fake measurements shaped as run() builds them: 50 train
    tweets of 20 tokens, 10 M non-embedding parameters, a best fp32 rate of 50 GFLOP/s, 4 variants."""
    from argparse import Namespace

    np = pytest.importorskip("numpy")
    size = study_speed.SIZES["tiny"]
    f1s = {"1": [0.60, 0.70, 0.50, 0.60], "2": [0.60, 0.70, 0.50, 0.60], "3": [0.61, 0.69, 0.50, 0.60]}
    extra = {"1": {"padded_train_tokens": 50 * 512, "process_wall_s": 125.0},
             "2": {"padded_train_tokens": 1900, "runtime_s": 4.0},
             "3": {"runtime_s": 4.5, "trial_wall_s": 5.0}}
    train_runtime = {"1": 101.0, "2": 2.5, "3": 3.0}  # minus 1 s of evaluations: 100, 1.5 and 2 s
    labels = {"1": "1. the usual way", "2": "2. careful script", "3": "3. `ablate run`"}
    ways = {k: study_speed.Way(labels[k], wall_s=wall, peak_rss_mb=1000.0, runs={
        variant: _study_speed_run(train_runtime[k], f1, **extra[k])
        for variant, f1 in zip(size.variants, f1s[k], strict=True)})
        for k, wall in (("1", 500.0), ("2", 30.0), ("3", 40.0))}
    if bf16:  # the extra `ablate run` with precision bf16: 1 s of training per variant
        ways["bf16"] = study_speed.Way("(extra) bf16", wall_s=35.0, runs={
            variant: _study_speed_run(2.0, f1, runtime_s=3.5, trial_wall_s=4.0)
            for variant, f1 in zip(size.variants, f1s["3"], strict=True)})
    data = {"label_names": ["negative", "neutral", "positive"], "train_lengths": np.array([20] * 50),
            "validation_labels": [0, 1, 2, 0, 1, 2, 0, 1, 2, 0], "rows": {"train": 50, "validation": 10,
                                                                         "test": 10},
            "padding": {"random": 1.9, "grouped": 1.1, "max_length_512": 25.6}}
    machine = {"cpu": "Fake CPU", "cores": 2, "threads": 2, "memory_gib": 24.0,
               "versions": {"torch": "2.0"}, "command": "python benchmarks/study_speed.py --tiny",
               "matmul": [{"fp32": {512: 50.0, 1024: 45.0}}, {"fp32": {512: end_rate, 1024: end_rate - 5}}],
               "step_shapes": {"tokens": 608, "gflops": 40.0}}
    params = (12_000_000, 2_000_000)
    best = max(max(m["fp32"].values()) for m in machine["matmul"])  # as run() takes it
    summaries = {k: study_speed.summarize(w, data, params[0] - params[1], best) for k, w in ways.items()}
    fixed = {"start → spec parsed": 1.0, "report written → process exit": 1.5}
    profile = [{"setting": "fp32", "forward": 40.0, "backward": 60.0, "clip": 5.0, "optimizer": 15.0,
                "first_pass": 130.0, "real_tokens_per_step": 32.0}]
    section = study_speed.render(Namespace(note_noisy=False), size, machine, data, ways, summaries,
                                 fixed, 4.9, params, profile, "2026-12-06 10:00", 600.0)
    return section, summaries


def test_study_speed_tabulates_each_way_with_its_mfu_fixed_costs_and_targets():
    section, summaries = _study_speed_section()
    begin, end = study_speed.markers("tiny")
    assert section.startswith(begin) and section.rstrip().endswith(end)
    assert ("| way | wall time, whole study | train time (sum) | train samples/s | train tokens/s "
            "(non-pad) | eval samples/s | peak RSS | val accuracy (mean) | val macro-F1 (mean) | MFU |"
            in section)
    # MFU: 6 × non-embedding parameters × real tokens trained / train time / matmul rate, by hand:
    # 4 variants × 50 tweets × 20 tokens = 4,000 tokens; way 3 trains 4 × 2 s = 8 s; best rate 50 GFLOP/s
    mfu_3 = 6 * 10_000_000 * 4_000 / 8.0 / 50e9
    assert mfu_3 == pytest.approx(0.60) and summaries["3"]["mfu"] == pytest.approx(mfu_3)
    # samples/s 200 / 8 s; tokens/s 4,000 / 8 s; eval samples/s 4 × 10 / (4 × 0.5 s)
    assert (f"| 3. `ablate run` | 40.0 s | 8.0 s | 25.0 | 500 | 20.0 | 1000 MiB | 0.7000 | 0.6000 | "
            f"{100 * mfu_3:.1f} % |") in section
    assert "| 1. the usual way | 500 s | 400 s | 0.5 | 10 | 20.0 | 1000 MiB | 0.7000 | 0.6000 | 1.2 % |" \
        in section  # 6 × 1e7 × 4,000 / 400 s / 50 GFLOP/s
    assert ("| 2. careful script | 30.0 s | 6.0 s | 33.3 | 667 | 20.0 | 1000 MiB | 0.7000 | 0.6000 | "
            "80.0 % |") in section
    assert "the best fp32 matmul rate (50 GFLOP/s)" in section
    assert "Way 1 computes on 25.6× as many tokens" in section  # 512 / 20
    assert ("| variant | way 1 train | way 2 train | way 3 train | ablate / way 2 train | way 1 F1 | "
            "way 2 F1 | way 3 F1 |\n|---|---|---|---|---|---|---|---|\n") in section
    assert "| baseline | 100.0 | 1.5 | 2.0 | 1.333 | 0.6000 | 0.6000 | 0.6100 |" in section
    # the fixed costs, with the trials' training (4 × 2 s) and evaluations (4 × (1 + 0.5 + 0.25 s))
    assert "| phase | seconds |" in section and "| start → spec parsed | 1.0 |" in section
    assert "| report written → process exit | 1.5 |" in section
    assert "| (for scale) training inside the trials, sum | 8.0 |" in section
    assert "| (for scale) evaluations inside the trials (in training, validation, test), sum | 7.0 |" \
        in section
    assert "fresh interpreter, median of 3) | 4.9 |" in section
    # the step profile: 120 ms, 6 × 1e7 × 32 tokens / 0.12 s / 50 GFLOP/s = 32 %
    assert "| fp32 | 40 | 60 | 5 | 15 | 120 | 130 | 32 | 32.0 % (fp32 rate) |" in section
    # 500 s / 40 s at equal mean F1: PASS; trials 4 × 5 s against 4 × 4 s: 1.25 > 1.05, FAIL; MFU PASS
    targets = section.split("Targets:")[1]
    assert "faster than way 1 for the whole study at equal accuracy" in targets
    assert "**PASS** — 12.50× (500 s vs 40.0 s); mean validation macro-F1 ablate − way 1: +0.00 points" \
        in targets and "+1.0, -1.0, +0.0, +0.0 points" in targets
    assert "within 5 % of way 2 per trial" in targets
    assert "**FAIL** — 1.250; train time alone, summed: 1.333" in targets
    assert "≥ 50 % of the measured fp32 matmul rate: **PASS** — 60.0 %" in targets
    assert "against the rate of the step's own shapes (40 GFLOP/s): 75.0 %" in targets
    assert "timings are noisy" not in section  # 50 → 49 GFLOP/s: 2 % of drift


def test_study_speed_section_is_headed_noisy_when_the_matmul_rate_drifts():
    section, _ = _study_speed_section(end_rate=40.0)  # best fp32 rate 50 GFLOP/s at the start, 40 at the end
    header = section.split("Machine:")[0]
    assert "moved 20 % between the start and the end of the run" in header
    assert "timings are noisy" in header


def test_study_speed_puts_the_train_ratio_beside_the_two_ways_it_compares():
    section, _ = _study_speed_section(bf16=True)
    assert ("| variant | way 1 train | way 2 train | way 3 train | ablate / way 2 train | "
            "ablate bf16 train | way 1 F1 | way 2 F1 | way 3 F1 | ablate bf16 F1 |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n"
            "| baseline | 100.0 | 1.5 | 2.0 | 1.333 | 1.0 | 0.6000 | 0.6000 | 0.6100 | 0.6100 |") in section


def test_startup_notes_times_each_note_on_a_study_and_refuses_a_bad_file(write_experiment,
                                                                          monkeypatch, capsys):
    import startup_notes

    monkeypatch.setattr(sys, "argv", ["startup_notes.py", str(write_experiment()), "--repeats", "2"])
    startup_notes.main()
    out = capsys.readouterr().out
    assert "unknown-token share: median" in out and "overlap notes: median" in out
    assert "truncated share at max_length 128: median" in out
    assert out.count("over 2 (train") == 3
    monkeypatch.setattr(sys, "argv", ["startup_notes.py", "nope.toml"])
    with pytest.raises(SystemExit) as exit_:
        startup_notes.main()
    assert exit_.value.code == 2 and "nope.toml: no such experiment file" in capsys.readouterr().err
