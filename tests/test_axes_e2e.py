"""End to end on the tiny BERT: reproducibility, and the data-size and model axes."""

from __future__ import annotations

import shutil

import optuna
from conftest import DEFAULT_BASELINE

from ablation import cli
from ablation.config import load_spec


def _results(path) -> dict[str, dict]:
    spec = load_spec(path)
    study = optuna.load_study(study_name=spec.name, storage=spec.experiment.storage)
    return {t.user_attrs["key"]: t.user_attrs["result"] for t in study.get_trials()}


def test_the_same_seed_gives_the_same_metrics_bit_for_bit(write_experiment):
    """README's "What is reproducible": a trial trained again in another study gives the same
    numbers, also where the file adds a variant before it (each trial is its own seed)."""
    first = write_experiment(name="first", variants="drop = { dropout = 0.3 }\n")
    second = write_experiment(name="second", variants=(
        "new = { learning_rate = 5e-4 }\ndrop = { dropout = 0.3 }\n"))
    assert cli.main(["run", str(first), "--set", "baseline.epochs=1"]) == 0
    assert cli.main(["run", str(second), "--set", "baseline.epochs=1"]) == 0
    for key in ("baseline-s42", "baseline_drop-s42"):
        a, b = _results(first)[key], _results(second)[key]
        assert a["validation"] == b["validation"], key  # exact equality, every metric
        assert a["test"] == b["test"], key
        assert a["test_predictions"] == b["test_predictions"], key
        assert [p["loss"] for p in a["history"]] == [p["loss"] for p in b["history"]], key
        assert [p["grad_norm"] for p in a["history"]] == [p["grad_norm"] for p in b["history"]], key


def test_a_different_seed_gives_a_different_run(write_experiment):
    path = write_experiment(variants="", extra="")
    assert cli.main(["run", str(path), "--set", "experiment.seeds=[1, 2]"]) == 0
    results = _results(path)
    assert results["baseline-s1"]["history"] != results["baseline-s2"]["history"]


def test_data_size_model_and_model_config_axes(write_experiment, tiny_model_dir, tmp_path):
    other_model = tmp_path / "same-tokenizer-other-folder"
    shutil.copytree(tiny_model_dir, other_model)
    path = write_experiment(variants=(
        "layers1 = { model_config = { num_hidden_layers = 1 } }\n"
        f'other = {{ model = "{other_model}" }}\n'), extra="[sweep]\nmax_train_samples = [60]\n")
    assert cli.main(["run", str(path)]) == 0
    results = _results(path)
    assert set(results) == {"baseline-s42", "baseline_layers1-s42", "baseline_other-s42",
                            "baseline_n60-s42"}
    assert results["baseline_n60-s42"]["train_examples"] == 60
    assert results["baseline-s42"]["train_examples"] == 216
    assert results["baseline_layers1-s42"]["parameters"] < results["baseline-s42"]["parameters"]
    assert results["baseline_other-s42"]["parameters"] == results["baseline-s42"]["parameters"]
    # One tokenization for all four trials: same tokenizer content, same max_length.
    cache = load_spec(path).output_dir / "cache"
    assert len(list(cache.glob("train-*.arrow"))) == 1
    report = (load_spec(path).output_dir / "report.md").read_text()
    assert "baseline_n60 | max_train_samples=60" in report
    assert "(plots/learning_curve.png)" in report


def _batches_by_trial(monkeypatch) -> dict[str, list[list[tuple[int, ...]]]]:
    """Each trial's training batches as they reach training_step: its texts' token ids."""
    from ablation import train

    seen: dict[str, list[list[tuple[int, ...]]]] = {}
    real_step = train.AblateTrainer.training_step

    def training_step(self, model, inputs, *args, **kwargs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        trial = self.args.output_dir.split("/trials/")[1].split("/")[0]
        seen.setdefault(trial, []).append(sorted(tuple(ids[i][mask[i].bool()].tolist())
                                                 for i in range(len(ids))))
        return real_step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(train.AblateTrainer, "training_step", training_step)
    return seen


def test_group_by_length_batches_do_not_depend_on_the_dropout_draws(write_experiment, monkeypatch):
    """The seed alone gives the data order, also with group_by_length: its second epoch's order was
    drawn from torch's generator after the first epoch's dropout masks, so a variant without
    dropout (or another max_length, batch size, model) trained on other batches from epoch 2 on,
    and a trial resumed in epoch 2 on others than the uninterrupted trial."""
    path = write_experiment(baseline=DEFAULT_BASELINE + "group_by_length = true\n",
                            variants="nodrop = { dropout = 0.0 }\n")
    seen = _batches_by_trial(monkeypatch)
    assert cli.main(["run", str(path)]) == 0
    grouped, nodrop = seen["baseline-s42"], seen["baseline_nodrop-s42"]
    assert len(grouped) == len(nodrop) == 28  # 216 rows in batches of 16, two epochs
    assert grouped[14:] == nodrop[14:]  # the second epoch, as the first
    assert grouped[:14] == nodrop[:14]
    assert grouped[14:] != grouped[:14]  # each epoch its own order


def test_no_two_seeds_train_an_epoch_on_the_same_batches(write_experiment, monkeypatch):
    """Each seed its own data order in every epoch: the order of epoch e was drawn from seed + e,
    so seed 1's second epoch was seed 2's first, batch for batch, and `seeds = [42, 43, 44]` over
    3 epochs shared most of their data orders (the t-test over seeds read them as independent)."""
    path = write_experiment(variants="grouped = { group_by_length = true }\n")
    seen = _batches_by_trial(monkeypatch)
    assert cli.main(["run", str(path), "--set", "experiment.seeds=[1, 2]"]) == 0
    for variant in ("baseline", "baseline_grouped"):
        epochs = [[seen[f"{variant}-s{seed}"][14 * epoch:14 * (epoch + 1)] for epoch in (0, 1)]
                  for seed in (1, 2)]
        assert all(len(batches) == 14 for seed in epochs for batches in seed)
        orders = [batches for seed in epochs for batches in seed]
        assert all(a != b for i, a in enumerate(orders) for b in orders[i + 1:]), variant


def test_a_batch_size_or_max_length_variant_sees_the_same_examples_in_the_same_order(
        write_experiment, monkeypatch):
    """README's "What is reproducible": at the same seed another batch_size batches the same
    examples, in the same order, otherwise, and another max_length cuts them."""
    path = write_experiment(variants="bs8 = { batch_size = 8 }\ncut = { max_length = 6 }\n",
                            extra="", baseline=DEFAULT_BASELINE.replace("epochs = 2", "epochs = 1"))
    seen = _batches_by_trial(monkeypatch)
    assert cli.main(["run", str(path)]) == 0
    baseline, bs8, cut = (seen[f"baseline{v}-s42"] for v in ("", "_bs8", "_cut"))
    assert len(baseline) == 14 and len(bs8) == 27  # 216 rows
    assert [sorted(a + b) for a, b in zip(bs8[0::2], bs8[1::2] + [[]], strict=True)] == baseline
    # [CLS], the first 4 of the 6 words (one token each here), [SEP]
    assert [sorted(row[:5] + row[-1:] for row in batch) for batch in baseline] == cut
