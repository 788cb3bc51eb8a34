"""Environment variables a user's shell may already hold: they do not change how a trial trains,
nor stop its tracking, and the process's environment is the user's again after a call."""

from __future__ import annotations

import os

import pytest

from ablation import cli


def test_accelerate_variables_in_the_shell_do_not_change_how_trials_train(
        write_experiment, watch_train, monkeypatch: pytest.MonkeyPatch, capsys):
    """ACCELERATE_MIXED_PRECISION=bf16 (left by `accelerate config` or a launch script) trained
    every trial in bf16 autocast where the recipe said fp32, and the report said fp32;
    ACCELERATE_USE_DEEPSPEED failed every trial."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    arguments = watch_train("training_arguments")
    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    assert [args.mixed_precision for args in arguments] == ["no"]
    assert "note: the environment sets ACCELERATE_MIXED_PRECISION=bf16, ACCELERATE_USE_DEEPSPEED=true:" \
        in capsys.readouterr().out
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "bf16"  # the caller's own again
    assert os.environ["ACCELERATE_USE_DEEPSPEED"] == "true"


def test_swanlab_variables_in_the_shell_leave_every_trial_tracked_in_a_run_of_its_own(
        tmp_path, monkeypatch: pytest.MonkeyPatch):
    """SWANLAB_PROJECT (SwanLab 0.10.3 cannot parse it) or SWANLAB_RUN_DIR made every trial run
    untracked; SWANLAB_RUN_ID gave every trial's run one id. The file's project is the runs'."""
    import sqlite3

    from ablation.config import TrackingSpec
    from ablation.tracking import SwanLabTracker

    shell = {"SWANLAB_PROJECT": "other", "SWANLAB_RUN_DIR": str(tmp_path / "elsewhere"),
             "SWANLAB_RUN_ID": "abcdefghijklmnopqrstu"}
    for name, value in shell.items():
        monkeypatch.setenv(name, value)
    tracker = SwanLabTracker(TrackingSpec(project="mine", mode="local"), tmp_path / "out")
    folders = []
    for key in ("baseline-s42", "baseline_bs32-s42"):
        tracker.start(key, "study", {"seed": 42})
        assert tracker.mode == "local"
        folders += tracker.local_run_dirs
        tracker.log({"train/loss": 1.0}, step=1)
        tracker.finish()
    assert len(set(folders)) == 2 and all("abcdefghijklmnopqrstu" not in f for f in folders)
    assert not (tmp_path / "elsewhere").exists()
    with sqlite3.connect(tmp_path / "out" / "swanlog" / "runs.swanlab") as db:
        assert [name for (name,) in db.execute("select name from project")] == ["mine"]
    assert {name: os.environ[name] for name in shell} == shell  # the caller's own again


@pytest.mark.parametrize("users", [None, "/home/me/my-swanlog"])
def test_a_local_run_gives_the_callers_swanlab_log_dir_back_when_it_ends(
        tmp_path, monkeypatch: pytest.MonkeyPatch, users):
    """SwanLab's local mode set SWANLAB_LOG_DIR to the study's swanlog folder and left it: a
    notebook's own swanlab.init() after run_study logged into the study's folder."""
    import sqlite3

    from ablation.config import TrackingSpec
    from ablation.tracking import SwanLabTracker

    if users is None:
        monkeypatch.delenv("SWANLAB_LOG_DIR", raising=False)
    else:
        monkeypatch.setenv("SWANLAB_LOG_DIR", users)
    tracker = SwanLabTracker(TrackingSpec(project="mine", mode="local"), tmp_path / "out")
    for key in ("baseline-s42", "baseline_bs32-s42"):
        tracker.start(key, "study", {"seed": 42})
        tracker.log({"train/loss": 1.0}, step=1)
        tracker.finish()
        assert os.environ.get("SWANLAB_LOG_DIR") == users
    with sqlite3.connect(tmp_path / "out" / "swanlog" / "runs.swanlab") as db:
        assert [name for (name,) in db.execute("select name from experiment")] == [
            "baseline-s42", "baseline_bs32-s42"]
        assert db.execute("select count(*) from tag").fetchone()[0] == 2  # train/loss of each


def test_a_users_transformers_verbosity_stands_through_a_call(monkeypatch: pytest.MonkeyPatch):
    """README: `TRANSFORMERS_VERBOSITY=info` (and `HF_HUB_DISABLE_PROGRESS_BARS=0`) show more, ablate
    leaving them as they are; run_study (and so `ablate run`) set transformers to errors only and
    its bars off regardless, and `TRANSFORMERS_VERBOSITY=info ablate run` showed nothing more."""
    import transformers

    from ablation.quiet import quiet_libraries

    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    try:
        transformers.logging.set_verbosity_info()
        transformers.utils.logging.enable_progress_bar()
        with quiet_libraries():
            assert transformers.logging.get_verbosity() == transformers.logging.INFO
            assert transformers.utils.logging.is_progress_bar_enabled()
        monkeypatch.delenv("TRANSFORMERS_VERBOSITY")
        monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
        with quiet_libraries():  # not set: quiet for the call, as before
            assert transformers.logging.get_verbosity() == transformers.logging.ERROR
            assert not transformers.utils.logging.is_progress_bar_enabled()
        # As the command leaves them in its process (its quiet defaults): quiet all the same,
        # though the caller's own setting is another
        monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        transformers.logging.set_verbosity_warning()
        with quiet_libraries():
            assert transformers.logging.get_verbosity() == transformers.logging.ERROR
            assert not transformers.utils.logging.is_progress_bar_enabled()
        assert transformers.logging.get_verbosity() == transformers.logging.WARNING
    finally:
        transformers.logging.set_verbosity(verbosity)
        (transformers.utils.logging.enable_progress_bar if bars
         else transformers.utils.logging.disable_progress_bar)()


