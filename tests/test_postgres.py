"""Many workers on one study in a real PostgreSQL server (scripts/postgres-test-server.sh)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import uuid

import pytest

from ablation import cli
from ablation.config import load_spec
from ablation.queue import open_study


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("ABLATE_TEST_POSTGRES")
    if not url:
        reason = ("needs a PostgreSQL server: "
                  "export ABLATE_TEST_POSTGRES=$(bash scripts/postgres-test-server.sh)")
        if os.environ.get("ABLATE_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    pytest.importorskip("psycopg", reason="pip install psycopg[binary] (the dev extra has it)")
    return url


def _sets(url: str) -> list[str]:
    # A fresh study name per test: the server outlives the test session.
    name = f"pg_{uuid.uuid4().hex[:10]}"
    return ["--set", f'experiment.storage="{url}"', "--set", f'experiment.name="{name}"',
            "--set", "experiment.seeds=[1, 2]"]


def _complete(path, sets) -> tuple[int, collections.Counter]:
    trials = open_study(load_spec(path, sets[1::2]), create=False).get_trials()
    return len(trials), collections.Counter(
        t.user_attrs["key"] for t in trials if t.state.name == "COMPLETE")


VARIANTS = "bs32 = { batch_size = 32 }\nlr = { learning_rate = 5e-3 }\nwd = { weight_decay = 0.01 }\n"


def test_four_workers_on_postgres_run_every_trial_exactly_once(write_experiment, postgres_url):
    path = write_experiment(variants=VARIANTS)
    sets = _sets(postgres_url)
    assert cli.main(["run", str(path), "--workers", "4", *sets]) == 0
    total, complete = _complete(path, sets)
    assert total == 8 and len(complete) == 8 and set(complete.values()) == {1}


def test_a_worker_from_another_machine_joins_the_study(write_experiment, postgres_url):
    """`ablate worker FILE --storage URL` beside `ablate run`: they share the queue."""
    path = write_experiment(variants=VARIANTS)
    sets = _sets(postgres_url)
    joined = subprocess.Popen([sys.executable, "-m", "ablation", "worker", str(path), *sets],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert cli.main(["run", str(path), *sets]) == 0
    output, _ = joined.communicate(timeout=300)
    total, complete = _complete(path, sets)
    assert total == 8 and set(complete.values()) == {1} and len(complete) == 8
    assert joined.returncode == 0, output


def test_runs_on_two_machines_take_turns_at_planning(write_experiment, postgres_url, tmp_path):
    """Two machines share no lock file (each has its own output folder): PostgreSQL's advisory
    lock on the study makes their `ablate run`s take turns at queueing, as on one machine."""
    import threading

    from ablation import queue

    path = write_experiment()
    sets = _sets(postgres_url)[1::2]
    machines = [load_spec(path, [*sets, f'experiment.output_dir="{tmp_path / name}"'])
                for name in ("a", "b")]
    other_study = load_spec(path, [*sets[:1], 'experiment.name="pg_other"',
                                   f'experiment.output_dir="{tmp_path / "c"}"'])
    events: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def first() -> None:
        with queue.planning_lock(machines[0], events.append):
            events.append("a plans")
            holding.set()
            release.wait(30)
            events.append("a done")

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(30)
    with queue.planning_lock(other_study, events.append):  # another study: no wait
        events.append("other plans")
    threading.Timer(1.0, release.set).start()
    with queue.planning_lock(machines[1], events.append):
        events.append("b plans")
    thread.join(30)
    assert events == ["a plans", "other plans",
                      "waiting for another `ablate run` of this study to queue its trials",
                      "a done", "b plans"]


def test_the_password_of_the_storage_stays_out_of_the_output_and_the_report(
        write_experiment, postgres_url, capsys):
    """run, worker, status and report show the URL with `***` for its password (report.md is
    shared; terminal logs are kept); the test server trusts 127.0.0.1, so any password opens it."""
    import json
    import re

    url = re.sub(r"^([\w+]+://[^:/@]*)(:[^@]*)?@", r"\1:s3cret@", postgres_url, count=1)
    path = write_experiment(variants="")  # the URL in the file: a command to paste has no --set of it
    name = _sets(url)[3].split("=", 1)[1]
    path.write_text(path.read_text().replace('name = "tiny"', f'name = {name}\nstorage = "{url}"'),
                    encoding="utf-8")
    sets = ["--set", "experiment.seeds=[1, 2]"]
    spec = load_spec(path, sets[1::2])
    assert cli.main(["run", str(path), *sets]) == 0
    assert cli.main(["worker", str(path), *sets]) == 0
    assert cli.main(["status", str(path), *sets]) == 0
    assert cli.main(["status", str(path), "--json", *sets]) == 0
    assert cli.main(["report", str(path), "--format", "json", *sets]) == 0
    out, err = capsys.readouterr()
    assert ":***@" in out and "s3cret" not in out + err
    for name in ("report.md", "report.json", "resolved.json"):
        assert "s3cret" not in (spec.output_dir / name).read_text(encoding="utf-8")
    assert json.loads((spec.output_dir / "report.json").read_text())["storage"].count(":***@") == 1


def test_a_trial_outlives_its_dropped_database_connections(write_experiment, postgres_url,
                                                           monkeypatch):
    """A server restart, or a firewall closing connections idle for the length of a trial, left
    the run's pooled connections dead: its trial's result failed to store, with a traceback,
    and the trial stayed RUNNING. Connections are checked before use and replaced."""
    import psycopg

    from ablation import train

    tag = f"ablate_drop_{uuid.uuid4().hex[:8]}"  # this test's connections, not other tests'
    path = write_experiment(variants="")
    sets = _sets(f"{postgres_url}{'&' if '?' in postgres_url else '?'}application_name={tag}")
    real = train.train_with_backoff

    def after_dropping(*args, **kwargs):
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            dropped = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE application_name = %s", (tag,)).fetchone()[0]
        assert dropped >= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_with_backoff", after_dropping)
    assert cli.main(["run", str(path), *sets]) == 0
    total, complete = _complete(path, sets)
    assert total == 2 and complete == {"baseline-s1": 1, "baseline-s2": 1}


def test_a_database_user_without_privileges_is_named_in_one_line(write_experiment, postgres_url,
                                                                  capsys):
    """A role that may log in but not read Optuna's tables (PostgreSQL 15 grants nothing on the
    public schema to a new role) was refused with Optuna's words, `An exception is raised during
    the commit ... e.g. exceeding max length`, which hide the cause: the server's own line."""
    import re

    import optuna
    import psycopg

    optuna.storages.RDBStorage(postgres_url)  # the tables, made by their owner
    role = f"ablate_nopriv_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'x'")
    try:
        url = re.sub(r"^([\w+]+://)[^@/]*@", rf"\g<1>{role}:x@", postgres_url, count=1)
        path = write_experiment(variants="")
        for command in ("status", "run"):
            assert cli.main([command, str(path), "--set", f'experiment.storage="{url}"']) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert "permission denied for table" in err and "max length" not in err, err
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP ROLE {role}")
