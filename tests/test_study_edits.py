"""A study file edited between runs, as users do over days: what a later `run` re-uses, trains
again or refuses must follow from what the stored results were trained with, never from the
file's wording alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ablation import cli
from ablation.config import load_spec
from ablation.queue import open_study

FAST = "learning_rate = 1e-3\nbatch_size = 16\nmax_steps = 2\neval_steps = 2\nlogging_steps = 1\n"


def _keys(path: Path, sets: list[str] | None = None) -> list[str]:
    return [t.user_attrs["key"] for t in open_study(load_spec(path, sets), create=False).get_trials()]


def test_a_model_folder_trained_again_in_place_is_refused_rather_than_mixed(
        write_experiment, tiny_model_dir, tmp_path, capsys):
    """The same [model] name with other weights: a new variant would start from other weights
    than the stored trials it is compared with."""
    model = tmp_path / "my-model"
    shutil.copytree(tiny_model_dir, model)
    path = write_experiment(baseline=FAST)
    path.write_text(path.read_text().replace(str(tiny_model_dir), str(model)))
    assert cli.main(["run", str(path)]) == 0
    from transformers import AutoModelForSequenceClassification
    retrained = AutoModelForSequenceClassification.from_pretrained(model)
    for parameter in retrained.parameters():
        parameter.data.mul_(1.5)
    retrained.save_pretrained(model)  # same folder, same config, other weights
    path.write_text(path.read_text() + "wd = { weight_decay = 0.01 }\n")
    for command in (["run", str(path), "--dry-run"], ["validate", str(path)], ["run", str(path)]):
        capsys.readouterr()
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert (f"holds study 'tiny' run with other files in model folder {model} (content "
                "fingerprint ") in err
        assert "use a new [experiment] name, or --force-new" in err
    assert _keys(path) == ["baseline-s42", "baseline_bs32-s42"]  # nothing queued
    path.write_text(path.read_text().replace("wd = { weight_decay = 0.01 }\n", ""))
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 0  # nothing to train: the stored results stand


def test_a_copied_model_folder_is_the_same_model(write_experiment, tiny_model_dir, tmp_path):
    """Only the files' content counts: a copy (other times, same bytes) is no change, nor is a
    README beside the weights."""
    from ablation.preflight import model_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy, copy_function=shutil.copy)  # new modification times
    (copy / "README.md").write_text("notes\n")
    assert model_fingerprint(str(copy), None) == model_fingerprint(str(tiny_model_dir), None)
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("32", "33", 1))
    assert model_fingerprint(str(copy), None) != model_fingerprint(str(tiny_model_dir), None)


def test_a_hub_model_is_known_by_its_cached_commit(tmp_path):
    from ablation.preflight import model_fingerprint

    repo = tmp_path / "models--org--tiny"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    assert model_fingerprint("org/tiny", None, cache_dir=tmp_path) == "commit " + "a" * 40
    (repo / "refs" / "main").write_text("b" * 40)  # the cache moved on to a newer commit
    assert model_fingerprint("org/tiny", None, cache_dir=tmp_path) == "commit " + "b" * 40
    assert model_fingerprint("org/tiny", "a" * 40, cache_dir=tmp_path) == "commit " + "a" * 40
    assert model_fingerprint("org/missing", None, cache_dir=tmp_path) is None


def test_a_worker_is_refused_a_model_folder_with_other_weights(write_experiment, tiny_model_dir,
                                                               tmp_path, capsys):
    """A worker's model may sit at another path (another machine): the same files are the same
    model, other weights are refused before it claims a trial."""
    path = write_experiment(baseline=FAST, variants="")
    assert cli.main(["run", str(path)]) == 0
    same, other = tmp_path / "same", tmp_path / "other"
    shutil.copytree(tiny_model_dir, same)
    shutil.copytree(tiny_model_dir, other)
    (other / "config.json").write_text((other / "config.json").read_text().replace(
        '"hidden_act"', '"classifier_dropout": 0.3,\n  "hidden_act"', 1))
    capsys.readouterr()
    assert cli.main(["worker", str(path), "--wait", "0", "--set", f"model.name={same}"]) == 0
    assert cli.main(["worker", str(path), "--wait", "0", "--set", f"model.name={other}"]) == 2
    err = capsys.readouterr().err
    assert f"run with other files in model folder {other} (content fingerprint" in err
    assert err.endswith("start the worker with the experiment file and --set options of the "
                        "`ablate run` that queued it\n")


def test_a_worker_is_refused_another_model_whose_content_cannot_be_told(write_experiment,
                                                                        capsys):
    """The [model] name may differ from the study's where its content is checked; a Hub id not
    in the cache has none to check (a worker online would download it and train other weights
    into the study): it is refused as another model, as every other name change was."""
    path = write_experiment(baseline=FAST, variants="")
    assert cli.main(["run", str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["worker", str(path), "--wait", "0", "--set",
                     "model.name=nobody/not-in-the-cache"]) == 2
    err = capsys.readouterr().err
    # the --set named that model, not the file (whose own [model] is the study's)
    assert ("--set 'model.name=nobody/not-in-the-cache' names model nobody/not-in-the-cache, "
            "whose files cannot be compared") in err
    assert len(err.splitlines()) == 1


def test_a_set_left_out_of_a_later_run_is_named_with_the_command_that_goes_on(write_experiment,
                                                                                capsys):
    """A study run with --set options, then run without them: the refusal says which --set the
    stored results were trained with, rather than offering only to delete or retrain them."""
    import shlex

    path = write_experiment(baseline=FAST)
    sets = ["--set", "data.max_train_samples=100", "--set", "variants.bs32.batch_size=8"]
    assert cli.main(["run", str(path), *sets]) == 0
    for given, left_out in (([], sets), (sets[:2], sets[2:])):
        for command in (["run", str(path)], ["run", str(path), "--dry-run"], ["validate", str(path)]):
            capsys.readouterr()
            assert cli.main([*command, *given]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1
            go_on = shlex.join(["ablate", "run", str(path), *left_out, *given])
            assert err.endswith(f"; or, to go on with the stored results, give the --set options the "
                                f"`ablate run` that queued them had: `{go_on}`\n"), err
    capsys.readouterr()
    assert cli.main(["run", str(path), *sets]) == 0
    assert "re-using 2 completed trial(s)" in capsys.readouterr().out
    path.write_text(path.read_text().replace("learning_rate = 1e-3", "learning_rate = 2e-3"))
    assert cli.main(["run", str(path)]) == 2  # the --sets would not do: no such hint
    assert "go on with the stored results" not in capsys.readouterr().err


def test_a_variant_reworded_to_train_the_same_recipe_is_re_used_with_a_note(write_experiment,
                                                                            capsys):
    """A knob written out at the baseline's value, or one that changes nothing (epochs beside
    max_steps), is no change of what the variant trains: its result stands, and the line says
    why, rather than a refusal whose way on trains the same recipe again."""
    path = write_experiment(baseline=FAST, variants="bs32 = { batch_size = 32 }\n"
                                                     "cos = { lr_scheduler = \"cosine\" }\n")
    assert cli.main(["run", str(path)]) == 0
    path.write_text(path.read_text().replace(
        "bs32 = { batch_size = 32 }", "bs32 = { batch_size = 32, weight_decay = 0.0 }").replace(
        'cos = { lr_scheduler = "cosine" }', 'cos = { lr_scheduler = "cosine_with_restarts", epochs = 9 }'))
    for command in (["run", str(path), "--dry-run"], ["validate", str(path)], ["run", str(path)]):
        capsys.readouterr()
        assert cli.main(command) == 0
        out = capsys.readouterr().out
        if command[0] == "run":
            assert ("note: baseline_bs32 now says batch_size=32, weight_decay=0, which trains what "
                    "its stored result was trained with (batch_size=32): re-used") in out
            assert ("note: baseline_cos now says lr_scheduler=cosine_with_restarts, epochs=9, which "
                    "trains what its stored result was trained with (lr_scheduler=cosine): re-used"
                    ) in out
    assert _keys(path) == ["baseline-s42", "baseline_bs32-s42", "baseline_cos-s42"]
    path.write_text(path.read_text().replace("weight_decay = 0.0", "weight_decay = 0.1"))
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 2  # a change of what it trains is still refused
    assert "variant 'baseline_bs32' was run with batch_size=32" in capsys.readouterr().err


def test_results_of_a_variant_or_seed_taken_out_of_the_file_are_said_to_stay_in_the_report(
        write_experiment, capsys):
    """A variant removed from the file (or renamed, or a [sweep] value changed) and a seed no
    longer listed keep their results in the study and its report: the run says so, rather than
    a report that silently shows what the file no longer has."""
    path = write_experiment(baseline=FAST, variants="bs32 = { batch_size = 32 }\n"
                                                     "lr = { learning_rate = 2e-3 }\n")
    assert cli.main(["run", str(path), "--set", "experiment.seeds=[42, 7]"]) == 0
    path.write_text(path.read_text().replace("bs32 = { batch_size = 32 }\n", "").replace(
        "lr = {", "lr2 = {"))
    for dry in (["--dry-run"], []):
        capsys.readouterr()
        assert cli.main(["run", str(path), *dry]) == 0
        out = capsys.readouterr().out
        assert ("note: the study holds results of variants baseline_bs32, baseline_lr, which the "
                "file no longer has: they stay in the report (it shows every result the study "
                "holds)") in out
        assert ("note: the study holds results at seed 7, which the file no longer lists: they "
                "still count in their variants' rows of the report") in out
    results = (load_spec(path).output_dir / "results.csv").read_text()
    assert "baseline_bs32,7," in results


def test_a_renamed_file_whose_study_name_was_its_stem_points_at_the_old_study(
        write_experiment, tmp_path, monkeypatch, capsys):
    """Without [experiment] name the study is named by the file: renamed, it would train every
    trial again in a new study beside the old one's results. The run says where they are."""
    monkeypatch.chdir(tmp_path)
    path = write_experiment(baseline=FAST)
    text = "\n".join(line for line in path.read_text().splitlines()
                     if not line.startswith(('name = "tiny"', "output_dir ="))) + "\n"
    first = tmp_path / "bs.toml"
    first.write_text(text)
    assert cli.main(["run", str(first)]) == 0
    renamed = first.rename(tmp_path / "bs_v2.toml")
    note = ("note: reports/bs holds study 'bs', run on the data, model, baseline and metric this "
            "file gives; this file names its study 'bs_v2' after itself: set [experiment] name = "
            "\"bs\" to go on with that study's results rather than train them again")
    # status and report of the renamed file said to run it first, which trains it all again
    for command in ("status", "report"):
        assert cli.main([command, str(renamed)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.endswith(
            f", but {note.removeprefix('note: ')}\n"), err
    for dry in (["--dry-run"], []):
        capsys.readouterr()
        assert cli.main(["run", str(renamed), *dry]) == 0
        assert note in capsys.readouterr().out
    renamed.write_text('[experiment]\nname = "bs"\n' + text.replace("[experiment]\n", "", 1))
    capsys.readouterr()
    assert cli.main(["run", str(renamed)]) == 0
    out = capsys.readouterr().out
    assert "re-using 2 completed trial(s)" in out and "note: reports/" not in out


def _project_and(write_experiment, tmp_path, other: str) -> tuple[Path, Path]:
    """project/bs.toml, its output_dir left to its default (reports/<name>, relative to the
    working folder), and an empty sibling folder `other`: (project, other)."""
    project, sibling = tmp_path / "project", tmp_path / other
    project.mkdir()
    sibling.mkdir()
    path = write_experiment(baseline=FAST)
    (project / "bs.toml").write_text("\n".join(line for line in path.read_text().splitlines()
                                               if not line.startswith("output_dir =")) + "\n")
    return project, sibling


def _run_in_project_then_elsewhere(write_experiment, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """project/bs.toml (output_dir left to its default, reports/<name>) run in project/, then the
    working folder moved to a sibling, elsewhere/: (project, elsewhere)."""
    project, elsewhere = _project_and(write_experiment, tmp_path, "elsewhere")
    monkeypatch.chdir(project)
    assert cli.main(["run", "bs.toml"]) == 0
    monkeypatch.chdir(elsewhere)
    return project, elsewhere


def test_a_file_run_from_another_folder_points_at_its_study_in_the_file_s_folder(
        write_experiment, tmp_path, monkeypatch, capsys):
    """The default output folder (reports/<name>) is relative to the folder ablate runs in: run
    from elsewhere, the same file would train every trial again in a new study there."""
    project, elsewhere = _run_in_project_then_elsewhere(write_experiment, tmp_path, monkeypatch)
    capsys.readouterr()
    assert cli.main(["run", "../project/bs.toml", "--dry-run"]) == 0
    assert (f"note: {project / 'reports' / 'tiny'} holds study 'tiny' of this file, made by a run "
            f"in {project} (relative paths start at the folder ablate runs in, here {elsewhere}): "
            f"run it from {project} to go on with that study's results rather than train them "
            "again") in capsys.readouterr().out
    for command in ("status", "report"):  # said "run it first", which trains it all again there
        assert cli.main([command, "../project/bs.toml"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and (
            f"yet, but {project / 'reports' / 'tiny'} holds study 'tiny' of this file, made by a "
            f"run in {project} ") in err, err


def test_a_project_moved_to_another_folder_goes_on_where_its_data_and_model_are_the_same(
        write_experiment, tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    """The data and model paths a study was run with are where they were, not what they are: a
    project folder moved (or data and model copied elsewhere) holds the same rows and files, and
    the study goes on; other rows at the new path are still refused."""
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(tiny_data_dir, old / "data")
    shutil.copytree(tiny_model_dir, old / "model")
    path = write_experiment(baseline=FAST)
    path.write_text(path.read_text().replace(str(tiny_data_dir), str(old / "data")).replace(
        str(tiny_model_dir), str(old / "model")))
    assert cli.main(["run", str(path)]) == 0
    old.rename(new)
    path.write_text(path.read_text().replace(str(old), str(new))
                    + "wd = { weight_decay = 0.01 }\n")
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 0
    assert "re-using 2 completed trial(s)" in capsys.readouterr().out
    assert _keys(path) == ["baseline-s42", "baseline_bs32-s42", "baseline_wd-s42"]
    shutil.copytree(new, old)
    with (old / "data" / "train.csv").open("a") as rows:
        rows.write("great love fun movie,2\n")
    path.write_text(path.read_text().replace(str(new), str(old))
                    + "lr = { learning_rate = 5e-3 }\n")
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 2
    assert "holds study 'tiny' run with other data rows" in capsys.readouterr().err


def _queued_by_an_earlier_run(path: Path, stored_fingerprint: str) -> None:
    """The study an interrupted `run` leaves: the baseline complete, baseline_bs32 still queued,
    its data recorded by the content fingerprint `stored_fingerprint` (the rows that run read:
    an older ablate that carved or cleaned them otherwise, or the file before it was edited)."""
    import optuna

    from ablation import queue, records
    from ablation.data import load_study_splits
    from ablation.sweep import DATA_FINGERPRINT
    from ablation.sweep._study import record_study_attrs
    from ablation.variants import expand

    spec = load_spec(path, [])
    study = open_study(spec)
    record_study_attrs(study, spec, load_study_splits(spec), {})
    study.set_user_attr(DATA_FINGERPRINT, stored_fingerprint)
    baseline, bs32 = expand(spec)
    result = {"validation": {"macro_f1": 0.5}, "test": {"macro_f1": 0.5}, "history": [],
              "eval_history": []}
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=0.5,
        user_attrs={**records.trial_attrs(baseline), records.RESULT: result}))
    queue.enqueue(study, [bs32])


def test_trials_an_interrupted_run_left_queued_are_not_trained_on_other_data_rows(
        write_experiment, capsys):
    """A run that goes on with the trials an earlier run queued (interrupted, or killed) trains
    them: on rows other than the study's stored trials were (the data file edited meanwhile, or
    an upgraded ablate that carves it otherwise) they would be compared as alike. Refused, as
    new trials are, and nothing trains; `--dry-run` says the same."""
    path = write_experiment(baseline=FAST)
    _queued_by_an_earlier_run(path, "0123456789abcdef")
    capsys.readouterr()
    assert cli.main(["run", str(path), "--dry-run"]) == 2
    assert "holds study 'tiny' run with other data rows" in capsys.readouterr().err
    assert cli.main(["run", str(path)]) == 2
    assert "holds study 'tiny' run with other data rows" in capsys.readouterr().err
    states = {t.user_attrs["key"]: t.state.name
              for t in open_study(load_spec(path, []), create=False).get_trials()}
    assert states == {"baseline-s42": "COMPLETE", "baseline_bs32-s42": "WAITING"}


def test_same_files_read_into_other_rows_by_an_upgraded_ablate_say_so(write_experiment, capsys):
    """A study whose stored rows the same, unchanged files no longer give (an upgraded ablate
    that carves or cleans them otherwise) was refused as 'other files, or other keys that pick
    rows', sending the user to look for an edit that never happened. Where the study recorded
    its files' own fingerprint the line says they are the same and why the rows differ; a study
    from an ablate that did not record it names an older ablate among the causes."""
    from ablation.sweep._study import DATA_SOURCE

    path = write_experiment(baseline=FAST)
    _queued_by_an_earlier_run(path, "0123456789abcdef")  # rows carved otherwise, same files
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "other data rows (content fingerprint 0123456789abcdef;" in err
    assert ("from the same files: this ablate cleans, labels, carves or samples them otherwise "
            "than the ablate that ran the study)") in err
    assert "under the ablate version that ran it" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1

    study = open_study(load_spec(path, []), create=False)
    study._storage.set_study_user_attr(study._study_id, DATA_SOURCE, None)  # not recorded
    assert cli.main(["run", str(path), "--dry-run"]) == 2
    assert ("other files, other keys that pick rows, or an older ablate that made other rows "
            "of the same files)") in capsys.readouterr().err


def test_a_finished_study_whose_data_file_was_edited_says_its_trials_are_of_the_old_rows(
        write_experiment, tiny_data_dir, tmp_path, capsys):
    """Rows added to the data file after every trial completed: with nothing to train, `run`
    re-used the stored trials and wrote their report without a word, and `--dry-run` listed them
    `complete, re-used`, as if the edit were in the results; a new variant is refused for the
    same rows. Both now say so, in the refusal's words, and go on (the stored results stand)."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data)
    path = write_experiment(baseline=FAST)
    path.write_text(path.read_text().replace(str(tiny_data_dir), str(data)))
    assert cli.main(["run", str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    assert "other data rows" not in capsys.readouterr().out  # the same rows: nothing to say
    with (data / "train.csv").open("a") as rows:
        rows.write("great love fun movie,2\n")
    for command in (["run", str(path), "--dry-run"], ["run", str(path)]):
        assert cli.main(command) == 0
        out = capsys.readouterr().out
        notes = [line for line in out.splitlines() if "other data rows" in line]
        assert len(notes) == 1, out
        assert notes[0].startswith("note: storage ")
        assert ("holds study 'tiny' run with other data rows (content fingerprint "
                f"{open_study(load_spec(path, []), create=False).user_attrs['data_fingerprint']}; "
                f"{data} now gives ") in notes[0]
        assert ("; nothing is left to train: the trials re-used, and the report of them, are of "
                "the study's rows, not these; to train on these, use a new [experiment] name, or "
                "--force-new") in notes[0]
    assert "re-using 2 completed trial(s)" in out
    path.write_text(path.read_text() + "wd = { weight_decay = 0.01 }\n")
    assert cli.main(["run", str(path), "--dry-run"]) == 2  # something to train: refused, as before
    assert "holds study 'tiny' run with other data rows" in capsys.readouterr().err


def test_a_finished_search_whose_data_file_was_edited_is_not_refused_by_the_dry_run_alone(
        write_experiment, tiny_data_dir, tmp_path, capsys):
    """A [search] whose n_trials are all made has nothing to train: `run` re-uses its trials, but
    `--dry-run` read the data for a search all the same and refused the edited rows (exit 2),
    promising a refusal the run does not make. Both now say the same note and go on."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data)
    path = write_experiment(baseline=FAST, variants="", extra=(
        '[search]\nn_trials = 1\nsampler = "random"\n[search.space]\n'
        "learning_rate = { low = 1e-4, high = 1e-3, log = true }\n"))
    path.write_text(path.read_text().replace(str(tiny_data_dir), str(data)))
    assert cli.main(["run", str(path)]) == 0
    with (data / "train.csv").open("a") as rows:
        rows.write("great love fun movie,2\n")
    capsys.readouterr()
    for command in (["run", str(path), "--dry-run"], ["run", str(path)]):
        assert cli.main(command) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "holds study 'tiny' run with other data rows" in out
        assert "nothing is left to train" in out


def test_status_says_a_variant_changed_in_the_file_since_it_was_queued(write_experiment, capsys):
    """A knob edited in the file while `run` trains (or after): `status` said nothing of it, and
    once the run had ended its `next:` gave `ablate run FILE`, which that change makes refuse.
    It now names the changed variant, stored → file, with the `--rerun` that trains it as the
    file says, and gives no `next:` that would be refused; `--json` has it under `changed`."""
    import json

    from ablation import records

    path = write_experiment(baseline=FAST, variants="lr = { learning_rate = 2e-3 }\n")
    spec = load_spec(path, need_data=False)
    study = open_study(spec)
    # As a run queues them; the baseline is left for a later run (so something has no result)
    study.enqueue_trial({}, user_attrs={records.VARIANT: "baseline_lr", records.SEED: 42,
                                        records.KEY: "baseline_lr-s42",
                                        records.OVERRIDES: {"learning_rate": 2e-3}})
    path.write_text(path.read_text().replace("learning_rate = 2e-3 }", "learning_rate = 5e-3 }"))
    assert cli.main(["status", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == (
        f"changed in {path.name} since it was queued: baseline_lr (learning_rate=0.002 → "
        f"learning_rate=0.005): its queued trials would train and report what they were queued "
        f"with, and `ablate run {path}` refuses the file as it is; `ablate run {path} --rerun "
        f"baseline_lr` trains it instead as the file says (the old attempts kept as superseded)")
    assert not any(line.startswith("next:") for line in lines)
    assert cli.main(["run", str(path), "--dry-run"]) == 2  # the refusal status tells of
    capsys.readouterr()
    assert cli.main(["status", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["changed"] == {"baseline_lr": {"state": "queued", "stored": "learning_rate=0.002",
                                                  "file": "learning_rate=0.005"}}
    assert summary["next"] is None


def test_rerun_of_a_variant_queued_with_other_changes_trains_the_file_s(write_experiment,
                                                                        monkeypatch, capsys):
    """A knob edited while its variant waited in the queue (a run stopped with it queued): `run`
    refuses the file and says `--rerun` trains it with the new changes, but `--rerun` trained the
    queued attempt, with the old ones, and the next run refused again. The queued attempt is now
    failed and superseded, and the file's recipe is queued and trained in its place."""
    from conftest import queue_by_an_interrupted_run

    from ablation import records

    path = write_experiment(baseline=FAST, variants="lr = { learning_rate = 2e-3 }\n")
    queue_by_an_interrupted_run(monkeypatch, path, [])
    path.write_text(path.read_text().replace("learning_rate = 2e-3 }", "learning_rate = 5e-3 }"))
    assert cli.main(["run", str(path)]) == 2  # refused, pointing to the --rerun
    assert f"`ablate run {path} --rerun baseline_lr` trains it again" in capsys.readouterr().err
    assert cli.main(["run", str(path), "--rerun", "baseline_lr", "--dry-run"]) == 0
    assert ("the 1 queued trial(s) with other changes than the file's of the variants run again "
            "would be kept as superseded") in capsys.readouterr().out
    assert cli.main(["run", str(path), "--rerun", "baseline_lr"]) == 0
    stored = records.load_records(open_study(load_spec(path), create=False))
    trained = [(r.overrides, r.state, r.superseded) for r in stored if r.variant == "baseline_lr"]
    assert trained == [({"learning_rate": 2e-3}, "FAIL", True),
                       ({"learning_rate": 5e-3}, "COMPLETE", False)]
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 0  # the file's recipe is what the study holds now


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_status_of_a_changed_variant_that_trains_now_says_to_rerun_it_once_done(write_experiment,
                                                                                capsys, tmp_path,
                                                                                storage):
    """While a live process trains the changed variant, `--rerun` of it is refused: `status`
    says to run it once its trials are done, not at once. A journal storage has no heartbeats:
    `--rerun` takes the running trial as abandoned and goes on at once, as status then says."""
    from ablation import records

    path = write_experiment(baseline=FAST, variants="lr = { learning_rate = 2e-3 }\n")
    if storage == "journal":
        text = path.read_text()
        path.write_text(text.replace("[experiment]\n", "[experiment]\nstorage = "
                                     f'"journal:///{tmp_path}/study.journal"\n', 1))
    study = open_study(load_spec(path, need_data=False))
    running = study.ask()  # claimed by a live process: this test's
    for key, value in {records.VARIANT: "baseline_lr", records.SEED: 42,
                       records.KEY: "baseline_lr-s42", records.OVERRIDES: {"learning_rate": 2e-3},
                       records.WORKER: records.this_worker()}.items():
        running.set_user_attr(key, value)
    path.write_text(path.read_text().replace("learning_rate = 2e-3 }", "learning_rate = 5e-3 }"))
    assert cli.main(["status", str(path)]) == 0
    way = (f"once they are done, `ablate run {path} --rerun baseline_lr` trains it again"
           if storage == "sqlite" else
           f"`ablate run {path} --rerun baseline_lr` takes them as abandoned (this storage has no "
           "heartbeats to tell a live process from a dead one) and trains it instead")
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"changed in {path.name} since it was queued: baseline_lr (learning_rate=0.002 → "
        f"learning_rate=0.005): its trials train and report what they were queued with, and "
        f"`ablate run {path}` refuses the file as it is; {way} as the file says (the old attempts "
        "kept as superseded)")


def test_status_compares_a_variant_with_the_sets_of_the_run_that_queued_it(write_experiment,
                                                                             capsys):
    """A study run with `--set variants.lr.learning_rate=5e-3`: `status FILE` (no --set) said
    the variant had changed in the file since it was queued (0.005 → 0.002), that `ablate run
    FILE --set ...` refused the file, and gave no `next:`, though that run (the one status
    prints) trains it as queued. status now compares with the run's --sets, as run does."""
    from ablation import records

    path = write_experiment(baseline=FAST, variants="lr = { learning_rate = 2e-3 }\n")
    sets = ["variants.lr.learning_rate=5e-3"]
    study = open_study(load_spec(path, sets, need_data=False))
    study.set_user_attr(records.RUN_SETS, sets)
    study.enqueue_trial({}, user_attrs={records.VARIANT: "baseline_lr", records.SEED: 42,
                                        records.KEY: "baseline_lr-s42",
                                        records.OVERRIDES: {"learning_rate": 5e-3}})
    assert cli.main(["status", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("changed in") for line in lines)
    assert f"next: `ablate run {path} --set {sets[0]}` trains the 2 without a result" in lines
    assert cli.main(["run", str(path), "--dry-run", "--set", sets[0]]) == 0  # as status says
    capsys.readouterr()
    # edited since, with the run's --set too: still said
    path.write_text(path.read_text().replace("lr = { learning_rate = 2e-3 }",
                                             "lr = { learning_rate = 2e-3, batch_size = 8 }"))
    assert cli.main(["status", str(path)]) == 0
    assert "changed in tiny.toml since it was queued: baseline_lr" in capsys.readouterr().out


def test_a_file_with_relative_data_and_model_paths_run_from_another_folder_points_at_its_study(
        write_experiment, tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, capsys):
    """Where the file's dataset and model are relative paths too (`dataset = "data"` beside it),
    from another folder they name nothing, so its study in the file's folder was taken for
    another's: `status` and `report` said "run it first", which trains every trial again."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    shutil.copytree(tiny_data_dir, project / "data")
    shutil.copytree(tiny_model_dir, project / "model")
    elsewhere.mkdir()
    path = write_experiment(baseline=FAST)
    moved = project / "bs.toml"
    moved.write_text("\n".join(
        'dataset = "data"' if line.startswith("dataset =") else
        'name = "model"' if line.startswith("name =") and "model" in line else line
        for line in path.read_text().splitlines() if not line.startswith("output_dir =")) + "\n")
    monkeypatch.chdir(project)
    assert cli.main(["run", "bs.toml"]) == 0
    monkeypatch.chdir(elsewhere)
    for command in ("status", "report"):
        capsys.readouterr()
        assert cli.main([command, "../project/bs.toml"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and (
            f"yet, but {project / 'reports' / 'tiny'} holds study 'tiny' of this file, made by a "
            f"run in {project} ") in err, err


def test_predict_and_evaluate_of_a_file_run_from_another_folder_point_at_its_study(
        write_experiment, tmp_path, monkeypatch, capsys):
    """`ablate predict ../project/bs.toml` from another folder said "no study yet; run it first"
    (which trains every trial again), where status and report name the study beside the file."""
    project, elsewhere = _run_in_project_then_elsewhere(write_experiment, tmp_path, monkeypatch)
    for command in (["predict", "../project/bs.toml", "great fun"], ["evaluate", "../project/bs.toml"]):
        capsys.readouterr()
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and (
            f"yet, but {project / 'reports' / 'tiny'} holds study 'tiny' of this file, made by a "
            f"run in {project} ") in err, err
    assert not (elsewhere / "reports").exists()


def test_a_file_run_from_a_third_folder_says_where_status_looked_and_how_to_point_at_it(
        write_experiment, tmp_path, monkeypatch, capsys):
    """project/bs.toml run from third/ makes its study in third/reports/tiny (the default
    output_dir and storage are relative to the working folder): status, report, predict and
    evaluate run beside the file said "run it first" (which trains every trial again), though
    nothing there could know of third/. The line says why it looked where it did, and the
    --set that points at such a study."""
    project, third = _project_and(write_experiment, tmp_path, "third")
    monkeypatch.chdir(third)
    assert cli.main(["run", "../project/bs.toml"]) == 0
    assert (third / "reports" / "tiny" / "study.db").is_file()
    monkeypatch.chdir(project)
    for command in (["status"], ["report"], ["predict", "bs.toml", "great fun"], ["evaluate"]):
        capsys.readouterr()
        assert cli.main([command[0], "bs.toml", *command[2:]]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"ablate: error: no study 'tiny' in sqlite:///{project}/reports/tiny/study.db yet; run "
            "`ablate run bs.toml` first — or, if a run in another folder made it: that storage is "
            "study.db in output_dir 'reports/tiny' (the default), a relative path read from the "
            f"folder ablate runs in (here {project}), so its study is in the folder that run ran "
            "in (FOLDER): run this command there, or point at it with "
            "--set 'experiment.output_dir=FOLDER/reports/tiny'\n"), command
    assert not (project / "reports").exists()
    # the --set it names finds the study
    assert cli.main(["status", "bs.toml", "--set", f"experiment.output_dir={third}/reports/tiny"]) == 0
    assert "baseline-s42" in capsys.readouterr().out

    # A relative storage of the file's own: that --set, and output_dir's where it is relative too.
    capsys.readouterr()
    assert cli.main(["status", "bs.toml", "--set", 'experiment.storage="sqlite:///./db/bs.db"']) == 2
    assert capsys.readouterr().err.rstrip().endswith(
        "that storage, 'sqlite:///./db/bs.db', is a relative path read from the folder ablate "
        f"runs in (here {project}), so its study is in the folder that run ran in (FOLDER): run "
        "this command there, or point at it with --set 'experiment.storage=sqlite:///FOLDER/db/bs.db' "
        "--set 'experiment.output_dir=FOLDER/reports/tiny'")
    # A storage that is the same from every folder: run it first, nothing more.
    assert cli.main(["status", "bs.toml", "--set", f"experiment.output_dir={tmp_path}/new"]) == 2
    assert capsys.readouterr().err.rstrip().endswith(
        f"yet; run `ablate run bs.toml --set experiment.output_dir={tmp_path}/new` first")


def test_the_name_a_renamed_file_is_told_to_set_is_written_as_typed(
        write_experiment, tmp_path, monkeypatch):
    """`set [experiment] name = "caf\\u00e9"`: the name to paste was JSON's ASCII escape of a
    non-ASCII study name, valid TOML but not the name the user sees everywhere else."""
    import json

    from ablation.sweep import study_elsewhere

    monkeypatch.chdir(tmp_path)
    path = write_experiment()
    text = "\n".join(line for line in path.read_text().splitlines()
                     if not line.startswith(('name = "tiny"', "output_dir ="))) + "\n"
    first = tmp_path / "café.toml"
    first.write_text(text, encoding="utf-8")
    spec = load_spec(first)
    spec.output_dir.mkdir(parents=True)
    (spec.output_dir / "resolved.json").write_text(json.dumps(spec.to_dict()), encoding="utf-8")
    renamed = first.rename(tmp_path / "café_v2.toml")
    assert 'set [experiment] name = "café" to go on' in study_elsewhere(load_spec(renamed))