@pytest.mark.parametrize("variables", [{"WORLD_SIZE": "2", "RANK": "0"}, {"LOCAL_RANK": "0"},
                                       {"OMPI_COMM_WORLD_SIZE": "4"}])
def test_a_distributed_launchers_variables_are_refused_before_anything_trains(
        write_experiment, monkeypatch: pytest.MonkeyPatch, capsys, variables):
    """WORLD_SIZE=2 (a Kubeflow PyTorchJob's pod, a shell inside torchrun or mpirun) made the
    first trial join a process group and wait for the other ranks forever, printing nothing."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    path = write_experiment(variants="")
    for command in ("validate", "run"):
        assert cli.main([command, str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0]
        named = next(name for name in variables if name != "RANK")
        assert err[0].startswith(f"ablate: error: the environment sets {named}={variables[named]}")
        assert "unset it" in err[0]
    assert not (path.parent / "reports" / "tiny" / "trials").exists()


def test_a_single_process_torchrun_is_not_refused(write_experiment, monkeypatch: pytest.MonkeyPatch):
    """Inside `torchrun --nproc-per-node=1` (LOCAL_RANK=0, WORLD_SIZE=1, MASTER_ADDR: a cluster's
    job template) trials train as outside it; any LOCAL_RANK was refused as a hang."""
    from ablation.preflight import check_launcher_environment

    for name, value in {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555"}.items():
        monkeypatch.setenv(name, value)
    check_launcher_environment()
    assert cli.main(["validate", str(write_experiment(variants=""))]) == 0


def test_a_worker_under_a_distributed_launcher_is_refused_before_it_claims_a_trial(
        write_experiment, monkeypatch: pytest.MonkeyPatch, capsys):
    """`ablate worker` in a Kubeflow PyTorchJob pod (WORLD_SIZE=2) claimed a queued trial of the
    shared study and failed it with the launcher line: a trial another worker would have trained
    was FAILED by this machine's environment. It is refused before any trial is claimed."""
    from conftest import queue_by_an_interrupted_run

    from ablation.config import load_spec
    from ablation.queue import open_study

    path = write_experiment(variants="")
    queue_by_an_interrupted_run(monkeypatch, path, [])
    capsys.readouterr()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["worker", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ablate: error: the environment sets WORLD_SIZE=2")
    study = open_study(load_spec(path), create=False)
    assert [t.state.name for t in study.get_trials()] == ["WAITING"]


def test_a_dotenv_file_with_swanlab_project_leaves_every_trial_tracked(
        tmp_path, monkeypatch: pytest.MonkeyPatch):
    """SwanLab's settings read the working folder's `.env` too: a project's .env holding
    SWANLAB_PROJECT left every trial untracked. Its other lines are still read."""
    import swanlab

    from ablation.config import TrackingSpec
    from ablation.tracking import SwanLabTracker

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWANLAB_WEB_HOST", raising=False)
    (tmp_path / ".env").write_text("SWANLAB_PROJECT=other\nexport SWANLAB_WEB_HOST='https://mine.example'\n")
    seen = []
    real_init = swanlab.init

    def init(*args, **kwargs):
        seen.append(os.environ.get("SWANLAB_WEB_HOST"))
        return real_init(*args, **kwargs)

    monkeypatch.setattr(swanlab, "init", init)
    tracker = SwanLabTracker(TrackingSpec(project="mine", mode="local"), tmp_path / "out")
    tracker.start("baseline-s42", "study", {"seed": 42})
    assert tracker.mode == "local"
    tracker.finish()
    assert seen == ["https://mine.example"]  # the file's other lines are read
    assert "SWANLAB_WEB_HOST" not in os.environ
    assert swanlab.Settings.model_config["env_file"] == ".env"


def test_variables_left_out_come_back_and_those_set_meanwhile_go(monkeypatch: pytest.MonkeyPatch):
    from ablation.environment import variables_left_out

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("ABLATE_UNRELATED", "kept")
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    with variables_left_out(lambda name: name.startswith("ACCELERATE_")) as saved:
        assert saved == {"ACCELERATE_MIXED_PRECISION": "bf16"}
        assert "ACCELERATE_MIXED_PRECISION" not in os.environ
        assert os.environ["ABLATE_UNRELATED"] == "kept"
        os.environ["ACCELERATE_USE_CPU"] = "true"  # a library's, set inside the block
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert "ACCELERATE_USE_CPU" not in os.environ
    assert os.environ["ABLATE_UNRELATED"] == "kept"
