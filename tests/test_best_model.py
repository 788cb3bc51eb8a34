"""The best model and using it: save_models, best_model/ loaded by a plain transformers pipeline,
`ablate predict` and `ablate evaluate` (tiny random BERT and tiny data from conftest.py)."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import make_texts, signal_self, tiny_experiment

from ablation import cli
from ablation.config import load_spec

BASELINE = "learning_rate = 1e-3\nbatch_size = 16\nepochs = 2\neval_steps = 5\nlogging_steps = 2\n"


def _study_file(folder: Path, model: Path, data: Path, save_models: str, variants: str = "") -> Path:
    return tiny_experiment(folder, model, data, name=save_models, baseline=BASELINE, variants=variants,
                           experiment=f'save_models = "{save_models}"')


def _trials(path: Path) -> dict[str, optuna.trial.FrozenTrial]:
    spec = load_spec(path)
    study = optuna.load_study(study_name=spec.name, storage=spec.experiment.storage)
    return {t.user_attrs["key"]: t for t in study.get_trials()}


@pytest.fixture(scope="module")
def best_study(tmp_path_factory, tiny_model_dir, tiny_data_dir) -> Path:
    """A study of two variants run with the default save_models = "best" (shared, read-only)."""
    folder = tmp_path_factory.mktemp("best-study")
    path = tiny_experiment(folder, tiny_model_dir, tiny_data_dir, name="best", baseline=BASELINE,
                           variants="bs32 = { batch_size = 32 }\n")  # save_models: the default
    assert cli.main(["run", str(path)]) == 0
    return path


def test_best_trial_is_exported_to_best_model_and_loads_in_a_plain_pipeline(best_study, capsys):
    from transformers import pipeline

    output_dir = load_spec(best_study).output_dir
    best = output_dir / "best_model"
    info = json.loads((best / "ablate.json").read_text())
    trials = _trials(best_study)
    # The report's best variant (one seed: the best trial by macro_f1, the first on a tie).
    values = {key: t.value for key, t in trials.items()}
    assert info["trial"] == max(values, key=values.get)
    assert info["validation"] == trials[info["trial"]].user_attrs["result"]["validation"]
    # what the kept checkpoint predicted on validation, class by class (predict reads it)
    confusion = trials[info["trial"]].user_attrs["result"]["validation_confusion"]
    assert info["validation_predicted"] == [sum(row[i] for row in confusion) for i in range(3)]

    classifier = pipeline("text-classification", model=str(best))
    assert classifier.model.config.id2label == {0: "0", 1: "1", 2: "2"}
    (scores,) = classifier(["great love fun"], top_k=None)
    assert sorted(s["label"] for s in scores) == ["0", "1", "2"]
    assert sum(s["score"] for s in scores) == pytest.approx(1.0)
    # Truncated where the trial truncated (max_length 128 within the tiny model's 64 positions),
    # a long text gets the probabilities `ablate predict` gives it.
    from ablation.inference import predict

    assert classifier.tokenizer.model_max_length == 64
    long_text = " ".join(["great love fun", "bad sad awful"] * 40)
    (scores,) = classifier([long_text], top_k=None, truncation=True)
    (ours,) = predict(best, [long_text])
    assert {s["label"]: s["score"] for s in scores} == pytest.approx(ours["probabilities"])

    # "best": only best_model/ holds weights; each trial's result says where its model was saved.
    for key, trial in trials.items():
        assert trial.user_attrs["result"]["model_dir"] == f"trials/{key}/model"
        assert sorted(p.name for p in (output_dir / "trials" / key).iterdir()) == ["trial.log"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in best.iterdir()}
    assert not (best / "optimizer.pt").exists()

    report = (output_dir / "report.md").read_text()
    assert f"- **Best model**: `best_model/` — trial `{info['trial']}`" in report
    assert f"`ablate predict {best_study} 'some text'`" in report  # runs from where it was made
    assert f"regenerate with `ablate report {best_study}`" in report

    capsys.readouterr()
    assert cli.main(["run", str(best_study)]) == 0  # nothing to train; best_model/ stays
    assert f"best model: {best} (trial {info['trial']}" in capsys.readouterr().out
    assert json.loads((best / "ablate.json").read_text()) == info


def test_run_ends_with_a_predict_command_that_runs_as_printed(best_study, capsys):
    """The hint repeats the experiment file and the --sets as typed, so it can be pasted."""
    capsys.readouterr()
    assert cli.main(["run", str(best_study), "--set", 'tracking.backend="none"']) == 0  # nothing to train
    # (the tiny model predicts one class: the line goes on to say it has not learned)
    hint = re.search(r"try `ablate (predict [^`]*)`", capsys.readouterr().out)
    assert hint is not None
    assert shlex.split(hint.group(1)) == ["predict", str(best_study), "some text",
                                          "--set", 'tracking.backend="none"']
    assert cli.main(shlex.split(hint.group(1))) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines()[1].startswith("some text")
    # predict said nothing of a model that gives every text the same label
    info = json.loads((load_spec(best_study).output_dir / "best_model" / "ablate.json").read_text())
    predicted = [i for i, count in enumerate(info["validation_predicted"]) if count]
    if len(predicted) > 1:  # it learned something: no note
        assert "note: this model" not in printed.err
    else:
        assert printed.err == (f"note: this model (trial {info['trial']}) predicted "
                               f"'{predicted[0]}' for every one of its "
                               f"{sum(info['validation_predicted'])} validation examples when it "
                               "was trained: it has not learned from the text, so the labels here "
                               "are that one guess, not a reading of the texts (its study's "
                               "report: Diagnosis)\n")


def test_predict_prints_the_top_label_and_every_probability(best_study, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("bad sad awful\n\nthe table monday\n", encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["predict", str(best_study), "great love fun", "--file", str(texts)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["text", "label", "probabilities", "(top", "first)"]
    assert [line.split()[0] for line in lines[1:]] == ["great", "bad", "the"]  # blank line skipped

    best = load_spec(best_study).output_dir / "best_model"
    assert cli.main(["predict", str(best), "great love fun", "the table monday", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["text"] for row in rows] == ["great love fun", "the table monday"]
    for row in rows:
        probabilities = list(row["probabilities"].values())
        assert sorted(row["probabilities"]) == ["0", "1", "2"]
        assert probabilities == sorted(probabilities, reverse=True)  # top label first
        assert (row["label"], row["score"]) == next(iter(row["probabilities"].items()))
        assert sum(probabilities) == pytest.approx(1.0)


def test_evaluate_on_the_study_test_split_gives_the_stored_test_metrics(best_study, capsys):
    info = json.loads((load_spec(best_study).output_dir / "best_model" / "ablate.json").read_text())
    stored = _trials(best_study)[info["trial"]].user_attrs["result"]
    capsys.readouterr()
    assert cli.main(["evaluate", str(best_study), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["trial"] == info["trial"] and result["examples"] == 60
    assert result["metrics"]["accuracy"] == stored["test"]["accuracy"]
    for name in ("macro_f1", "weighted_f1", "log_loss", "eval_loss"):
        assert result["metrics"][name] == pytest.approx(stored["test"][name], abs=1e-6)
    assert result["confusion"] == stored["test_confusion"]
    assert result["per_class"]["macro avg"]["f1-score"] == pytest.approx(stored["test"]["macro_f1"])
    assert result["samples_per_s"] > 0

    assert cli.main(["evaluate", str(best_study)]) == 0
    out = capsys.readouterr().out
    assert f"accuracy             {stored['test']['accuracy']:.4f}" in out
    assert "precision    recall  f1-score   support" in out  # scikit-learn's report
    assert "confusion matrix (rows: true label, columns: predicted):" in out
    assert "samples/s" in out


def test_evaluate_maps_label_names_through_the_models_label2id(best_study, tmp_path, capsys):
    """Labels given by name are mapped with the model's label2id; unknown names are refused."""
    renamed = tmp_path / "renamed"
    shutil.copytree(load_spec(best_study).output_dir / "best_model", renamed)
    config = json.loads((renamed / "config.json").read_text())
    names = ["neg", "neu", "pos"]
    config["id2label"] = dict(enumerate(names))
    config["label2id"] = {name: i for i, name in enumerate(names)}
    (renamed / "config.json").write_text(json.dumps(config))
    data = tmp_path / "named.csv"
    data.write_text("text,label\ngreat love fun,pos\nbad sad awful,neg\nthe table monday,neu\n")

    capsys.readouterr()
    assert cli.main(["evaluate", str(renamed), "--dataset", str(data), "--split", "train",
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["labels"] == names and result["examples"] == 3
    assert [sum(row) for row in result["confusion"]] == [1, 1, 1]  # one true example per class

    data.write_text("text,label\ngreat love fun,pos\nbad sad awful,angry\n")
    assert cli.main(["evaluate", str(renamed), "--dataset", str(data), "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "split 'train', row 1: label 'angry' is not one the model knows: give its label names " \
           "(neg, neu, pos)" in err and err.count("\n") == 1

    data.write_text("text,label\ngreat love fun,pos\nbad sad awful,NEG\n")  # another case
    assert cli.main(["evaluate", str(renamed), "--dataset", str(data), "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("split 'train', row 1: label 'NEG' is not one the model knows: give its "
                        "label names (neg, neu, pos) or class ids 0..2; did you mean 'neg'?\n")
    assert cli.main(["evaluate", str(renamed), "--dataset", str(data), "--split", "train",
                     "--labels", "names"]) == 2
    assert capsys.readouterr().err.endswith(
        "row 1: label 'NEG' is not one of the model's label names (neg, neu, pos), as --labels "
        "names reads them; did you mean 'neg'?\n")

    data.write_text("text,label\ngreat love fun,pos\nbad sad awful,0\n")
    assert cli.main(["evaluate", str(renamed), "--dataset", str(data), "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "split 'train': labels mix the model's label names (row 0: 'pos') and class ids " \
           "(row 1: '0'); give every label as a name (neg, neu, pos) or every label as an id 0..2" \
           in err and err.count("\n") == 1

    data.write_text("text,label\ngreat love fun,-1\nbad sad awful,-1\n")  # labels withheld
    assert cli.main(["evaluate", str(renamed), "--dataset", str(data), "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "split 'train' has no labels (every label is -1" in err and "`ablate predict`" in err
    assert err.count("\n") == 1


def _best_model_labelled(study_file: Path, folder: Path, names: list[str]) -> Path:
    """A copy of the study's best model in `folder` whose classes 0, 1, 2 are named `names`."""
    shutil.copytree(load_spec(study_file).output_dir / "best_model", folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = dict(enumerate(names))
    config["label2id"] = {name: i for i, name in enumerate(names)}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_evaluate_refuses_labels_that_read_as_names_and_as_ids_name_other_classes(
        best_study, tmp_path, capsys):
    """Star ratings: names "1", "2", "3" for ids 0..2. A file's 1 and 2 are names of the model and
    its ids alike, and each reading scores other classes: refused, naming the file and the column,
    until --labels says which. Labels only one reading fits are read so, as before."""
    stars = _best_model_labelled(best_study, tmp_path / "stars", ["1", "2", "3"])
    data = tmp_path / "rated.csv"
    data.write_text("text,stars\ngreat love fun,2\nbad sad awful,1\nfun happy,2\n")  # no class 0

    def true_counts(*options: str) -> list[int]:
        assert cli.main(["evaluate", str(stars), "--dataset", str(data), "--label-column", "stars",
                         "--json", *options]) == 0
        return [sum(row) for row in json.loads(capsys.readouterr().out)["confusion"]]

    capsys.readouterr()
    assert cli.main(["evaluate", str(stars), "--dataset", str(data), "--label-column", "stars"]) == 2
    err = capsys.readouterr().err
    assert err == (f"ablate: error: {data}: split 'rated', column 'stars': every label is both a label name "
                   "of the model and a class id 0..2, and the two readings name other classes "
                   "(row 0, label '2': as a name, class id 1; as an id, class '3'); say which with "
                   "--labels "
                   "names or --labels ids\n")
    assert true_counts("--labels", "names") == [1, 2, 0]
    assert true_counts("--labels", "ids") == [0, 1, 2]
    data.write_text("text,stars\ngreat love fun,2\nbad sad awful,0\n")  # 0: ids alone
    assert true_counts() == [1, 0, 1]
    data.write_text("text,stars\ngreat love fun,3\nbad sad awful,1\n")  # 3: names alone
    assert true_counts() == [1, 0, 1]
    assert cli.main(["evaluate", str(stars), "--dataset", str(data), "--label-column", "stars",
                     "--labels", "ids"]) == 2
    assert capsys.readouterr().err == (f"ablate: error: {data}: split 'rated', row 0: label '3' is not a "
                                       "class id 0..2 of the model, as --labels ids reads them\n")
    data.write_text("text,label\ngreat love fun,2\nbad sad awful,1\n")
    best = load_spec(best_study).output_dir / "best_model"  # names "0", "1", "2": the same classes
    assert cli.main(["evaluate", str(best), "--dataset", str(data), "--json"]) == 0
    assert [sum(row) for row in json.loads(capsys.readouterr().out)["confusion"]] == [0, 1, 1]


def test_evaluate_json_keeps_cjk_label_names_unescaped_as_predict_json_does(best_study, tmp_path,
                                                                           capsys):
    renamed = tmp_path / "renamed"
    shutil.copytree(load_spec(best_study).output_dir / "best_model", renamed)
    config = json.loads((renamed / "config.json").read_text())
    names = ["差评", "中性", "好评"]
    config["id2label"] = dict(enumerate(names))
    config["label2id"] = {name: i for i, name in enumerate(names)}
    (renamed / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    data = tmp_path / "评论.csv"
    data.write_text("text,label\ngreat love fun,好评\nbad sad awful,差评\n", encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["predict", str(renamed), "great fun", "--json"]) == 0
    assert "\\u" not in capsys.readouterr().out
    assert cli.main(["evaluate", str(renamed), "--dataset", str(data), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["labels"] == names
    assert '"差评"' in out and "评论.csv" in out and "\\u" not in out


def test_evaluate_maps_the_class_ids_of_data_that_names_its_classes_by_name(best_study, tmp_path,
                                                                          capsys):
    """A ClassLabel's ids are the data's own numbering (sst2: 0 negative, 1 positive): taken as the
    model's ids they would score a 3-class model's 'positive' rows as its class 1 ('neu')."""
    import datasets

    renamed = _best_model_labelled(best_study, tmp_path / "renamed", ["neg", "neu", "pos"])

    def saved(names: list[str], labels: list[int]) -> str:
        features = datasets.Features({"text": datasets.Value("string"),
                                      "label": datasets.ClassLabel(names=names)})
        rows = {"text": ["great love fun", "bad sad awful", "fun happy great"][:len(labels)],
                "label": labels}
        folder = tmp_path / "-".join(names)
        datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=features)}
                             ).save_to_disk(folder)
        return str(folder)

    capsys.readouterr()
    assert cli.main(["evaluate", str(renamed), "--dataset", saved(["neg", "pos"], [1, 0, 1]),
                     "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert [sum(row) for row in result["confusion"]] == [1, 0, 2]  # 'pos' rows are class 2
    assert "note: labels mapped by class name: the data's ids name neg, pos" in captured.err

    assert cli.main(["evaluate", str(renamed), "--dataset", saved(["neg", "joy"], [0, 1])]) == 2
    err = capsys.readouterr().err
    assert "the data names its classes (neg, joy) and the model does not know 'joy'" in err
    assert err.count("\n") == 1

    # The study's own model names its classes by id ("0", "1", "2"): it knows no names to map.
    best = load_spec(best_study).output_dir / "best_model"
    assert cli.main(["evaluate", str(best), "--dataset", saved(["neg", "pos"], [1, 0, 1]),
                     "--json"]) == 0
    assert [sum(row) for row in json.loads(capsys.readouterr().out)["confusion"]] == [1, 2, 0]


def test_save_models_all_keeps_every_model_and_evaluation_checkpoint(tmp_path, tiny_model_dir,
                                                                      tiny_data_dir, capsys):
    path = _study_file(tmp_path, tiny_model_dir, tiny_data_dir, "all")
    reference = _study_file(tmp_path, tiny_model_dir, tiny_data_dir, "none")
    assert cli.main(["run", str(path)]) == 0
    assert cli.main(["run", str(reference)]) == 0
    output_dir = load_spec(path).output_dir
    result = _trials(path)["baseline-s42"].user_attrs["result"]
    # Saving every evaluation changes nothing in training.
    assert result["validation"] == _trials(reference)["baseline-s42"].user_attrs["result"]["validation"]

    trial_dir = output_dir / "trials" / "baseline-s42"
    assert (trial_dir / "model" / "model.safetensors").is_file()
    assert (output_dir / "best_model" / "model.safetensors").is_file()  # a copy
    steps = sorted(int(p.name.split("-")[1]) for p in (trial_dir / "checkpoints").glob("checkpoint-*"))
    assert steps == [point["step"] for point in result["eval_history"]]
    assert not (trial_dir / "checkpoints" / "trial.json").exists()  # never resumed

    capsys.readouterr()
    assert cli.main(["evaluate", str(path), "--checkpoints", "baseline-s42", "--json"]) == 0
    checkpoints = json.loads(capsys.readouterr().out)
    assert [row["step"] for row in checkpoints["checkpoints"]] == steps
    assert checkpoints["peak_step"] == checkpoints["selected_step"] == result["best_step"]
    peak = next(r for r in checkpoints["checkpoints"] if r["step"] == result["best_step"])
    assert peak["macro_f1"] == pytest.approx(result["validation"]["macro_f1"])

    assert cli.main(["evaluate", str(path), "--checkpoints", "baseline-s42"]) == 0
    out = capsys.readouterr().out
    assert f"macro_f1 peaked at step {result['best_step']}" in out and "★ peak" in out


def test_checkpoints_are_scored_truncated_where_the_trial_truncated(tmp_path, tiny_model_dir,
                                                                     tiny_data_dir, capsys,
                                                                     monkeypatch):
    """A checkpoint folder has no ablate.json and the pretrained tokenizer's limit: scored at that
    limit, texts longer than the trial's max_length gave other numbers than the trial logged at
    the same step (the selected step's than `evaluate --split validation` of its model)."""
    path = tiny_experiment(tmp_path, tiny_model_dir, tiny_data_dir, name="short",
                           baseline=BASELINE + "max_length = 4\n", variants="",
                           experiment='save_models = "all"')
    assert cli.main(["run", str(path)]) == 0
    history = _trials(path)["baseline-s42"].user_attrs["result"]["eval_history"]
    capsys.readouterr()
    assert cli.main(["evaluate", str(path), "--checkpoints", "baseline-s42", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["checkpoints"]
    assert [row["eval_loss"] for row in rows] == pytest.approx(
        [point["loss"] for point in history], abs=1e-5)
    # The folder itself truncates so too: predict and a plain pipeline on a checkpoint.
    for row in rows:
        config_file = Path(row["checkpoint"]) / "tokenizer_config.json"
        config = json.loads(config_file.read_text())
        assert config["model_max_length"] == 4
        # As a study from before wrote them: the trial's model still says where to truncate.
        config_file.write_text(json.dumps({**config, "model_max_length": 512}))
    assert cli.main(["evaluate", str(path), "--checkpoints", "baseline-s42", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoints"] == rows
    # A quoted ~ is the home folder, as predict and evaluate read it without --checkpoints.
    monkeypatch.setenv("HOME", str(path.parent))
    assert cli.main(["evaluate", f"~/{path.name}", "--checkpoints", "baseline-s42", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoints"] == rows


def test_predict_and_evaluate_take_any_kept_trials_model_with_trial(tmp_path, tiny_model_dir,
                                                                     tiny_data_dir, capsys):
    """save_models = "all": every trial's model is scored on the study's own test split as the
    study stored it, not only the best one's."""
    path = _study_file(tmp_path, tiny_model_dir, tiny_data_dir, "all",
                       variants="bs32 = { batch_size = 32 }\n")
    assert cli.main(["run", str(path)]) == 0
    best = json.loads((load_spec(path).output_dir / "best_model" / "ablate.json").read_text())["trial"]
    for key, trial in _trials(path).items():
        capsys.readouterr()
        assert cli.main(["evaluate", str(path), "--trial", key, "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["trial"] == key
        assert result["model"].endswith(f"trials/{key}/model")
        assert result["confusion"] == trial.user_attrs["result"]["test_confusion"]
        assert result["metrics"]["macro_f1"] == pytest.approx(
            trial.user_attrs["result"]["test"]["macro_f1"], abs=1e-6)
        assert cli.main(["predict", str(path), "great fun", "--trial", key, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["label"] in ("0", "1", "2")
    other = next(key for key in _trials(path) if key != best)
    capsys.readouterr()
    assert cli.main(["evaluate", str(path), "--trial", other, "--checkpoints", other]) == 2
    assert "give --trial or --checkpoints, not both" in capsys.readouterr().err


def test_a_best_run_keeps_the_models_an_all_run_kept(write_experiment, capsys):
    """`--trial`'s refusal says to keep a trial's model with `--rerun V --set
    experiment.save_models=all`; the next plain run of the file (save_models = "best", adding a
    variant) deleted every model that run kept, without a word."""
    path = write_experiment()
    assert cli.main(["run", str(path), "--set", 'experiment.save_models="all"']) == 0
    output_dir = load_spec(path).output_dir
    models = sorted(p.relative_to(output_dir).as_posix()
                    for p in (output_dir / "trials").glob("*/model"))
    assert len(models) == 2
    weights = {m: (output_dir / m / "model.safetensors").read_bytes() for m in models}
    path.write_text(path.read_text().replace("bs32 = { batch_size = 32 }",
                                             "bs32 = { batch_size = 32 }\nbs8 = { batch_size = 8 }"))
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 0  # the file's save_models: "best"
    out = capsys.readouterr().out
    assert {m: (output_dir / m / "model.safetensors").read_bytes() for m in models} == weights
    assert (f'note: save_models = "best" keeps the models of 2 trial(s) that a run with '
            f'save_models = "all" kept ({", ".join(models)}), with their checkpoints; delete those '
            "folders by hand if they are no longer wanted") in out
    assert not (output_dir / "trials" / "baseline_bs8-s42" / "model").exists()  # its own: removed
    assert (output_dir / "best_model" / "config.json").is_file()


def test_a_best_model_linked_elsewhere_is_refused_not_written_through(write_experiment, tmp_path,
                                                                       capsys):
    """best_model/ replaced by a link to a serving folder: the next export failed its move with
    a traceback (NotADirectoryError), the new best model left in .best_model.tmp."""
    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    output_dir = load_spec(path).output_dir
    serving = tmp_path / "serving"
    shutil.copytree(output_dir / "best_model", serving)
    (serving / "serve.yaml").write_text("mine\n")
    before = {p.name: p.read_bytes() for p in serving.iterdir()}
    shutil.rmtree(output_dir / "best_model")
    (output_dir / "best_model").symlink_to(serving)
    capsys.readouterr()
    assert cli.main(["run", str(path), "--rerun", "baseline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"ablate: error: {output_dir / 'best_model'} is a symbolic link (to "
                          f"{serving}): ablate replaces best_model/ whole with the best trial's "
                          "model (now baseline-s42's)"), err
    assert err.endswith(f"then `ablate run {path}` exports the model there\n")
    assert {p.name: p.read_bytes() for p in serving.iterdir()} == before
    assert (output_dir / "trials" / "baseline-s42" / "model" / "config.json").is_file()
    (output_dir / "best_model").unlink()
    assert cli.main(["run", str(path)]) == 0  # nothing to train: the kept model is exported
    info = json.loads((output_dir / "best_model" / "ablate.json").read_text())
    assert info["trial"] == "baseline-s42" and not (output_dir / ".best_model.tmp").exists()
    assert {p.name: p.read_bytes() for p in serving.iterdir()} == before


def test_trial_names_a_kept_model_of_a_study_file(best_study, capsys):
    """save_models = "best": the best trial's model is best_model/, the others' are removed."""
    best = json.loads((load_spec(best_study).output_dir / "best_model" / "ablate.json").read_text())
    other = next(key for key in _trials(best_study) if key != best["trial"])
    capsys.readouterr()
    assert cli.main(["predict", str(best_study), "great fun", "--trial", best["trial"], "--json"]) == 0
    assert cli.main(["predict", str(best_study), "great fun", "--json"]) == 0
    by_trial, by_default = capsys.readouterr().out.splitlines()
    assert by_trial == by_default
    variant = other.rsplit("-s", 1)[0]
    assert cli.main(["evaluate", str(best_study), "--trial", other]) == 2
    err = capsys.readouterr().err
    assert f"--trial {other!r}: the trial kept no model" in err and err.count("\n") == 1
    assert err.rstrip().endswith(
        f"`ablate run {best_study} --rerun {variant} --set experiment.save_models=all`")
    assert cli.main(["evaluate", str(best_study), "--trial", "nope-s1"]) == 2
    assert "--trial 'nope-s1': study 'best' has no trial of that name" in capsys.readouterr().err
    folder = str(load_spec(best_study).output_dir / "best_model")
    assert cli.main(["predict", folder, "great fun", "--trial", best["trial"]]) == 2
    assert "give its experiment file as MODEL_OR_STUDY" in capsys.readouterr().err


def test_a_trial_named_in_another_case_is_no_trial_where_the_file_system_ignores_case(
        best_study, capsys, monkeypatch):
    """macOS's file system finds trials/BASELINE-s42 for trials/baseline-s42: `--trial` in the
    wrong case took it for the trial, then said the best trial had kept no model (save_models =
    "best" keeps the best's alone). Simulated: a folder is found whatever the case of its name."""
    best = json.loads((load_spec(best_study).output_dir / "best_model" / "ablate.json").read_text())
    real = Path.is_dir

    def ignoring_case(self: Path) -> bool:
        return real(self) or real(self.parent) and any(
            p.name.casefold() == self.name.casefold() and real(p) for p in self.parent.iterdir())

    monkeypatch.setattr(Path, "is_dir", ignoring_case)
    capsys.readouterr()
    for option in ("--trial", "--checkpoints"):
        assert cli.main(["evaluate", str(best_study), option, best["trial"].upper()]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ablate: error: {option} {best['trial'].upper()!r}: study 'best' has "
                              "no trial of that name"), err
        assert best["trial"] in err and err.count("\n") == 1


def test_save_models_none_keeps_no_weights_and_predict_says_how_to_get_them(
        tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    path = _study_file(tmp_path, tiny_model_dir, tiny_data_dir, "none")
    assert cli.main(["run", str(path)]) == 0
    output_dir = load_spec(path).output_dir
    assert _trials(path)["baseline-s42"].user_attrs["result"]["model_dir"] is None
    assert not (output_dir / "best_model").exists()
    assert [p.name for p in (output_dir / "trials" / "baseline-s42").iterdir()] == ["trial.log"]
    assert 'best model: not kept (save_models = "none")' in capsys.readouterr().out

    assert cli.main(["predict", str(path), "great fun"]) == 2
    err = capsys.readouterr().err
    assert "study 'none' has no best model" in err
    rerun = f"ablate run {path} --rerun baseline --set experiment.save_models=best"
    assert err.rstrip().endswith(f"`{rerun}`") and err.count("\n") == 1
    capsys.readouterr()
    assert cli.main(shlex.split(rerun)[1:]) == 0  # the command as printed keeps the model
    assert cli.main(["predict", str(path), "great fun"]) == 0
    capsys.readouterr()

    assert cli.main(["evaluate", str(path), "--checkpoints", "baseline-s42"]) == 2
    err = capsys.readouterr().err
    assert "save_models = \"all\" keeps the checkpoint of every evaluation" in err
    assert err.rstrip().endswith(f"`ablate run {path} --rerun baseline --set experiment.save_models=all`")
    for name in ("", ".", "../trials", "baseline-s42/.."):  # not a trial's own folder
        assert cli.main(["evaluate", str(path), "--checkpoints", name]) == 2
        assert f"--checkpoints {name!r}: study 'none' has no trial of that name" in \
            capsys.readouterr().err


@pytest.mark.parametrize("option", [["--config", "x"], ["--text-column", "t"],
                                    ["--label-column", "l"], ["--labels", "ids"]])
def test_evaluate_options_that_describe_a_dataset_need_one(best_study, capsys, option):
    assert cli.main(["evaluate", str(best_study), *option]) == 2
    assert (f"evaluate: {option[0]} describes --dataset, which is not given"
            in capsys.readouterr().err)


def test_evaluate_refuses_a_study_whose_data_files_changed(best_study, tiny_data_dir, tmp_path,
                                                          capsys):
    """Without --dataset the study's splits are rebuilt from its files: other rows there would
    give another carved validation (or test) split, some of it trained on."""
    changed = tmp_path / "data"
    shutil.copytree(tiny_data_dir, changed)
    args = ["evaluate", str(best_study), "--set", f"data.dataset={json.dumps(str(changed))}"]
    capsys.readouterr()
    assert cli.main(args) == 0  # the same rows in another folder
    with (changed / "train.csv").open("a", encoding="utf-8") as file:
        file.write("one more row,1\n")
    for extra in ([], ["--split", "validation"]):
        assert cli.main(args + extra) == 2
        err = capsys.readouterr().err
        assert f"{changed} no longer gives the rows study 'best' ran on (content fingerprint " in err
        assert ", now " in err and ": the files changed), so its" in err  # files recorded: not ablate's
        assert "restore the data (or the ablate version), or give --dataset and --split" in err
        assert err.count("\n") == 1


def test_evaluate_without_the_studys_set_names_the_data_key_that_differs(best_study, capsys):
    """A study run with a [data] --set, evaluated without it, reads other rows: the line names the
    key (as `run` does) rather than saying the data changed."""
    capsys.readouterr()
    assert cli.main(["evaluate", str(best_study), "--set", "data.max_eval_samples=20"]) == 2
    err = capsys.readouterr().err
    assert ("holds study 'best' run with data.max_eval_samples=40; --set "
            "'data.max_eval_samples=20' says 20; its splits would be other rows than its trials "
            "saw: give the --set options the study ran with") in err, err
    assert err.count("\n") == 1


def test_predict_and_evaluate_take_the_studys_set_overrides(best_study, tmp_path, capsys):
    """A study run with --set (its data or output folder given on the command line) is found
    with the same --set."""
    moved = tmp_path / "moved"
    shutil.copytree(load_spec(best_study).output_dir / "best_model", moved / "best_model")
    elsewhere = f"experiment.output_dir={json.dumps(str(moved))}"
    assert cli.main(["predict", str(best_study), "great love fun", "--set", elsewhere]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("great love fun")
    assert cli.main(["predict", str(best_study), "x", "--set", f'experiment.output_dir="{tmp_path}"']) == 2
    assert "no study 'best' in sqlite:///" in capsys.readouterr().err  # its storage is there too


def test_predict_on_a_study_whose_trials_all_failed_says_that(write_experiment, monkeypatch,
                                                              capsys):
    from ablation import train

    path = write_experiment()

    def fails(*args, **kwargs):
        raise RuntimeError("flaky")

    monkeypatch.setattr(train, "train_trial", fails)
    assert cli.main(["run", str(path)]) == 1
    capsys.readouterr()
    assert cli.main(["predict", str(path), "great fun"]) == 2
    assert (f"study 'tiny' has no complete trial yet, so no best model; see `ablate status {path}`"
            in capsys.readouterr().err)


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("with_pairs", [False, True])
def test_class_logits_batch_by_length_and_return_each_texts_own_logits(tiny_model_dir, padding_side,
                                                                       with_pairs):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from ablation.inference import class_logits

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.padding_side = padding_side
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir)).eval()
    texts = ["great", "the movie was so bad and boring today", "a", "love it", "this table is a window"]
    pairs = ["fun", "a", "the train was so good", "sad", "paper"] if with_pairs else None
    logits = class_logits(model, tokenizer, texts, pairs, max_length=8, batch_size=2)
    assert logits.shape == (5, 2)
    features = [tokenizer(t, p, truncation=True, max_length=8)
                for t, p in zip(texts, pairs or [None] * len(texts), strict=True)]
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    collate = DataCollatorWithPadding(tokenizer)  # how a trial's evaluation pads its batches
    expected = np.empty_like(logits)
    with torch.no_grad():
        for start in range(0, 5, 2):
            rows = order[start:start + 2]
            expected[rows] = model(**collate([features[i] for i in rows])).logits.numpy()
    assert np.allclose(logits, expected, atol=1e-6)
    if padding_side == "right":  # BERT's positions make right padding equal to no padding at all
        with torch.no_grad():
            alone = [model(**collate([f])).logits[0].numpy() for f in features]
        assert np.allclose(logits, np.stack(alone), atol=1e-5)
    assert class_logits(model, tokenizer, [], max_length=8).shape == (0, 2)


def test_inference_batches_stay_within_the_row_and_token_limits():
    from ablation.inference._model import length_batches

    lengths = np.array([5, 300, 7, 20, 20, 600, 3, 64])
    order = np.argsort(lengths, kind="stable")
    batches = length_batches(order, lengths, batch_size=3, max_tokens=600)
    assert np.concatenate(batches).tolist() == order.tolist()  # every row once, in length order
    for rows in batches:
        assert len(rows) <= 3
        assert len(rows) == 1 or len(rows) * lengths[rows].max() <= 600
    assert [len(rows) for rows in batches] == [3, 3, 1, 1]  # 3,5,7 | 20,20,64 | 300 | 600 alone


def _watch_chunks(monkeypatch, stdout) -> tuple[list[int], list[int]]:
    """Per tokenizer call, how many texts it got; per model forward, the lines `stdout` held."""
    from ablation import inference

    tokenized, printed = [], []
    load = inference.load_classifier

    def watched(folder: Path, **kwargs):
        tokenizer, model, precision = load(folder, **kwargs)
        call = type(tokenizer).__call__

        def counted(self, texts, *args, **kwargs):
            tokenized.append(len(texts))
            return call(self, texts, *args, **kwargs)

        monkeypatch.setattr(type(tokenizer), "__call__", counted)
        model.register_forward_pre_hook(lambda *_: printed.append(stdout.getvalue().count("\n")))
        return tokenizer, model, precision

    monkeypatch.setattr(inference._model, "load_classifier", watched)
    return tokenized, printed


def test_predict_labels_and_prints_a_chunk_of_texts_at_a_time(tiny_model_dir, monkeypatch):
    """200,000 lines were tokenized in one call and printed after the last was labelled (2.4 GB,
    and nothing to read until the end): texts are tokenized, labelled and printed a chunk at a
    time, in the input's order, with the labels of the texts all at once."""
    from ablation import inference

    texts = [" ".join(make_texts(1, seed=i)["text"][0].split()[: i % 6 + 1]) for i in range(10)]
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert cli.main(["predict", str(tiny_model_dir), *texts, "--json", "--batch-size", "2"]) == 0
    whole = [json.loads(line) for line in sys.stdout.getvalue().splitlines()]

    monkeypatch.setattr(inference._model, "CHUNK_BATCHES", 2, raising=False)  # chunks of 4 texts
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    tokenized, printed = _watch_chunks(monkeypatch, out)
    assert cli.main(["predict", str(tiny_model_dir), *texts, "--json", "--batch-size", "2"]) == 0
    assert tokenized == [4, 4, 2]  # never more than a chunk's encodings at once
    assert printed == [0, 0, 4, 4, 8]  # each chunk's rows are out before the next is labelled
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["text"] for row in rows] == texts
    for row, alone in zip(rows, whole, strict=True):
        assert row["label"] == alone["label"]
        assert row["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-6)

    table = io.StringIO()
    monkeypatch.setattr(sys, "stdout", table)
    assert cli.main(["predict", str(tiny_model_dir), *texts, "--batch-size", "2"]) == 0
    lines = table.getvalue().splitlines()
    assert len(lines) == 1 + len(texts)  # one header, then a row a text, chunk after chunk
    assert len({line.index("  LABEL_") for line in lines[1:]}) == 1  # one text column width


def test_ctrl_c_in_predict_keeps_the_rows_printed_and_says_how_many(tiny_model_dir, monkeypatch,
                                                                     capsys):
    """Ctrl+C while a large input is labelled: the chunks already labelled are printed, whole
    lines in the input's order, and the line says how many, not "completed trials are kept"
    (predict has none)."""
    from ablation import inference

    monkeypatch.setattr(inference._model, "CHUNK_BATCHES", 2)  # chunks of 4 texts
    load = inference.load_classifier
    forwards, interrupted_at = [], [3]  # the third batch: the second chunk's first

    def interrupted(folder: Path, **kwargs):
        tokenizer, model, precision = load(folder, **kwargs)

        def ctrl_c(*_):
            forwards.append(1)
            if len(forwards) == interrupted_at[0]:
                raise KeyboardInterrupt

        model.register_forward_pre_hook(ctrl_c)
        return tokenizer, model, precision

    monkeypatch.setattr(inference._model, "load_classifier", interrupted)
    texts = [" ".join(["great", "sad", "the", "table"][: i % 4 + 1]) + f" {i}" for i in range(10)]
    capsys.readouterr()
    assert cli.main(["predict", str(tiny_model_dir), *texts, "--json", "--batch-size", "2"]) == 130
    out, err = capsys.readouterr()
    assert [json.loads(line)["text"] for line in out.splitlines()] == texts[:4]
    assert err.strip() == "ablate: interrupted; the first 4 of 10 texts were labelled and printed"

    forwards.clear()
    interrupted_at[0] = 1  # in the first chunk: nothing printed
    assert cli.main(["predict", str(tiny_model_dir), *texts[:2], "--batch-size", "1"]) == 130
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "ablate: interrupted; no text was labelled"


def test_ctrl_c_in_evaluate_says_nothing_of_trials(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """evaluate prints its metrics at the end: Ctrl+C leaves nothing, and says so."""
    from ablation import inference

    data = tmp_path / "holdout.csv"
    data.write_text("text,label\ngreat love fun,1\nbad sad awful,0\n")

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inference._model, "class_logits", ctrl_c)
    capsys.readouterr()
    assert cli.main(["evaluate", str(tiny_model_dir), "--dataset", str(data)]) == 130
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "ablate: interrupted; no metrics were printed"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_predict_and_evaluate_show_progress_on_a_terminal_only(tiny_model_dir, tmp_path,
                                                               monkeypatch, terminal):
    """200,000 texts take minutes: on a terminal, stderr says how many are done (and is cleared
    for the output); a pipe or a log gets no progress line."""
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    texts = ["great love fun", "bad sad awful", "the table monday"]
    assert cli.main(["predict", str(tiny_model_dir), *texts, "--json", "--batch-size", "1"]) == 0
    assert len(sys.stdout.getvalue().splitlines()) == 3
    shown = stderr.getvalue()
    if terminal:
        assert "\rlabelled 3 of 3 texts (100 %" in shown
        assert shown.endswith("\r\x1b[K")  # cleared: the next line starts clean
    else:
        assert shown == ""

    data = tmp_path / "holdout.csv"
    data.write_text("text,label\ngreat love fun,1\nbad sad awful,0\n")
    stderr.seek(0)
    stderr.truncate()
    assert cli.main(["evaluate", str(tiny_model_dir), "--dataset", str(data)]) == 0
    shown = stderr.getvalue()
    if terminal:
        assert "\revaluated 2 of 2 rows (100 %" in shown and shown.endswith("\r\x1b[K")
    else:
        assert shown == ""


def test_evaluate_checkpoints_shows_progress_on_a_terminal_only(tmp_path, tiny_model_dir,
                                                                tiny_data_dir, monkeypatch, capsys):
    """Each checkpoint is a model loaded and every row scored (a large --dataset: minutes each),
    and --checkpoints showed nothing until the last was done: on a terminal, one line says which
    checkpoint and how many rows; a pipe or a log gets none."""
    path = _study_file(tmp_path, tiny_model_dir, tiny_data_dir, "all")
    assert cli.main(["run", str(path)]) == 0
    steps = sorted(int(p.name.split("-")[1]) for p in (load_spec(path).output_dir / "trials"
                   / "baseline-s42" / "checkpoints").glob("checkpoint-*"))
    capsys.readouterr()
    assert cli.main(["evaluate", str(path), "--checkpoints", "baseline-s42", "--json"]) == 0
    assert capsys.readouterr().err == ""  # not a terminal
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert cli.main(["evaluate", str(path), "--checkpoints", "baseline-s42", "--json"]) == 0
    shown = sys.stderr.getvalue()
    for number, step in enumerate(steps, 1):
        assert re.search(rf"\rcheckpoint-{step} \({number} of {len(steps)}\): evaluated "
                         r"(\d+) of \1 rows \(100 %", shown), shown
    assert shown.endswith("\r\x1b[K")  # cleared: the JSON starts clean
    assert json.loads(capsys.readouterr().out)["checkpoints"]


def test_evaluate_tokenizes_a_chunk_of_rows_at_a_time(tiny_model_dir, monkeypatch):
    """The same bound for evaluate's rows (a 200,000-row CSV peaked at 2.6 GB)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ablation import inference

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir)).eval()
    texts = [" ".join(["great", "sad", "the"][: i % 3 + 1]) for i in range(7)]
    whole = inference.class_logits(model, tokenizer, texts, texts[::-1], max_length=16, batch_size=2)
    monkeypatch.setattr(inference._model, "CHUNK_BATCHES", 1, raising=False)  # chunks of 2 texts
    calls = []
    call = type(tokenizer).__call__
    monkeypatch.setattr(type(tokenizer), "__call__",
                        lambda self, texts, *a, **k: calls.append(len(texts)) or call(self, texts, *a, **k))
    chunked = inference.class_logits(model, tokenizer, texts, texts[::-1], max_length=16, batch_size=2)
    assert calls == [2, 2, 2, 1]
    assert np.allclose(chunked, whole, atol=1e-6)


def test_next_commands_quote_what_the_shell_would_split(write_experiment, tmp_path, monkeypatch):
    folder = tmp_path / "my studies"
    folder.mkdir()
    path = folder / "a b.toml"
    path.write_text(write_experiment().read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    spec = load_spec("my studies/a b.toml", ["baseline.epochs=2"])
    assert spec.command("dashboard") == "ablate dashboard 'my studies/a b.toml' --set baseline.epochs=2"
    assert (spec.command("run", "--rerun", "baseline", sets=("experiment.save_models=all",))
            == "ablate run 'my studies/a b.toml' --rerun baseline --set baseline.epochs=2 "
               "--set experiment.save_models=all")  # the hint's own --set last: it wins
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not under the working folder: the absolute path
    assert spec.command("report") == f"ablate report {shlex.quote(str(path))} --set baseline.epochs=2"


def test_a_best_model_no_longer_the_best_is_reported_as_such(write_experiment, monkeypatch, capsys):
    """--rerun can change which trial is best after the new best's model was removed (it was not
    the best then): best_model/ is kept, and the summary and report say whose it is."""
    from ablation import train

    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0
    best = json.loads((load_spec(path).output_dir / "best_model" / "ablate.json").read_text())
    other = "baseline_bs32" if best["variant"] == "baseline" else "baseline"

    def fails(*args, **kwargs):
        raise RuntimeError("flaky")

    monkeypatch.setattr(train, "train_trial", fails)
    capsys.readouterr()
    assert cli.main(["run", str(path), "--rerun", best["variant"]]) == 1  # its result superseded
    line = (f"best_model/ holds trial {best['trial']}, no longer the best: the best trial, {other}-s42, "
            "kept no model")
    out = capsys.readouterr().out
    assert f"best model: {line}" in out and f"--rerun {other}` trains it again" in out
    assert f"- **Best model**: {line}" in (load_spec(path).output_dir / "report.md").read_text()
    assert (load_spec(path).output_dir / "best_model" / "config.json").is_file()  # nothing lost
    # predict and evaluate of the study's best_model/ say it too, on stderr: --json stays JSON
    for command in (["predict", str(path), "great fun", "--json"], ["evaluate", str(path), "--json"]):
        assert cli.main(command) == 0
        captured = capsys.readouterr()
        assert json.loads(captured.out)  # one text's line, or evaluate's object
        assert f"note: best model: {line}" in captured.err and captured.err.count(line) == 1
    assert cli.main(["predict", str(path), "great fun", "--trial", best["trial"]]) == 0
    assert line not in capsys.readouterr().err  # the trial asked for, whichever is the best


def test_ctrl_c_during_the_best_models_export_keeps_the_model(write_experiment, monkeypatch,
                                                              capsys):
    """The export moves the best trial's folder into place: Ctrl+C in the middle waits for it, so
    the model is not left in a staging folder where no run looks, and the next run finds it."""
    path = write_experiment()
    real = shutil.rmtree

    def interrupted(folder, *args, **kwargs):  # the old best_model/ removed, mid-export
        if Path(folder).name == "best_model":
            signal_self(signal.SIGINT)
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", interrupted)
    assert cli.main(["run", str(path)]) == 130
    monkeypatch.undo()
    output_dir = load_spec(path).output_dir
    info = json.loads((output_dir / "best_model" / "ablate.json").read_text())
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 0
    assert "kept no model" not in capsys.readouterr().out
    assert json.loads((output_dir / "best_model" / "ablate.json").read_text()) == info
    assert (output_dir / "best_model" / "model.safetensors").is_file()


def test_evaluate_says_what_reading_the_data_did(best_study, tmp_path, capsys):
    """Dropped rows, stripped label spaces and classes the rows lack are said, as a study says
    them; on stderr, so that --json stays JSON."""
    data = tmp_path / "notes.csv"
    data.write_text("text,label\ngreat love fun, 2 \n,0\nbad sad awful,0\nfun happy,\n")
    best = load_spec(best_study).output_dir / "best_model"
    capsys.readouterr()
    assert cli.main(["evaluate", str(best), "--dataset", str(data), "--split", "train",
                     "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["examples"] == 2
    assert captured.err.splitlines() == [
        "note: split 'train': dropped 2 rows with an empty text or missing label (rows 1, 3)",
        "note: stripped the spaces around 1 label (' 2 ' is '2')",
        "note: no rows of class '1': the macro averages count its F1, precision and recall as 0"]


def _broken(best: Path, folder: Path, kind: str) -> Path:
    folder.mkdir()
    if kind == "empty config":
        (folder / "config.json").write_text("{}")
    elif kind == "config not JSON":
        (folder / "config.json").write_text("not json")
    elif kind == "no weights":
        shutil.copy(best / "config.json", folder)
    elif kind == "no tokenizer":
        for name in ("config.json", "model.safetensors"):
            shutil.copy(best / name, folder)
    elif kind == "tokenizer config alone":  # transformers: a tokenizer of the special tokens
        for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
            shutil.copy(best / name, folder)
    else:  # "no head": the encoder alone, as BertModel saves it
        from transformers import AutoTokenizer, BertModel

        BertModel.from_pretrained(str(best)).save_pretrained(str(folder))
        AutoTokenizer.from_pretrained(str(best)).save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize(("kind", "expected"), [
    ("empty config", "config.json names no model_type"),
    ("config not JSON", "config.json cannot be read as JSON"),
    ("no weights", "holds no weights"),
    ("no tokenizer", "holds no tokenizer vocabulary"),
    ("tokenizer config alone", "holds no tokenizer vocabulary"),
    ("no head", "holds a BertModel, not a text classifier"),
])
def test_a_model_folder_missing_a_part_is_refused(best_study, tmp_path, capsys, kind, expected):
    """transformers fails with a traceback on some (config, weights) and quietly makes up the
    others (a tokenizer with every word [UNK], a random classification layer)."""
    folder = _broken(load_spec(best_study).output_dir / "best_model", tmp_path / "model", kind)
    for command in (["predict", str(folder), "great fun"],
                    ["evaluate", str(folder), "--dataset", str(tmp_path)]):
        capsys.readouterr()
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err


def test_a_model_folder_without_a_vocabulary_file_loads_its_tokenizer_once(tmp_path, monkeypatch,
                                                                           capsys):
    """A tokenizer of bytes (ByT5's) needs no vocabulary file: the folder's check loaded it to
    tell it from a made-up one, and predict and evaluate loaded it again. It is loaded once."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, ByT5Tokenizer

    from ablation.models import holds_vocabulary_file

    folder = tmp_path / "bytes-model"
    config = BertConfig(vocab_size=384, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2,
                        id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    BertForSequenceClassification(config).save_pretrained(folder)
    ByT5Tokenizer().save_pretrained(folder)
    assert not holds_vocabulary_file(folder)
    data = tmp_path / "test.csv"
    data.write_text("text,label\ngreat fun,pos\nawful,neg\n")
    loads: list[str] = []
    load = AutoTokenizer.from_pretrained.__func__

    def counted(cls, name, *args, **kwargs):
        loads.append(str(name))
        return load(cls, name, *args, **kwargs)

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", classmethod(counted))
    for command in (["predict", str(folder), "great fun", "--json"],
                    ["evaluate", str(folder), "--dataset", str(data), "--json"]):
        loads.clear()
        capsys.readouterr()
        assert cli.main(command) == 0, capsys.readouterr().err
        assert loads == [str(folder)], command
    assert json.loads(capsys.readouterr().out)["examples"] == 2

    # a folder whose tokenizer is made up is refused as before, having loaded it once
    for name in ("added_tokens.json",):
        (folder / name).unlink()
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    loads.clear()
    capsys.readouterr()
    assert cli.main(["predict", str(folder), "great fun"]) == 2
    err = capsys.readouterr().err
    assert "holds no tokenizer vocabulary" in err and err.count("\n") == 1, err
    assert loads == [str(folder)]


def test_a_model_folder_whose_weights_are_cut_short_is_refused(best_study, tiny_data_dir, tmp_path,
                                                               capsys):
    """A copy or save that did not finish leaves model.safetensors cut short: safetensors' error
    came out as a traceback, from predict and evaluate alike."""
    folder = shutil.copytree(load_spec(best_study).output_dir / "best_model", tmp_path / "model")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    for command in (["predict", str(folder), "great fun"],
                    ["evaluate", str(folder), "--dataset", str(tiny_data_dir / "test.csv")]):
        capsys.readouterr()
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ablate: error: {folder}: its weights (model.safetensors) cannot be "
                              "read (Error while deserializing header") and err.count("\n") == 1, err
        assert "copy or save the model folder again" in err


@pytest.mark.parametrize(("content", "expected"), [
    ('{"max_length": 16,', "is not valid JSON (Expecting"),
    ('["max_length", 16]', "holds an array, not a JSON object"),
    ("null", "holds null, not a JSON object"),
    (b"\xff\xfe{}", "cannot be read ('utf-8' codec can't decode"),
    # a value of the wrong kind (edited by hand) ended in a traceback (ValueError, OverflowError)
    ('{"max_length": "abc"}', "has max_length \"abc\", not a whole number of tokens >= 1"),
    ('{"max_length": -5}', "has max_length -5, not a whole number of tokens >= 1"),
    ('{"max_length": true}', "has max_length true, not a whole number of tokens >= 1"),
    ('{"text_pair_column": 5}', "has text_pair_column 5, not a column name or null"),
    ('{"precision": ["x"]}', "has precision [\"x\"], not a precision name (fp32, bf16, fp16) or null"),
    ('{"precision": "fp8"}', "has precision \"fp8\", not a precision name (fp32, bf16, fp16) or null"),
])
def test_a_broken_ablate_json_is_refused_not_read_as_none(best_study, tiny_data_dir, tmp_path,
                                                          capsys, content, expected):
    """Read as none, predict cut texts at the tokenizer's limit, not the trial's max_length, and a
    pair-trained model labelled first texts alone, unsaid. A folder without one keeps working."""
    folder = shutil.copytree(load_spec(best_study).output_dir / "best_model", tmp_path / "model")
    info = folder / "ablate.json"
    info.write_bytes(content if isinstance(content, bytes) else content.encode())
    for command in (["predict", str(folder), "great fun"],
                    ["evaluate", str(folder), "--dataset", str(tiny_data_dir / "test.csv")]):
        capsys.readouterr()
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ablate: error: {info} ") and expected in err, err
        assert "copy or save the model folder again" in err and err.count("\n") == 1, err
    info.unlink()  # saved by something else: the tokenizer's limit, as before
    assert cli.main(["predict", str(folder), "great fun"]) == 0


class _FullDisk:
    """Standard output redirected to a file on a full disk (`> out.txt`, `> /dev/full`)."""

    def write(self, text: str) -> int:
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("command", [["predict", "great fun"], ["predict", "great fun", "--json"],
                                     ["evaluate"], ["evaluate", "--json"]])
def test_output_to_a_full_disk_is_said_in_one_line(best_study, monkeypatch, capsys, command):
    """`ablate predict ... > out.txt` on a full disk ended in an OSError traceback (exit 1)."""
    import sys

    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", _FullDisk())
    assert cli.main([command[0], str(best_study), *command[1:]]) == 2
    assert capsys.readouterr().err == (
        "ablate: error: standard output cannot be written (No space left on device): what it holds "
        "is incomplete; free space where it goes, or redirect it elsewhere\n")


def test_a_text_pair_model_reads_its_second_text_from_its_folder_too(tmp_path, tiny_model_dir,
                                                                      capsys):
    """Only the second text carries the label: evaluating the best model folder uses it as the
    study does (it is in ablate.json), and predict refuses a text given without its second text
    (--pair)."""
    data = tmp_path / "pairs"
    data.mkdir()
    for split, rows, seed in (("train", 240, 1), ("test", 60, 2)):
        frame = make_texts(rows, seed)
        frame.assign(text2=frame["text"], text="the movie was it").to_csv(
            data / f"{split}.csv", index=False)
    path = tiny_experiment(tmp_path, tiny_model_dir, data, name="pairs", variants="",
                           baseline=BASELINE.replace("epochs = 2", "epochs = 4"))
    path.write_text(path.read_text().replace("[data]\n", '[data]\ntext_pair_column = "text2"\n'))
    assert cli.main(["run", str(path)]) == 0
    best = load_spec(path).output_dir / "best_model"
    info = json.loads((best / "ablate.json").read_text())
    assert (info["text_pair_column"], info["text_column"], info["label_column"]) == (
        "text2", "text", "label")
    results = []
    for model in (path, best):
        capsys.readouterr()
        assert cli.main(["evaluate", str(model), "--dataset", str(data), "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out)["metrics"])
    assert results[0] == results[1]
    assert cli.main(["predict", str(best), "great fun"]) == 2
    err = capsys.readouterr().err
    assert "was trained on text pairs ([data] text_pair_column = 'text2')" in err and "--pair" in err


def test_evaluate_says_a_text_pair_column_a_single_text_model_does_not_read(best_study, tmp_path,
                                                                          tiny_data_dir, capsys):
    """Data with a text_pair column, evaluated with a model trained on single texts: the column
    was left out without a word. A note now says so; the scores are those of the texts alone."""
    frame = pd.read_csv(tiny_data_dir / "test.csv")
    frame.to_csv(tmp_path / "single.csv", index=False)
    frame.assign(text_pair="the movie was it").to_csv(tmp_path / "pairs.csv", index=False)
    best = load_spec(best_study).output_dir / "best_model"
    results = {}
    for name in ("single", "pairs"):
        capsys.readouterr()
        assert cli.main(["evaluate", str(best), "--dataset", str(tmp_path / f"{name}.csv"),
                         "--json"]) == 0
        out, err = capsys.readouterr()
        results[name] = (json.loads(out)["metrics"], err)
    assert results["pairs"][0] == results["single"][0]
    assert results["single"][1] == ""
    assert results["pairs"][1] == (
        f"note: column 'text_pair' of {tmp_path / 'pairs.csv'} is not read: the model was trained "
        "on single texts, so it is scored on column 'text' alone\n")


def test_predict_reads_texts_from_standard_input_with_file_dash(monkeypatch):
    import io
    import sys

    from ablation.inference import read_texts

    stdin = io.TextIOWrapper(io.BytesIO(b"great fun\n\nbad sad\n"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert read_texts(["first"], [Path("-")]) == ["first", "great fun", "bad sad"]


def test_predict_file_dash_with_standard_input_closed_says_so(tiny_model_dir, monkeypatch, capsys):
    """`ablate predict MODEL --file - <&-` (or a service started without a standard input) has no
    sys.stdin: it ended in an AttributeError traceback. It is one error line, before the model
    is loaded."""
    from ablation import inference

    monkeypatch.setattr(sys, "stdin", None)
    monkeypatch.setattr(inference._model, "load_classifier", lambda folder, **_: pytest.fail("loaded"))
    capsys.readouterr()
    assert cli.main(["predict", str(tiny_model_dir), "--file", "-"]) == 2
    assert capsys.readouterr().err == (
        "ablate: error: --file '-': standard input is closed; give the texts through a pipe or "
        "a file\n")

def _ablate_process(*args: str) -> subprocess.Popen:
    """`python -m ablation ARGS` of this checkout, its standard streams pipes of the test's. Ctrl+C
    is put back to its default in it: a suite started in the background of a shell (`nohup ...
    &`, as CI may be) ignores SIGINT, which its processes inherit, and Python then leaves it
    ignored (predict, rightly, as a user's `nohup ablate predict ... &` wants)."""
    import ablation

    root = str(Path(ablation.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "ablation", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _lines_within(stream: Any, count: int, seconds: float) -> list[str]:
    """The lines a pipe gives within `seconds`, up to `count` of them (fewer: no more came)."""
    import select

    data, deadline = b"", time.monotonic() + seconds
    while data.count(b"\n") < count and (left := deadline - time.monotonic()) > 0:
        if select.select([stream], [], [], left)[0]:
            chunk = os.read(stream.fileno(), 1 << 16)
            if not chunk:
                break
            data += chunk
    return data.decode().splitlines()


def test_predict_labels_a_streams_lines_as_they_come(tiny_model_dir):
    """`tail -f app.log | ablate predict MODEL --file -` printed nothing, ever: the whole input
    was read before a text was labelled. The lines that came are labelled once the stream pauses
    (PAUSE_S), its pipe still open; the table's text column stays full width for the lines to
    come (the first chunk, one short line, set it); Ctrl+C, a stream's usual end, says how many
    were labelled."""
    process = _ablate_process("predict", str(tiny_model_dir), "--file", "-")
    try:
        process.stdin.write(b"great fun\r\n\nbad sad\n")
        process.stdin.flush()
        first = _lines_within(process.stdout, 3, seconds=90)  # the model's loading included
        assert [line.split("  ")[0] for line in first] == ["text", "great fun", "bad sad"]
        long = "the table monday " * 4
        process.stdin.write(f"{long}\n".encode())
        process.stdin.flush()
        (row,) = _lines_within(process.stdout, 1, seconds=30)
        assert row.startswith(long[:47] + "…  LABEL_")  # shortened to the 48 columns, not 9
        assert {line.index("  LABEL_") for line in (*first[1:], row)} == {48}
        time.sleep(1)  # it has printed the row: now it waits for the next line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert process.stdout.read() == b""
        assert process.stderr.read().decode() == (
            "ablate: interrupted; the first 3 texts were labelled and printed\n")
    finally:
        process.kill()
        process.wait()


def test_predict_reads_a_file_a_chunk_at_a_time(tiny_model_dir, tmp_path, monkeypatch):
    """A file (or standard input) was read whole, and held as text (2 million lines: GBs), before
    its first text was labelled: it is read as its texts are labelled, a chunk ahead at most, in
    the same chunks and the same order as texts given as arguments."""
    from ablation import inference

    texts = [" ".join(["great", "sad", "the", "table"][: i % 4 + 1]) + f" {i}" for i in range(10)]
    data = ("\n".join(texts) + "\n").encode()
    path = tmp_path / "texts.txt"
    path.write_bytes(data)
    monkeypatch.setattr(inference._model, "CHUNK_BATCHES", 2)  # chunks of 4 texts
    monkeypatch.setattr(inference._predict, "READ_BYTES", 16, raising=False)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    tokenized, printed = _watch_chunks(monkeypatch, out)
    assert cli.main(["predict", str(tiny_model_dir), "--file", str(path), "--json",
                     "--batch-size", "2"]) == 0
    assert [json.loads(line)["text"] for line in out.getvalue().splitlines()] == texts
    assert tokenized == [4, 4, 2]
    assert printed == [0, 0, 4, 4, 8]

    stdin = io.BytesIO(data)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin, encoding="utf-8"))
    read_at_forward, watched = [], inference.load_classifier

    def counting(folder: Path, **kwargs):
        tokenizer, model, precision = watched(folder, **kwargs)
        model.register_forward_pre_hook(lambda *_: read_at_forward.append(stdin.tell()))
        return tokenizer, model, precision

    monkeypatch.setattr(inference._model, "load_classifier", counting)
    assert cli.main(["predict", str(tiny_model_dir), "--file", "-", "--json",
                     "--batch-size", "2"]) == 0
    first_chunk = len("\n".join(texts[:4])) + 1
    assert read_at_forward[0] <= first_chunk + 16 < len(data)  # one read past its lines at most


def test_predict_labels_the_lines_before_one_that_is_not_utf8_then_names_it(tiny_model_dir,
                                                                            tmp_path, capsys):
    """Read as they come, a file's lines are checked when they are reached: those before a line
    that is not UTF-8 are labelled and printed, then the one error line names it (by \\r in a
    file of old Mac line ends, where it said line 1 of any)."""
    from conftest import one_error_line

    from ablation.inference import read_texts

    path = tmp_path / "t.txt"
    path.write_bytes(b"great fun\nbad sad\ncaf\xe9 fun\nlast\n")
    capsys.readouterr()
    assert cli.main(["predict", str(tiny_model_dir), "--file", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["great fun", "bad sad"]
    assert err == (f"ablate: error: --file {str(path)!r}: line 3 (byte 21) cannot be decoded as "
                   "UTF-8 text; save it as UTF-8, one text per line\n")
    path.write_bytes(b"great fun\rbad sad\rcaf\xe9 fun\rlast")
    assert one_error_line(read_texts, [], [path]) == (
        f"--file {str(path)!r}: line 3 (byte 21) cannot be decoded as UTF-8 text; save it as "
        "UTF-8, one text per line")


def test_predict_of_a_file_counts_its_texts_without_a_total(tiny_model_dir, tmp_path,
                                                            monkeypatch, capsys):
    """A file's lines are counted as they are read: the terminal's line counts the texts
    labelled and their rate, without a total, and Ctrl+C says how many were labelled without one
    (it said 'of N', the whole file's count, read first). How far it is, it tells from the
    file's bytes (it said nothing of it, a 2-million-line file's minutes without an end in sight);
    from a pipe, nothing."""
    from ablation import inference

    path = tmp_path / "texts.txt"
    path.write_text("".join(f"great fun {i}\n" for i in range(10)), encoding="utf-8")
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert cli.main(["predict", str(tiny_model_dir), "--file", str(path), "--batch-size", "5"]) == 0
    shown = sys.stderr.getvalue()
    assert "\rlabelled 5 texts (50 % of the input" in shown and " of 10" not in shown
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert cli.main(["predict", str(tiny_model_dir), "--file", "-", "--batch-size", "5"]) == 0
    assert "\rlabelled 5 texts" in sys.stderr.getvalue() and "%" not in sys.stderr.getvalue()

    monkeypatch.undo()
    monkeypatch.setattr(inference._model, "CHUNK_BATCHES", 2)  # chunks of 4 texts
    load, forwards = inference.load_classifier, []

    def interrupted(folder: Path, **kwargs):
        tokenizer, model, precision = load(folder, **kwargs)

        def ctrl_c(*_):
            forwards.append(1)
            if len(forwards) == 3:  # the second chunk's first batch
                raise KeyboardInterrupt

        model.register_forward_pre_hook(ctrl_c)
        return tokenizer, model, precision

    monkeypatch.setattr(inference._model, "load_classifier", interrupted)
    capsys.readouterr()
    assert cli.main(["predict", str(tiny_model_dir), "--file", str(path), "--json",
                     "--batch-size", "2"]) == 130
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 4
    assert err == "ablate: interrupted; the first 4 texts were labelled and printed\n"


def test_predict_file_lines_end_at_newlines_only(tmp_path):
    """str.splitlines() cut a text at a U+2028 or a form feed: one line became two texts."""
    from ablation.inference import read_texts

    (tmp_path / "t.txt").write_bytes("first\u2028part\r\nform\x0cfeed\x85x\r\n\r\nlast".encode())
    assert read_texts([], [tmp_path / "t.txt"]) == ["first\u2028part", "form\x0cfeed\x85x", "last"]


def test_predict_file_with_old_mac_line_ends_gives_a_text_per_line(tmp_path):
    """A file whose lines end at \r alone (classic Mac, some exports) was one text: its lines
    got a single label, unsaid."""
    from ablation.inference import read_texts

    (tmp_path / "t.txt").write_bytes(b"great fun\rbad sad\r\rlast")
    assert read_texts([], [tmp_path / "t.txt"]) == ["great fun", "bad sad", "last"]
    (tmp_path / "t.txt").write_bytes(b"a\rb\nc\r\n")  # \n present: a lone \r is the text's own
    assert read_texts([], [tmp_path / "t.txt"]) == ["a\rb", "c"]


def test_predict_refuses_a_text_argument_that_is_not_utf8(best_study, capsys):
    """A Latin-1 byte in an argument (Python keeps it as a lone surrogate) made the tokenizer
    fail with a traceback."""
    from conftest import one_error_line

    from ablation.inference import read_texts

    assert one_error_line(read_texts, ["great fun", "caf\udce9 fun"], []) == (
        "predict: text argument 2 is not UTF-8 text (byte 0xe9); give texts as UTF-8 (a UTF-8 "
        "terminal types them so), or in a UTF-8 file with --file")
    assert cli.main(["predict", str(best_study), "caf\udce9 fun"]) == 2
    assert "text argument 1 is not UTF-8 text" in capsys.readouterr().err


def test_json_output_is_exact_json_where_standard_output_cannot_show_unicode(best_study):
    """PYTHONIOENCODING=ascii (LC_ALL=C with PYTHONUTF8=0, a latin-1 locale): `predict --json`
    and `evaluate --json` went through the stream's ASCII spelling, which wrote 👍 as
    `\\U0001f44d` (not JSON: json.loads failed) and Δ as `delta` (another text). JSON's own
    escapes keep every character."""
    import subprocess

    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-m", "ablation", "predict", str(best_study), "--json",
                           "很快👍", "Δx"], capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    rows = [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]
    assert [row["text"] for row in rows] == ["很快👍", "Δx"]


def test_predict_reads_a_utf8_argument_that_an_ascii_locale_could_not_decode(tmp_path):
    """LC_ALL=C with PYTHONUTF8=0: Python reads every byte past ASCII of an argument as a lone
    surrogate, so `ablate predict MODEL '很快'` typed in a UTF-8 terminal was refused as 'not
    UTF-8 text (byte 0xe5)'. Its bytes are UTF-8: they are read as such."""
    import subprocess

    from ablation.inference import read_texts

    typed = "".join(chr(0xDC00 + byte) for byte in "很快".encode())  # as LC_ALL=C reads it
    assert read_texts(["great fun", typed], [], pairs=None) == ["great fun", "很快"]
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    done = subprocess.run([sys.executable, "-c", "import sys; from ablation.inference import "
                           "read_texts; print(ascii(read_texts(sys.argv[1:], [])))", "很快"],
                          capture_output=True, env=env, timeout=120)
    assert done.stdout.decode().strip() == ascii(["很快"]), done.stderr.decode()


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_predict_names_the_line_of_a_files_first_byte_that_is_not_utf8(tmp_path, bom):
    """Only a byte offset was named, 3 short of the file's own where the file starts with a BOM:
    a file of one text per line is fixed by its line, as [data] files are."""
    from conftest import one_error_line

    from ablation.inference import read_texts

    (tmp_path / "t.txt").write_bytes(bom + b"one\ntwo\ncaf\xe9\n")
    assert one_error_line(read_texts, [], [tmp_path / "t.txt"]) == (
        f"--file {str(tmp_path / 't.txt')!r}: line 3 (byte {len(bom) + 11}) cannot be decoded as "
        "UTF-8 text; save it as UTF-8, one text per line")


CHINESE = ["这部电影很好看，上映第一天就去了", "太差了，浪费时间", "演员表演出色，音乐也好听", "剧情一般"]


@pytest.mark.parametrize(("encoded", "says"), [
    (b"\xff\xfe" + "great fun\r\ndull\r\n".encode("utf-16-le"),
     "line 1 (byte 0) cannot be decoded as UTF-8 text: it is UTF-16 (Excel's 'Unicode text')"),
    ("\n".join(CHINESE).encode("gbk"),
     "line 1 (byte 0) cannot be decoded as UTF-8 text: it looks like GBK/GB18030 (a Chinese "
     "Windows encoding)"),
], ids=["utf16", "gbk"])
@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_predict_file_not_in_utf8_names_the_encoding_its_bytes_tell(
        tmp_path, monkeypatch, encoded, says, from_stdin):
    """--file said only 'is not UTF-8 text' where a [data] file of the same bytes is named
    UTF-16 or GBK: Notepad's 'Unicode' and Chinese Windows' default save texts so."""
    import io
    import sys

    from conftest import one_error_line

    from ablation.inference import read_texts

    (tmp_path / "t.txt").write_bytes(encoded)
    file = tmp_path / "t.txt"
    if from_stdin:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(encoded)))
        file = Path("-")
    assert one_error_line(read_texts, [], [file]) == (
        f"--file {str(file)!r}: {says}; save it as UTF-8, one text per line")


def test_predict_reads_every_file_given_with_file_in_turn(tmp_path):
    """A second --file used to replace the first: its texts went unlabelled, unsaid."""
    from ablation import cli
    from ablation.inference import read_texts

    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("three\n")
    args = cli.build_parser().parse_args(["predict", "m", "zero", "--file", str(tmp_path / "a.txt"),
                                          "--file", str(tmp_path / "b.txt")])
    assert read_texts(args.texts, args.file) == ["zero", "one", "two", "three"]


@pytest.mark.parametrize("name", ["texts.csv", "texts.TSV", "texts.jsonl"])
def test_predict_refuses_a_data_table_as_file(tmp_path, name):
    """Read line by line, a table's header and label column would be classified as texts."""
    from ablation.errors import AblateInputError
    from ablation.inference import read_texts

    (tmp_path / name).write_text("text,label\ngreat fun,2\n")
    with pytest.raises(AblateInputError, match=r"is a data table .*--file reads plain text, one "
                       r"text per line.*`ablate evaluate MODEL_OR_STUDY --dataset "):
        read_texts([], [tmp_path / name])


def test_predict_names_a_compressed_tables_whole_suffix(tmp_path):
    """IMDB's test.csv.gz is a table too: its kind is .csv.gz, not .gz."""
    import gzip

    from ablation.errors import AblateInputError
    from ablation.inference import read_texts

    (tmp_path / "test.csv.gz").write_bytes(gzip.compress(b"text,label\ngreat fun,1\n"))
    with pytest.raises(AblateInputError, match=r"is a data table \(\.csv\.gz\): "):
        read_texts([], [tmp_path / "test.csv.gz"])


def test_the_predictions_table_keeps_its_columns_for_wide_and_multiline_texts():
    from ablation.inference import format_predictions, terminal_columns

    texts = ["hello", "两个中文字的句子很好", "line\nbreak", "😀😀 fun", "x" * 60 + "\n" + "y" * 9000]
    rows = [{"text": text, "label": "pos", "probabilities": {"pos": 0.9, "neg": 0.1}}
            for text in texts]
    lines = format_predictions(rows).splitlines()
    assert len(lines) == 1 + len(texts)  # one row a text, line breaks or not
    assert {terminal_columns(line.split("  pos ")[0]) for line in lines[1:]} == {48}  # label aligned
    assert lines[3].startswith("line break ") and lines[5].endswith("neg 0.1000")
    assert "…" in lines[5]


def test_evaluate_reads_a_single_file_whole_and_refuses_a_split_it_does_not_have(
        best_study, tmp_path, capsys):
    """A single file has no splits: it is evaluated whole (named as such), and a --split other
    than the one its name gives (or train, as a study reads one file) is refused, not shown."""
    data = tmp_path / "holdout.csv"
    data.write_text("text,label\ngreat love fun,2\nbad sad awful,0\nthe table monday,1\n")
    best = load_spec(best_study).output_dir / "best_model"
    capsys.readouterr()
    for extra in ([], ["--split", "holdout"], ["--split", "train"]):
        assert cli.main(["evaluate", str(best), "--dataset", str(data), *extra]) == 0
        assert f"data:  {data} (the whole file): 3 rows" in capsys.readouterr().out
    assert cli.main(["evaluate", str(best), "--dataset", str(data), "--split", "validation"]) == 2
    err = capsys.readouterr().err
    assert err == (f"ablate: error: --split 'validation': --dataset {data} is one file, evaluated whole; "
                   "drop --split (a folder's files name its splits: train.csv, test.csv, ...)\n")


@pytest.mark.parametrize("dataset", ["", " "])
def test_evaluate_refuses_an_empty_dataset(best_study, tmp_path, monkeypatch, capsys, dataset):
    """Path('') is the working folder: its data files were read as splits, and a stray one named."""
    (tmp_path / "empty.csv").write_text("")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.main(["evaluate", str(best_study), "--dataset", dataset]) == 2
    err = capsys.readouterr().err
    assert err == "ablate: error: --dataset is empty; give a Hub id or a local file or folder, or " \
                  "leave --dataset out to use the study's own data\n"


def test_evaluate_refuses_the_text_column_as_the_label_column(best_study, tmp_path, capsys):
    data = tmp_path / "holdout.csv"
    data.write_text("text,label\ngreat love fun,2\nbad sad awful,0\n")
    best = load_spec(best_study).output_dir / "best_model"
    capsys.readouterr()
    for extra, start in ((["--label-column", "text"], "--label-column 'text' is the text column too"),
                         (["--text-column", "label"], "--text-column 'label' is the label column too"),
                         (["--text-column", "text", "--label-column", "text"],
                          "--text-column and --label-column are both 'text'")):
        assert cli.main(["evaluate", str(best), "--dataset", str(data), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ablate: error: {start}") and err.count("\n") == 1
        assert err.endswith("the text and the label must be different columns\n")


def test_commands_that_read_only_the_stored_study_work_after_its_data_file_moved(
        best_study, tmp_path, capsys):
    """report, status, predict and evaluate on other data read what the study stored, not its
    data: a data folder moved or deleted since the run does not stop them. evaluate on the
    study's own data still needs it, and says so."""
    gone = f"data.dataset={json.dumps(str(tmp_path / 'moved_away'))}"
    data = tmp_path / "holdout.csv"
    data.write_text("text,label\ngreat love fun,2\nbad sad awful,0\n")
    for command in (["report"], ["status"], ["predict", "some text"],
                    ["evaluate", "--dataset", str(data)]):
        first, *rest = command
        capsys.readouterr()
        assert cli.main([first, str(best_study), *rest, "--set", gone]) == 0, capsys.readouterr().err
    assert cli.main(["evaluate", str(best_study), "--set", gone]) == 2
    err = capsys.readouterr().err
    assert "moved_away" in err and "no such file or folder" in err


def test_evaluate_expands_a_quoted_tilde_in_dataset(best_study, tmp_path, monkeypatch, capsys):
    """`--dataset '~/x.csv'` (quoted, so the shell left the ~) is the file in the home folder, as
    `[data] dataset` reads it, not a Hub id."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "holdout.csv").write_text("text,label\ngreat love fun,2\nbad sad awful,0\n")
    best = load_spec(best_study).output_dir / "best_model"
    capsys.readouterr()
    assert cli.main(["evaluate", str(best), "--dataset", "~/holdout.csv"]) == 0
    assert f"data:  {tmp_path / 'holdout.csv'} (the whole file): 2 rows" in capsys.readouterr().out


def test_evaluate_names_an_option_only_when_it_was_given(best_study, tmp_path, capsys):
    """A column the data lacks is the option's when typed; otherwise the study's (or the model's,
    as its ablate.json records it, or the default), with the option that names another."""
    data = tmp_path / "holdout.csv"
    data.write_text("body,label\ngreat love fun,2\nbad sad awful,0\n")
    best = load_spec(best_study).output_dir / "best_model"
    unrecorded = shutil.copytree(best, tmp_path / "unrecorded")  # as an earlier ablate wrote it
    info = json.loads((unrecorded / "ablate.json").read_text())
    (unrecorded / "ablate.json").write_text(json.dumps(
        {k: v for k, v in info.items() if k not in ("text_column", "label_column")}))
    for model, origin in ((str(best_study), "the study's"),
                          (str(best), "the model's, in its ablate.json"),
                          (str(unrecorded), "the default")):
        capsys.readouterr()
        assert cli.main(["evaluate", model, "--dataset", str(data)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ablate: error: text column 'text' ({origin}; --text-column names "
                              "another): split ") and err.count("\n") == 1
    assert cli.main(["evaluate", str(best), "--dataset", str(data), "--text-column", "txt"]) == 2
    assert capsys.readouterr().err.startswith("ablate: error: --text-column 'txt': split ")


def test_the_evaluation_tables_keep_their_columns_for_chinese_label_names():
    """差评 / 好评 take four terminal columns, not two: scikit-learn's per-class report and the
    confusion matrix are padded by what a terminal shows, as predict's table is."""
    from sklearn.metrics import classification_report

    from ablation.inference import Evaluation, format_evaluation, terminal_columns

    names, labels, predictions = ["好评", "差评"], [0, 1, 1, 1], [0, 1, 1, 0]
    report = {"labels": [0, 1], "target_names": names, "digits": 4, "zero_division": 0}
    result = Evaluation(examples=4, label_names=names, metrics={"accuracy": 0.75},
                        per_class=classification_report(labels, predictions, output_dict=True,
                                                        **report),
                        per_class_text=classification_report(labels, predictions, **report),
                        confusion=[[1, 0], [1, 2]], runtime_s=1.0, samples_per_s=4.0,
                        device="cpu", precision="fp32")
    lines = format_evaluation(result).splitlines()
    matrix_at = lines.index("confusion matrix (rows: true label, columns: predicted):")
    per_class = lines[lines.index("per class (scikit-learn classification_report):") + 1:matrix_at]
    assert len({terminal_columns(line) for line in per_class if line}) == 1, per_class  # right-aligned
    assert per_class[2].startswith("        好评     0.5000") and per_class[3].endswith("         3")
    matrix = lines[matrix_at + 1:matrix_at + 4]
    assert len({terminal_columns(line) for line in matrix}) == 1, matrix


def _model_named(tmp_path: Path, tiny_model_dir: Path, names: dict[str, str]) -> Path:
    """A copy of the tiny model whose classes are `names` (id -> name)."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config |= {"id2label": names, "label2id": {v: int(k) for k, v in names.items()}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_label_names_with_control_characters_keep_the_tables_rows_and_columns(
        tmp_path, tiny_model_dir, capsys):
    """A class named 'line\nbreak' or 'tab\there' (a CSV label quoted over two lines) broke
    predict's table and evaluate's per-class report and confusion matrix over extra lines, and an
    escape character in a name reached the terminal as a command. The tables show such characters
    as their escapes (`line\\nbreak`); --json keeps the names as they are."""
    names = {"0": "line\nbreak", "1": "tab\there\x1b[2J"}
    folder = _model_named(tmp_path, tiny_model_dir, names)
    data = tmp_path / "holdout.csv"
    data.write_text("text,label\ngreat love fun,0\nbad sad awful,1\nthe table monday,1\n")

    assert cli.main(["predict", str(folder), "great fun", "bad day"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines
    assert all("line\\nbreak" in line and "tab\\there\\x1b[2J" in line for line in lines[1:])
    assert not any(c in "".join(lines) for c in "\t\x1b")
    assert cli.main(["predict", str(folder), "great fun", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["probabilities"]) == set(names.values())

    assert cli.main(["evaluate", str(folder), "--dataset", str(data)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\t\x1b"), out
    lines = out.splitlines()
    matrix_at = lines.index("confusion matrix (rows: true label, columns: predicted):")
    per_class = lines[lines.index("per class (scikit-learn classification_report):") + 1:matrix_at - 1]
    assert len(per_class) == 8, per_class  # header, blank, 2 classes, blank, 3 averages
    assert per_class[2].lstrip().startswith("line\\nbreak ")
    matrix = lines[matrix_at + 1:matrix_at + 4]
    assert matrix[1].lstrip().startswith("line\\nbreak ") and matrix[2].lstrip().startswith("tab\\t")
    assert len({len(line) for line in matrix}) == 1, matrix
    assert cli.main(["evaluate", str(folder), "--dataset", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == list(names.values())


def test_label_names_holding_a_comma_are_listed_so_that_they_can_be_told_apart(
        tmp_path, tiny_model_dir, capsys):
    """A label the model does not know was answered with the model's names joined by commas:
    classes 'good, really' and 'bad' read as three, 'good', 'really' and 'bad'. Where a name holds
    a comma (or spaces around it) every name is quoted."""
    names = {"0": "good, really", "1": "bad"}
    folder = _model_named(tmp_path, tiny_model_dir, names)
    data = tmp_path / "holdout.csv"
    data.write_text('text,label\ngreat love fun,"good, really"\nbad sad awful,awful\n')
    assert cli.main(["evaluate", str(folder), "--dataset", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "label 'awful' is not one the model knows" in err, err
    assert "give its label names ('good, really', 'bad') or class ids 0..1" in err, err


def test_a_quoted_tilde_in_the_model_and_file_paths_is_the_home_folder(
        tmp_path, tiny_model_dir, monkeypatch, capsys):
    """`ablate predict '~/models/m' --file '~/texts.txt'` (quoted, or from a program: no shell to
    expand it) said no such model folder, though evaluate's --dataset reads a quoted ~ as home."""
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "m")
    (tmp_path / "texts.txt").write_text("great fun\nbad day\n")
    monkeypatch.chdir(tmp_path / "models")  # no ~ folder here
    assert cli.main(["predict", "~/models/m", "--file", "~/texts.txt", "--json"]) == 0, \
        capsys.readouterr().err
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == [
        "great fun", "bad day"]


def test_a_large_file_given_as_the_model_is_refused_without_being_read_whole(
        tmp_path, monkeypatch, capsys):
    """A study.db (gigabytes, on a long study) given as MODEL_OR_STUDY was read whole into memory
    to find it is no TOML; past a size no experiment file has, it is refused unread."""
    from ablation import models

    big = tmp_path / "study.db"
    big.write_bytes(b"SQLite format 3\x00" + b"x" * 2000)
    monkeypatch.setattr(models, "EXPERIMENT_FILE_MAX", 1000)
    capsys.readouterr()
    assert cli.main(["predict", str(big), "great fun"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (f"MODEL_OR_STUDY {str(big)!r} is not an experiment file "
                                      "(0 MB; an experiment file is a short text)") in err, err


def test_a_best_model_folder_deleted_between_runs_is_not_named_as_there(write_experiment, capsys):
    """best_model/ deleted by hand (a clean-up) after the run: the next run says the model is gone
    and how to get it back, and neither its summary nor the report points at the missing folder."""
    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0
    output_dir = load_spec(path).output_dir
    best = json.loads((output_dir / "best_model" / "ablate.json").read_text())
    shutil.rmtree(output_dir / "best_model")
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert (f"best model: trial {best['trial']} kept no model ({output_dir / 'best_model'} was "
            "deleted, and ") in out, out
    assert f"--rerun {best['variant']}" in out
    assert f"best model: {output_dir / 'best_model'} (trial" not in out, out
    assert "**Best model**" not in (output_dir / "report.md").read_text()
    assert cli.main(["report", str(path)]) == 0
    assert "**Best model**" not in (output_dir / "report.md").read_text()


def test_predict_and_evaluate_name_a_deleted_best_model_folder(write_experiment, capsys):
    """best_model/ deleted by hand, then used: the reason given was that the trials ran with
    save_models = "none" or on another machine, neither of them true. The folder expected is
    named as deleted, with the run that brings it back; so too once a run has seen it gone."""
    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0
    folder = load_spec(path).output_dir / "best_model"
    best = json.loads((folder / "ablate.json").read_text())
    shutil.rmtree(folder)
    for run_between in (False, True):
        if run_between:
            assert cli.main(["run", str(path)]) == 0  # which says it is gone, and forgets it
        capsys.readouterr()
        for command in (["predict", str(path), "great fun"], ["evaluate", str(path)]):
            assert cli.main(command) == 2, command
            err = capsys.readouterr().err
            assert err == (f"ablate: error: study 'tiny' has no best model: {folder} is missing "
                           f"(deleted since trial {best['trial']} kept its model there); train "
                           "the best variant again keeping its model: "
                           f"`ablate run {path} --rerun {best['variant']}`\n"), (command, err)


@pytest.mark.parametrize("inside", ["model", "best_model"])
def test_a_trial_or_output_folder_given_as_the_model_names_the_model_folder_in_it(
        inside, tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    """trials/baseline-s42/ (the trial's folder) or reports/<name>/ (the study's) given where the
    model goes was refused with the generic 'give a study's best_model/ or trials/<trial>/model/';
    the model folder inside it is now named, and predict takes it."""
    given = tmp_path / ("baseline-s42" if inside == "model" else "study")
    shutil.copytree(tiny_model_dir, given / inside)
    for command in (["predict", str(given), "great fun"],
                    ["evaluate", str(given), "--dataset", str(tiny_data_dir / "test.csv")]):
        assert cli.main(command) == 2, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"it holds the model folder {str(given / inside)!r}: give that" in err, err
    assert cli.main(["predict", str(given / inside), "great fun"]) == 0


def test_a_deleted_best_model_whose_trial_kept_its_own_copy_is_not_trained_again(
        tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    """save_models = "all": best_model/ deleted, the best trial's own model/ is still there. predict
    and evaluate said to train the best variant again (`--rerun`), minutes of training for a
    model on disk; they now name that copy, `--trial` that uses it, and the `run` that copies it
    back without training, and both work as said."""
    path = _study_file(tmp_path, tiny_model_dir, tiny_data_dir, "all")
    assert cli.main(["run", str(path)]) == 0
    folder = load_spec(path).output_dir / "best_model"
    trial = json.loads((folder / "ablate.json").read_text())["trial"]
    shutil.rmtree(folder)
    capsys.readouterr()
    for command in (["predict", str(path), "great fun"], ["evaluate", str(path)]):
        assert cli.main(command) == 2, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "--rerun" not in err, err
        kept = load_spec(path).output_dir / "trials" / trial / "model"
        assert f"trial {trial} kept its own copy in {kept}" in err, err
        assert f"use it with `--trial {trial}`" in err, err
        assert f"`ablate run {path}`" in err, err
    assert cli.main(["predict", str(path), "great fun", "--trial", trial]) == 0
    assert cli.main(["run", str(path)]) == 0  # nothing to train: best_model/ copied back
    assert json.loads((folder / "ablate.json").read_text())["trial"] == trial
    assert cli.main(["predict", str(path), "great fun"]) == 0


def test_predict_and_evaluate_commands_repeat_the_runs_sets(write_experiment, capsys):
    """`report` and `status` print commands repeating the --sets the study was run with; those
    `predict` and `evaluate` printed (a deleted best_model/'s --rerun, a trial's model or
    checkpoints not kept) did not: pasted, they trained other settings."""
    path = write_experiment()
    sets = ["data.max_train_samples=16", 'experiment.description="two words"']
    options = shlex.join([part for item in sets for part in ("--set", item)])
    assert cli.main(["run", str(path), *shlex.split(options)]) == 0
    output_dir = load_spec(path).output_dir
    best = json.loads((output_dir / "best_model" / "ablate.json").read_text())
    other = next(p.name for p in (output_dir / "trials").iterdir() if p.name != best["trial"])
    shutil.rmtree(output_dir / "best_model")
    keep_all = "--set experiment.save_models=all"
    expected = {
        ("predict", "great fun"): f"`ablate run {path} --rerun {best['variant']} {options}`",
        ("predict", "great fun", "--trial", other):
            f"`ablate run {path} --rerun {other.rsplit('-s', 1)[0]} {options} {keep_all}`",
        ("evaluate", "--checkpoints", other):
            f"`ablate run {path} --rerun {other.rsplit('-s', 1)[0]} {options} {keep_all}`",
    }
    capsys.readouterr()
    for (name, *arguments), command in expected.items():
        assert cli.main([name, str(path), *arguments]) == 2
        err = capsys.readouterr().err
        assert err.endswith(f"{command}\n"), err


def test_predicts_share_of_a_file_never_runs_ahead_of_the_texts_labelled(tmp_path):
    """predict's percentage for a --file went back at each chunk (86 % then 82 %): it took the
    bytes of every line a read had returned as those of the texts given out so far, which a
    chunk that fills mid-read has not all taken yet. Lines of equal length: each chunk's share is
    its part of the lines, to a line."""
    from ablation.inference._predict import IncomingTexts

    lines = 40_000
    file = tmp_path / "texts.txt"
    file.write_text("".join(f"review number {i:06d}\n" for i in range(lines)))
    incoming = IncomingTexts([], [file], pause_s=None)
    labelled, shares = 0, []
    for chunk in incoming.chunks(1000):
        labelled += len(chunk)
        shares.append(incoming.share(labelled))
    assert labelled == lines
    assert shares == sorted(shares), shares
    assert all(abs(share - (i + 1) / 40) < 1 / lines for i, share in enumerate(shares)), shares


def test_a_run_on_another_machine_leaves_the_best_model_where_it_was_exported(write_experiment,
                                                                              tmp_path, capsys):
    """Two machines run one study (a shared storage; each its own output folder). The one that
    trained the best trial exports it to its best_model/ and records that in the study; the
    other's run found no best_model/ in its own folder, said `.../best_model was deleted`, and
    erased the record: the first machine's `ablate report` then named no best model. The other
    machine says where the model is and leaves the record alone, and so do its report and the
    first machine's."""
    path = write_experiment()
    storage = f'experiment.storage="sqlite:///{tmp_path / "shared.db"}"'
    machine_a = ["--set", storage]
    machine_b = ["--set", storage, "--set", f'experiment.output_dir="{tmp_path / "b"}"']
    assert cli.main(["run", str(path), *machine_a]) == 0
    folder_a = load_spec(path, [storage]).output_dir / "best_model"
    best = json.loads((folder_a / "ablate.json").read_text())
    capsys.readouterr()
    assert cli.main(["run", str(path), *machine_b]) == 0
    out = capsys.readouterr().out
    assert "deleted" not in out and "kept no model" not in out, out
    host = socket.gethostname()
    assert (f"best model: trial {best['trial']}'s model is in {host}:{folder_a}, exported by the "
            "run there") in out, out
    assert not (tmp_path / "b" / "best_model").exists()
    line_b = next(line for line in (tmp_path / "b" / "report.md").read_text().splitlines()
                  if line.startswith("- **Best model**"))
    assert str(folder_a) in line_b and "`best_model/`" not in line_b, line_b
    assert cli.main(["report", str(path), *machine_a]) == 0
    report_a = (folder_a.parent / "report.md").read_text()
    assert f"- **Best model**: `best_model/` — trial `{best['trial']}`" in report_a
    assert cli.main(["predict", str(path), "great fun", *machine_b]) == 2
    err = capsys.readouterr().err
    assert err == (f"ablate: error: study 'tiny' has its best model in {host}:{folder_a} (trial "
                   f"{best['trial']}, exported by the run there), not in {tmp_path / 'b' / 'best_model'}: "
                   "copy that folder here, or use it there\n"), err


def test_a_best_model_recorded_under_another_host_name_is_here_where_this_folder_holds_it(
        write_experiment, monkeypatch, capsys):
    """The study records the machine that exported best_model/ by its host name, which a
    container changes from one session to the next: a report in the same folder then said the
    model 'is in old-host:/…/best_model, exported by the run there' and left best_model/ out of
    its files, though the folder held it."""
    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0
    folder = load_spec(path).output_dir
    monkeypatch.setattr(socket, "gethostname", lambda: "another-container")
    capsys.readouterr()
    assert cli.main(["report", str(path)]) == 0
    report = (folder / "report.md").read_text()
    assert "- **Best model**: `best_model/` — trial" in report, report
    assert "exported by the run there" not in report and "- `best_model/`:" in report
    assert cli.main(["predict", str(path), "great fun"]) == 0, capsys.readouterr().err


def test_predict_notes_a_local_best_model_older_than_the_one_another_machine_exported(
        write_experiment, capsys):
    """Machine A's best_model/ holds the trial that was best when A exported it; machine B's run
    later exported a better trial into B's folder and recorded it in the shared study. predict of
    the study on A labelled with A's old model and said nothing: it now notes (on stderr) which
    trial it holds, and where the best one is."""
    from ablation.queue import open_study

    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0
    spec = load_spec(path)
    study = open_study(spec, create=False)
    held = study.user_attrs["best_model"]["key"]
    newer = dict(study.user_attrs["best_model"], key="baseline-s7",
                 exported_from={"host": "gpu-2", "output_dir": "/home/me/proj/reports/tiny"})
    study.set_user_attr("best_model", newer)  # as machine B's run records its export
    capsys.readouterr()
    assert cli.main(["predict", str(path), "great fun", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[0])["text"] == "great fun"
    assert err.startswith(
        f"note: best model: best_model/ here holds trial {held}, no longer the best: the best, "
        "trial baseline-s7, is in gpu-2:/home/me/proj/reports/tiny/best_model, exported by the run "
        "there; copy that folder here to use it\n"), err
    # (the tiny model predicts one class: a second note says so, once its rows are out)
    assert err.count("\n") == 1 + ("note: this model" in err), err


def test_keeping_all_with_resumable_checkpoints_keeps_each_evaluations_weights_only(
        tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    """save_models = "all" keeps the checkpoint of every evaluation (for evaluate --checkpoints);
    with checkpoint_steps, the finished trial also kept the resumable checkpoints between its
    evaluations and every checkpoint's optimizer, scheduler and RNG states, which serve only a
    resume (bert-base: 1.3 GB a checkpoint rather than 440 MB), and their log windows."""
    path = tiny_experiment(tmp_path, tiny_model_dir, tiny_data_dir, name="keepall", variants="",
                           baseline="learning_rate = 1e-3\nbatch_size = 16\nmax_steps = 10\n"
                                    "eval_steps = 5\n",
                           experiment='save_models = "all"\ncheckpoint_steps = 3')
    assert cli.main(["run", str(path)]) == 0
    result = _trials(path)["baseline-s42"].user_attrs["result"]
    evaluated = [point["step"] for point in result["eval_history"]]
    assert evaluated == [5, 10]
    kept = tmp_path / "reports" / "keepall" / "trials" / "baseline-s42" / "checkpoints"
    assert sorted(p.name for p in kept.iterdir()) == [f"checkpoint-{step}" for step in (10, 5)]
    for step in evaluated:
        files = {p.name for p in (kept / f"checkpoint-{step}").iterdir()}
        assert "model.safetensors" in files and "config.json" in files
        assert not {name for name in files if name.startswith(("optimizer", "scheduler", "rng_state",
                                                                "scaler"))}, files
    capsys.readouterr()
    assert cli.main(["evaluate", str(path), "--checkpoints", "baseline-s42", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["checkpoints"]
    assert [row["eval_loss"] for row in rows] == pytest.approx(
        [point["loss"] for point in result["eval_history"]], abs=1e-5)


def test_the_reports_evaluate_hint_runs_on_data_without_a_test_split(write_experiment, capsys):
    """The report's Best model line said `use it with ... ablate evaluate FILE`, which evaluates
    the test split: on data without one (a single CSV, the usual own data) that command stopped
    with 'has no test split'. It names the split there is, and the command it gives runs."""
    path = write_experiment(variants="")
    path.write_text(path.read_text().replace("max_eval_samples = 40\n",
                                             'max_eval_samples = 40\ntest_split = ""\n'))
    assert cli.main(["run", str(path)]) == 0
    report = (load_spec(path).output_dir / "report.md").read_text()
    line = next(line for line in report.splitlines() if line.startswith("- **Best model**"))
    hint = next(part for part in line.split("`") if part.startswith("ablate evaluate"))
    assert hint == f"ablate evaluate {path} --split validation", line
    # nor does the Results note speak of test metrics the table has no column of
    results = report.split("## Results", 1)[1].split("\n\n", 2)[1]
    assert results.startswith("Validation metrics") and "test" not in results, results
    capsys.readouterr()
    assert cli.main(shlex.split(hint)[1:]) == 0, capsys.readouterr().err


def test_a_model_that_predicted_one_class_on_validation_is_noted_by_name(tmp_path):
    """ablate.json's validation_predicted counts what the kept checkpoint predicted on
    validation, class by class: one class for every example is noted by its name (predict gave
    every text that label without a word); a model that predicted several, or an ablate.json that
    cannot say (an older one, a value edited by hand), gets no note."""
    from ablation.models import one_class_note

    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "neg", "1": "neutral"}}))
    note = one_class_note(tmp_path, {"trial": "baseline-s42", "validation_predicted": [0, 24, 0]})
    assert note is not None and note.startswith(
        "this model (trial baseline-s42) predicted 'neutral' for every one of its 24 validation "
        "examples when it was trained: it has not learned from the text")
    for counts in ([3, 20, 1], None, [24], [0, "24"], [0, 0, 0], [0, True, 0]):
        assert one_class_note(tmp_path, {"validation_predicted": counts}) is None, counts


def test_the_reports_commands_and_pipeline_copied_from_the_rendered_page_run_as_written(
        write_experiment, capsys):
    """A colleague's file named `n`&#39;;touch pwned;#...`: the report's one-backtick code spans
    ended at its backtick, and the rest was markdown, whose `&#39;` the page shows as `'`: the
    `ablate predict` copied from it closed its quotes and ran `touch`. The pipeline snippet put
    the folder in "..." unescaped: a study name with `"` ran Python of the name's choosing."""
    import ast

    from markdown_it import MarkdownIt

    name = 'n`&#39;;touch pwned;#`");print("pwned'
    written = write_experiment(variants="")
    path = written.with_name(f"{name}.toml")
    text = written.read_text()
    output = written.parent / "reports" / name
    text = text.replace('name = "tiny"', f"name = '{name}'")
    path.write_text(re.sub(r'output_dir = ".*"', lambda _: f"output_dir = '{output}'", text))
    assert cli.main(["run", str(path)]) == 0, capsys.readouterr().err
    report = (output / "report.md").read_text()
    title, best = (next(line for line in report.splitlines() if line.startswith(start))
                   for start in ("# Ablation study", "- **Best model**"))

    def code(line: str) -> list[str]:
        tokens = MarkdownIt("commonmark").parseInline(line)[0].children
        return [token.content for token in tokens if token.type == "code_inline"]

    assert code(title) == [name]
    commands = [span for span in code(best) if span.startswith("ablate ")]
    assert [shlex.split(command)[:3] for command in commands] == [
        ["ablate", "predict", str(path)], ["ablate", "evaluate", str(path)]], best
    (pipeline,) = [span for span in code(best) if span.startswith("transformers.pipeline")]
    call = ast.parse(pipeline).body[0].value
    assert ast.literal_eval(call.keywords[0].value) == str(output / "best_model"), pipeline
