"""Shared fixtures: a tiny random BERT with its own vocabulary, tiny labelled data, and a writer
for experiment files. Everything is built in the test session itself, so the suite needs no
network and no cache."""

from __future__ import annotations

import os
import random
import shutil
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = {
    "neg": ["awful", "bad", "sad", "terrible", "hate", "boring", "worst"],
    "neu": ["table", "monday", "paper", "street", "window", "train", "coffee"],
    "pos": ["great", "love", "happy", "good", "wonderful", "best", "fun"],
}
FILLER = ["the", "a", "this", "was", "is", "it", "so", "and", "today", "movie"]
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


@contextmanager
def seeded_init(seed: int = 0) -> Iterator[None]:
    """Random weights drawn inside are the same in every pytest process (torch seeds its global
    generator randomly at import), and the global generator is left as it was: a fixture's model,
    and so every score a test reads from it, no longer depends on the process or the tests run
    before it."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def make_texts(n: int, seed: int) -> pd.DataFrame:
    """Short sentences whose label is carried by one or two cue words (learnable in seconds)."""
    rng = random.Random(seed)
    names = list(WORDS)
    rows = []
    for _ in range(n):
        label = rng.randrange(len(names))
        cues = rng.sample(WORDS[names[label]], 2)
        words = rng.sample(FILLER, 4) + cues
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def one_error_line(call: Any, *args: Any) -> str:
    """The message of the AblateInputError that `call(*args)` raises, checked to be one line."""
    from ablation.errors import AblateInputError

    with pytest.raises(AblateInputError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def signal_self(number: int) -> None:
    """What Ctrl+C or kill does to this process: the handler runs in the main thread at once."""
    os.kill(os.getpid(), number)
    time.sleep(0.05)  # a sleep a signal interrupts: its handler has run when this returns


def queue_by_an_interrupted_run(monkeypatch: pytest.MonkeyPatch, path: Path,
                                 sets: list[str]) -> None:
    """`ablate run` stopped by Ctrl+C once it queued every trial: the trials wait for a worker."""
    import signal

    from ablation import cli
    from ablation.sweep import _runner as sweep

    with monkeypatch.context() as patch:
        patch.setattr(sweep, "work", lambda *args, **kwargs: signal_self(signal.SIGINT))
        assert cli.main(["run", str(path), *sets]) == 130


def processes_with(text: str) -> list[int]:
    """Pids of this machine's processes whose command line holds `text` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def without_write_permission() -> list[str]:
    """The command prefix that runs ablate as a user whom a folder's permissions bind: none for
    a user; root ignores them unless it gives up that capability (setpriv, util-linux)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: folder permissions cannot bind the tested process")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) and a WordPiece tokenizer, saved to disk."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER]
    vocab += [w for words in WORDS.values() for w in words]
    # transformers 5: the vocabulary is passed as a dict (vocab_file= is silently ignored)
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    with seeded_init():
        BertForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.csv (240 rows) and test.csv (60 rows), three classes."""
    folder = tmp_path_factory.mktemp("tiny-data")
    make_texts(240, seed=1).to_csv(folder / "train.csv", index=False)
    make_texts(60, seed=2).to_csv(folder / "test.csv", index=False)
    return folder


DEFAULT_BASELINE = textwrap.dedent("""\
    learning_rate = 1e-3
    batch_size = 16
    epochs = 2
    eval_steps = 5
    logging_steps = 2
    """)


def tiny_experiment(folder: Path, model_dir: Path, data_dir: Path, *, name: str = "tiny",
                    extra: str = "", variants: str | None = None, baseline: str | None = None,
                    tracking: str = 'backend = "none"', experiment: str = "") -> Path:
    """Write folder/<name>.toml for the tiny model and data (reports under folder/reports/<name>);
    `experiment` adds lines to [experiment], `extra` is appended TOML."""
    baseline = baseline if baseline is not None else DEFAULT_BASELINE
    variants = variants if variants is not None else 'bs32 = { batch_size = 32 }\n'
    text = textwrap.dedent(f"""\
        [experiment]
        name = "{name}"
        output_dir = "{folder / 'reports' / name}"
        """) + (experiment + "\n" if experiment else "") + textwrap.dedent(f"""\

        [data]
        dataset = "{data_dir}"
        max_eval_samples = 40

        [model]
        name = "{model_dir}"

        [tracking]
        {tracking}

        [baseline]
        """) + baseline + "\n[variants]\n" + variants + "\n" + extra
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def write_experiment(tmp_path: Path, tiny_model_dir: Path, tiny_data_dir: Path):
    """Write an experiment file for the tiny model and data in tmp_path (see tiny_experiment)."""

    def write(extra: str = "", name: str = "tiny", variants: str | None = None,
              baseline: str | None = None, tracking: str = 'backend = "none"') -> Path:
        return tiny_experiment(tmp_path, tiny_model_dir, tiny_data_dir, name=name, extra=extra,
                               variants=variants, baseline=baseline, tracking=tracking)

    return write


