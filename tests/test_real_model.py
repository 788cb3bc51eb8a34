"""End to end on the real pretrained MiniLM and real tweets, a few hundred examples, offline.

Needs the pre-filled Hugging Face cache (`source ../shared/offline-hf.sh`); skipped with that
reason where it is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from ablation import cli
from ablation.config import load_spec


def test_minilm_on_tweets_end_to_end(offline_hf, tmp_path, capsys):
    path = tmp_path / "tweets.toml"
    path.write_text(textwrap.dedent(f"""\
        [experiment]
        name = "tweets_small"
        output_dir = "{tmp_path / 'reports'}"

        [data]
        dataset = "mteb/tweet_sentiment_extraction"
        max_train_samples = 320
        max_eval_samples = 96
        max_test_samples = 96

        [model]
        name = "sentence-transformers/all-MiniLM-L6-v2"
        config = {{ num_hidden_layers = 2 }}

        [tracking]
        backend = "swanlab"
        mode = "offline"

        [baseline]
        learning_rate = 1e-4
        batch_size = 32
        epochs = 1
        eval_steps = 5

        [variants]
        "cw-balanced" = {{ class_weight = "balanced" }}
        """), encoding="utf-8")

    assert cli.main(["run", str(path)]) == 0
    spec = load_spec(path)
    study = optuna.load_study(study_name=spec.name, storage=spec.experiment.storage)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert study.user_attrs["label_names"] == ["negative", "neutral", "positive"]
    for trial in trials:
        result = trial.user_attrs["result"]
        assert 0.0 <= trial.value <= 1.0
        assert len(result["eval_history"]) == 2  # 10 steps, evaluated at 5 and 10
        assert sum(map(sum, result["test_confusion"])) == 96
    assert trials[1].user_attrs["result"]["class_weights"] is not None
    report = (spec.output_dir / "report.md").read_text()
    assert "baseline_cw-balanced | class_weight=balanced" in report.replace("** ★", "")
    assert "labels: negative, neutral, positive" in report
    assert list((spec.output_dir / "swanlog").glob("run-*")), "offline SwanLab runs are written"


@pytest.mark.parametrize("hub", ["model", "dataset"])
def test_a_cached_hub_id_loads_at_once_where_the_hub_cannot_be_reached(hub, offline_hf, tmp_path,
                                                                     tiny_data_dir, tiny_model_dir):
    """HF_HUB_OFFLINE not set and no Hub (here a port nobody listens on): huggingface_hub tried
    every file the cache lacks 6 times, printing "Retrying in Ns" each time: validating a study
    of the cached MiniLM took nearly 2 minutes, of the cached SST-2 about 25 s (datasets copies
    HF_HUB_OFFLINE into its own config when imported). The first failed connection now makes the
    process read the caches alone."""
    data, model = ((f'"{tiny_data_dir}"', '"sentence-transformers/all-MiniLM-L6-v2"') if hub == "model"
                   else ('"stanfordnlp/sst2"\ntext_column = "sentence"', f'"{tiny_model_dir}"'))
    path = tmp_path / "cached.toml"
    path.write_text(textwrap.dedent(f"""\
        [experiment]
        output_dir = "{tmp_path / 'reports'}"
        [tracking]
        backend = "none"
        [baseline]
        """) + f"[data]\ndataset = {data}\n[model]\nname = {model}\n", encoding="utf-8")
    env = os.environ | {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
                        "HF_DATASETS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9",
                        "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-m", "ablation", "validate", str(path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Retrying" not in done.stderr and "127.0.0.1:9" not in done.stderr, done.stderr
