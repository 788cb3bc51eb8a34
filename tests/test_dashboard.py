"""Dashboards, end to end: `ablate dashboard` serves a tiny study's SwanLab runs (checked through
its HTTP API and rendered in headless Chromium), and the study storage opens unchanged in the
`optuna` CLI and in `optuna-dashboard`.

Chromium is Debian's `chromium` package; without it the rendering test is skipped with the reason,
or fails where ABLATE_REQUIRE_CHROMIUM=1 (CI)."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import tiny_experiment, without_write_permission

from ablation import cli
from ablation.config import load_spec
from ablation.dashboard import check_dashboard_inputs

pytestmark = pytest.mark.dashboard

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["baseline", "baseline_bs32"]
RUNS = [f"{variant}-s42" for variant in VARIANTS]  # a SwanLab run is named by its trial
CHARTS = ["train/loss", "train/grad_norm", "eval/loss", "eval/macro_f1"]


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path,
               tiny_data_dir: Path) -> Path:
    """A tiny study, 2 variants × 1 seed, run with SwanLab in mode "local"."""
    folder = tmp_path_factory.mktemp("dash")
    path = tiny_experiment(
        folder, tiny_model_dir, tiny_data_dir, name="dash",
        tracking='backend = "swanlab"\nproject = "ablate-dash"\nmode = "local"',
        baseline="learning_rate = 1e-3\nbatch_size = 16\nepochs = 1\neval_steps = 4\nlogging_steps = 2\n")
    assert cli.main(["run", str(path)]) == 0
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                     os.environ.get("PYTHONPATH")]))}


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _wait_for_line(process: subprocess.Popen, prefix: str, timeout: float = 120) -> str:
    """The first stdout line starting with prefix (the process's output is otherwise dropped)."""
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and process.poll() is not None:
            raise AssertionError(f"exited with code {process.returncode} before printing {prefix!r}: "
                                 f"{process.stderr.read() if process.stderr else ''}")
    raise AssertionError(f"no {prefix!r} line within {timeout} s")


@contextlib.contextmanager
def _ablate_dashboard(path: Path, port: int | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """`ablate dashboard FILE --port P --no-browser` as a subprocess: (process, printed URL)."""
    port = port or _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ablation", "dashboard", str(path), "--port", str(port), "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        line = _wait_for_line(process, "dashboard: ")
        assert line == f"dashboard: http://127.0.0.1:{port}"
        yield process, line.removeprefix("dashboard: ")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _experiments(url: str) -> dict[str, int]:
    """Run name → experiment id, from the SwanLab dashboard's API."""
    project = _get_json(f"{url}/api/v1/project")["data"]
    return {e["name"]: e["id"] for e in project["experiments"]}


def test_dashboard_api_has_every_trial_with_its_metrics_then_ctrl_c_stops_it(study_file):
    import psutil  # a dependency of swanboard, which the dashboard needs

    with _ablate_dashboard(study_file) as (process, url):
        project = _get_json(f"{url}/api/v1/project")["data"]
        assert project["name"] == "ablate-dash"
        assert {e["name"]: e["status"] for e in project["experiments"]} == dict.fromkeys(RUNS, 1)
        for name, number in _experiments(url).items():
            charts = {c["name"] for c in _get_json(f"{url}/api/v1/experiment/{number}/chart")["data"]
                      ["charts"]}
            expected = set(CHARTS) | {"test/macro_f1", "validation/macro_f1", "train/learning_rate"}
            assert expected <= charts, name
            summary = {s["key"]: s["value"] for s in
                       _get_json(f"{url}/api/v1/experiment/{number}/summary")["data"]["summaries"]}
            assert 0 <= summary["eval/macro_f1"] <= 1 and summary["train/loss"] > 0, name
            for key in ("train/loss", "eval/macro_f1"):
                points = _get_json(f"{url}/api/v1/experiment/{number}/tag/"
                                   f"{urllib.parse.quote(key, safe='')}")["data"]["list"]
                assert len(points) >= 2, (name, key)  # a curve, not a point
        children = psutil.Process(process.pid).children(recursive=True)
        assert children, "ablate dashboard should run `swanlab watch` as a child process"

        process.send_signal(signal.SIGINT)  # Ctrl+C
        assert process.wait(timeout=30) == 0
        assert "dashboard stopped" in process.stderr.read()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, "the swanlab watch server outlived ablate dashboard"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/api/v1/project", timeout=5)


def test_the_same_port_serves_again_right_after_a_stop(study_file):
    """The stopped dashboard's connections linger in TIME-WAIT for a minute: not "in use"."""
    port = _free_port()
    with _ablate_dashboard(study_file, port) as (process, _):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as browser:
            browser.sendall(b"GET /api/v1/project HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Connection: close\r\n\r\n")
            while browser.recv(65536):  # until the server closes: its side stays in TIME-WAIT
                pass
    assert process.returncode == 0
    assert _time_wait_on(port), "the test needs a connection in TIME-WAIT on the port"
    with _ablate_dashboard(study_file, port) as (_, url):
        assert set(_experiments(url)) == set(RUNS)


def _time_wait_on(port: int) -> bool:
    """A TCP connection of the port in TIME-WAIT (Linux's /proc/net/tcp: state 06)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "06" for row in rows)


def test_the_server_stops_when_ablate_dashboard_is_killed(study_file):
    """kill -9 runs no handler: the kernel sends swanlab watch SIGTERM (PR_SET_PDEATHSIG)."""
    import psutil

    with _ablate_dashboard(study_file) as (process, url):
        children = psutil.Process(process.pid).children(recursive=True)
        assert children
        process.kill()
        process.wait(timeout=30)
        gone, alive = psutil.wait_procs(children, timeout=15)
        for child in alive:  # not left serving after this test
            child.kill()
        assert not alive, "the swanlab watch server outlived a killed ablate dashboard"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/api/v1/project", timeout=5)


def test_off_linux_the_server_stops_when_ablate_dashboard_is_killed(tmp_path):
    """macOS has no parent-death signal: a killed `ablate dashboard` left its server serving
    there. The server watches ablate itself (simulated: no PR_SET_PDEATHSIG, sys.platform
    darwin in the server, which sleeps in place of serving)."""
    import psutil

    start = ("import sys, time\n"
             "from ablation import dashboard\n"
             "dashboard.stop_with_parent = lambda: None\n"
             "serve = 'runpy.run_module(\"swanlab\"'\n"
             "assert serve in dashboard._WATCH\n"
             "dashboard._WATCH = ('import psutil, sys\\nsys.platform = \"darwin\"\\n'\n"
             "                    + dashboard._WATCH.replace(serve, 'print(\"serving\", flush=True); '\n"
             "                                               'import time; time.sleep(60)#'))\n"
             "server = dashboard._Server([])\n"
             "while 'serving' not in server._lines:\n"
             "    time.sleep(0.1)\n"
             "print(server.process.pid, flush=True)\n"
             "time.sleep(60)\n")
    ablate = subprocess.Popen([sys.executable, "-c", start], stdout=subprocess.PIPE, text=True)
    try:
        server = psutil.Process(int(ablate.stdout.readline()))
        ablate.kill()
        ablate.wait()
        gone, alive = psutil.wait_procs([server], timeout=15)
        assert not alive, "the server outlived a killed ablate dashboard"
    finally:
        ablate.kill()


def test_a_port_in_time_wait_is_free_and_a_listening_one_is_not():
    """As the server binds (SO_REUSEADDR): a closed connection's TIME-WAIT does not hold the port,
    a listening socket does, on 127.0.0.1 and on 0.0.0.0."""
    from ablation.dashboard import port_is_free

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not port_is_free(port)
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: it is the one left in TIME-WAIT
    client.close()
    assert _time_wait_on(port)
    assert port_is_free(port)
    with socket.socket() as anywhere:
        anywhere.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        anywhere.bind(("0.0.0.0", port))
        anywhere.listen()
        assert not port_is_free(port)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    missing = pytest.fail if os.environ.get("ABLATE_REQUIRE_CHROMIUM") == "1" else pytest.skip
    missing("needs headless Chromium (Debian: `apt-get install chromium`)")
    raise AssertionError  # unreachable


def _render(chromium: str, url: str, profile: Path, wanted: list[str]) -> str:
    """The DOM of url after its scripts ran, retried with more (virtual) time until every wanted
    string appears (the single-page app fetches its data after load)."""
    dom = ""
    for budget in (10_000, 20_000, 40_000):
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,1000",
             f"--virtual-time-budget={budget}", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
        dom = html.unescape(result.stdout)
        if all(text in dom for text in wanted):
            return dom
    raise AssertionError(f"{url} never showed {[t for t in wanted if t not in dom]}; "
                         f"chromium said: {result.stderr[-1000:]}")


def _chart_sections(dom: str) -> dict[str, str]:
    """Chart title → the HTML of its chart section (SwanLab: one <section> per chart)."""
    sections = re.findall(r"<section[^>]*chart-container.*?</section>", dom, flags=re.S)
    titled = {}
    for section in sections:
        title = re.search(r'<p class="[^"]*font-semibold[^"]*">([^<]+)</p>', section)
        if title:
            titled[title.group(1).strip()] = section
    return titled


def _drawn_canvas(section: str) -> bool:
    """A canvas with a real size (the chart library sized and drew it)."""
    sizes = re.findall(r'<canvas[^>]*width="(\d+)"[^>]*height="(\d+)"', section)
    return any(int(w) > 50 and int(h) > 50 for w, h in sizes)


def test_dashboard_renders_every_trial_and_its_charts_in_chromium(study_file, tmp_path):
    chromium = _chromium()
    profile = tmp_path / "chromium-profile"
    with _ablate_dashboard(study_file) as (_, url):
        # The project page lists every trial's run.
        home = _render(chromium, f"{url}/", profile, RUNS)
        assert "ablate-dash" in home

        # Each run's chart page: its name, and a drawn chart for each metric.
        for name, number in _experiments(url).items():
            dom = _render(chromium, f"{url}/experiment/{number}/chart", profile, [name, *CHARTS])
            charts = _chart_sections(dom)
            for key in CHARTS:
                assert key in charts, f"{name}: no {key} chart; charts: {sorted(charts)}"
                assert _drawn_canvas(charts[key]), f"{name}: {key} chart has no drawn canvas"

        # The comparison page overlays the runs: one chart per metric.
        dom = _render(chromium, f"{url}/charts", profile, CHARTS)
        charts = _chart_sections(dom)
        assert all(_drawn_canvas(charts[key]) for key in CHARTS), sorted(charts)
        screenshot = tmp_path / "charts.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        f"--user-data-dir={profile}", "--window-size=1400,1000",
                        "--virtual-time-budget=10000", f"--screenshot={screenshot}", f"{url}/charts"],
                       capture_output=True, timeout=120)
        assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one


def _bad(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert cli.main(["dashboard", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ablate: error: ") and err.count("\n") == 1, err
    return err


def test_dashboard_bad_inputs_are_one_line_with_exit_code_2(study_file, tmp_path, capsys):
    file = str(study_file)
    err = _bad(capsys, file, "--set", 'tracking.backend="none"')
    assert 'backend = "none"' in err and 'mode = "local"' in err
    err = _bad(capsys, file, "--set", 'tracking.mode="online"')
    assert "https://swanlab.cn" in err and 'mode = "local"' in err
    assert err.startswith("ablate: error: --set 'tracking.mode=\"online\"': ")  # not the file
    err = _bad(capsys, file, "--set", 'tracking.mode="offline"')
    assert "swanlab sync" in err and 'mode = "local"' in err
    empty = json.dumps(str(tmp_path / "never-run"))
    err = _bad(capsys, file, "--set", f"experiment.output_dir={empty}")
    assert "no SwanLab runs" in err and "run the study first" in err
    for port in ("0", "65536", "http"):
        assert "port number" in _bad(capsys, file, "--port", port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert f"port {port} is in use" in _bad(capsys, file, "--port", str(port), "--no-browser")


# ---- the storage in the optuna CLI and optuna-dashboard ----

def _script(name: str) -> str:
    """A console script installed beside this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not installed (make setup installs it)")
    return found


def test_optuna_cli_reads_the_study_storage(study_file):
    storage = load_spec(study_file).experiment.storage

    def optuna(*args: str) -> object:
        result = subprocess.run([_script("optuna"), *args, "--storage", storage, "-f", "json"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    studies = optuna("studies")
    assert [(s["name"], s["n_trials"], s["direction"]) for s in studies] == [
        ("dash", 2, ["MAXIMIZE"])]
    trials = optuna("trials", "--study-name", "dash")
    assert [(t["user_attrs"]["variant"], t["state"]) for t in trials] == [
        (variant, "COMPLETE") for variant in VARIANTS]
    best = optuna("best-trial", "--study-name", "dash")
    assert best["value"] == max(t["value"] for t in trials)
    assert best["user_attrs"]["variant"] in VARIANTS


def test_optuna_dashboard_serves_the_study(study_file, tmp_path):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard comes with the [dashboard] extra")
    storage = load_spec(study_file).experiment.storage
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([_script("optuna-dashboard"), storage, "--host", "127.0.0.1",
                                "--port", str(port), "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = _get_json(f"{url}/api/studies")["study_summaries"]
                break
            except OSError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "optuna-dashboard did not answer in 60 s"
                time.sleep(0.3)
        assert [(s["study_name"], s["directions"]) for s in studies] == [("dash", ["maximize"])]
        study = _get_json(f"{url}/api/studies/{studies[0]['study_id']}")
        assert [t["state"] for t in study["trials"]] == ["Complete", "Complete"]
        variants = [a["value"] for t in study["trials"] for a in t["user_attrs"] if a["key"] == "variant"]
        assert variants == VARIANTS

        chromium = shutil.which("chromium")
        if chromium:  # the app itself shows the study and its trials
            study_id = studies[0]["study_id"]
            _render(chromium, f"{url}/dashboard/studies/{study_id}/trials", tmp_path / "profile",
                    [f"dash (id={study_id})", "2 Trials", "Trial 0", "Trial 1", "baseline-s42"])
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_swanlog_on_a_read_only_file_system_is_one_line_saying_so(write_experiment, tmp_path, capsys):
    """The study's disk mounted read-only (a backup, a finished study's disk): SwanLab's server
    opens its runs database for writing, and `ablate dashboard` ended in swanboard's traceback
    flattened onto one line, `unable to open database file`. It is one line naming the folder, the
    read-only file system and how to serve a copy. A folder only this user cannot write in (chmod)
    is not refused by it."""
    path = write_experiment(tracking='backend = "swanlab"\nproject = "ro"\nmode = "local"')
    out = load_spec(path).output_dir
    (out / "swanlog").mkdir(parents=True)
    (out / "swanlog" / "runs.swanlab").write_bytes(b"")
    mode = (out / "swanlog").stat().st_mode
    (out / "swanlog").chmod(mode & ~0o222)
    try:
        assert check_dashboard_inputs(load_spec(path), _free_port()) == out / "swanlog"
    finally:
        (out / "swanlog").chmod(mode)
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "--bind", str(out), str(mounted)], capture_output=True).returncode != 0:
        pytest.skip("a read-only mount needs root and `mount --bind` (a container may refuse it)")
    try:
        assert subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)]).returncode == 0
        err = _bad(capsys, str(path), "--set", f"experiment.output_dir={json.dumps(str(mounted))}",
                   "--port", "5193", "--no-browser")
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    copy = Path(tempfile.gettempdir()) / "swanlog-tiny"
    assert err == (f"ablate: error: {mounted / 'swanlog'} is on a read-only file system, where the "
                   "SwanLab dashboard cannot open its runs database (it writes to it): copy the "
                   f"folder somewhere writable and serve the copy: `cp -r {mounted / 'swanlog'} "
                   f"{copy} && swanlab watch {copy} -h 127.0.0.1 -p 5193`\n"), err


def test_a_swanlog_this_user_cannot_write_in_is_one_line_saying_so(write_experiment):
    """`chmod -R a-w` on the study (a colleague's on a shared machine): SwanLab's server, started,
    cannot write to its runs database and `ablate dashboard` ended in swanboard's traceback
    flattened onto one line, `attempt to write a readonly database`. It is one line naming the
    database and how to serve a copy, exit 2."""
    prefix = without_write_permission()
    path = write_experiment(tracking='backend = "swanlab"\nproject = "ro"\nmode = "local"')
    folder = load_spec(path).output_dir / "swanlog"
    folder.mkdir(parents=True)
    (folder / "runs.swanlab").write_bytes(b"")
    modes = {p: p.stat().st_mode for p in (folder, folder / "runs.swanlab")}
    port = _free_port()
    try:
        for entry, mode in modes.items():
            entry.chmod(mode & ~0o222)
        result = subprocess.run([*prefix, sys.executable, "-m", "ablation", "dashboard", str(path),
                                 "--port", str(port), "--no-browser"], capture_output=True,
                                text=True, env=_env(), timeout=120)
    finally:
        for entry, mode in modes.items():
            entry.chmod(mode)
    copy = Path(tempfile.gettempdir()) / "swanlog-tiny"
    assert result.returncode == 2 and result.stderr == (
        f"ablate: error: the SwanLab dashboard cannot write to its runs database "
        f"{folder / 'runs.swanlab'} (this user cannot write in {folder} or that file): copy the "
        f"folder somewhere writable and serve the copy: `cp -r {folder} {copy} && swanlab watch "
        f"{copy} -h 127.0.0.1 -p {port}`\n"), result.stderr