def stored_study(write_experiment: Any, trials: int, search: bool = False) -> Path:
    """A stored study of `trials` complete trials (a [search] one: the baseline and search
    trials), as benchmarks/report_scaling.py clones them, with curves and per-example predictions;
    made in the storage, nothing trained. Its file runs them with experiment.seeds [42, 43] ([42]
    for a search)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from ablation import records
    from ablation.config import load_spec
    from ablation.queue import open_study
    from ablation.variants import expand

    extra = ('[search]\nn_trials = 1000\nsampler = "random"\n[search.space]\n'
             "learning_rate = { low = 1e-5, high = 1e-2, log = true }\nbatch_size = [8, 16, 32]\n"
             if search else "")
    variants = "" if search else "".join(f"v{i} = {{ learning_rate = {i + 1}e-4 }}\n"
                                         for i in range(trials // 2 - 1))
    path = write_experiment(variants=variants, extra=extra)
    spec = load_spec(path, [f"experiment.seeds={[42] if search else [42, 43]}"], need_data=False)
    study = open_study(spec)
    for key, value in (("metric", "macro_f1"), ("direction", "maximize"),
                       ("label_names", ["neg", "neu", "pos"])):
        study.set_user_attr(key, value)
    rng = random.Random(trials)
    planned: list[Any] = expand(spec)[:1] + [None] * (trials - 1) if search else expand(spec)
    space = {"learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
             "batch_size": CategoricalDistribution((8, 16, 32))}
    made = []
    for number, trial in enumerate(planned):
        params = {"learning_rate": 10 ** rng.uniform(-5, -2), "batch_size": rng.choice((8, 16, 32))
                  } if trial is None else {}
        attrs = records.trial_attrs(trial) if trial is not None else {
            records.VARIANT: f"search_{number}", records.SEED: 42, records.KEY: f"search_{number}-s42",
            records.OVERRIDES: params}
        value = rng.uniform(0.4, 0.8)
        labels = [rng.randrange(3) for _ in range(30)]
        result = {"history": [{"step": s, "epoch": s / 10, "loss": 1 - s / 20, "grad_norm": 1.0,
                               "learning_rate": 1e-3} for s in range(1, 11)],
                  "eval_history": [{"step": 10, "epoch": 1.0, "loss": 0.8, "macro_f1": value}],
                  "validation": {"macro_f1": value, "accuracy": value},
                  "test": {"macro_f1": value, "accuracy": value},
                  "test_predictions": [rng.randrange(3) for _ in labels], "test_labels": labels,
                  "validation_confusion": [[3, 1, 0], [0, 4, 1], [1, 0, 5]], "runtime_s": 1.0}
        made.append(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, value=value, params=params,
            distributions={k: space[k] for k in params},
            user_attrs={**attrs, records.RESULT: result}))
    study.add_trials(made)
    return path


@pytest.fixture
def watch_train(monkeypatch: pytest.MonkeyPatch):
    """``watch_train(name)`` wraps the function ``ablation.train`` calls by ``name`` and returns the
    list of what it returned, call by call (which trials it applied to)."""
    from ablation import train

    def watch(name: str) -> list[Any]:
        real, returned = getattr(train, name), []

        def watched(*args: Any, **kwargs: Any) -> Any:
            returned.append(real(*args, **kwargs))
            return returned[-1]

        monkeypatch.setattr(train, name, watched)
        return returned

    return watch


def use_offline_cache(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """Point the Hugging Face libraries, offline, at `cache` (its hub/ and datasets/ folders),
    from the working folder `cache`'s parent, where no Hub id resolves to a local folder."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.chdir(cache.parent)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    # the libraries read these once at import; another test may have imported them already
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache / "hub"))


@pytest.fixture(scope="session")
def offline_hf() -> Path:
    """The pre-filled Hugging Face cache beside the checkout, or skip with the reason."""
    # CI sets ABLATE_REQUIRE_OFFLINE_HF=1 where the cache exists: there a skip would hide a bug.
    missing = pytest.fail if os.environ.get("ABLATE_REQUIRE_OFFLINE_HF") == "1" else pytest.skip
    if os.environ.get("HF_HUB_OFFLINE") != "1" or not os.environ.get("HF_HUB_CACHE"):
        missing("needs the offline Hugging Face cache: `source ../shared/offline-hf.sh` first")
    hub = Path(os.environ["HF_HUB_CACHE"])
    if not (hub / "models--sentence-transformers--all-MiniLM-L6-v2").exists():
        missing(f"the offline cache {hub} lacks sentence-transformers/all-MiniLM-L6-v2")
    return hub
