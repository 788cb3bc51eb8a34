"""`ablate init`: a commented starter experiment file that validates as written."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from .errors import AblateInputError

STARTER = '''\
# An ablate experiment: a baseline recipe and named variants, each trained once per seed as a
# trial of one Optuna study. `ablate validate FILE` checks this file, the data and the model
# without training; `ablate run FILE` runs it and writes reports/<name>/report.md.
# Every key, its default and what is allowed: the README, "The experiment file".

[experiment]                  # the study as a whole
# name = "my_study"           # the Optuna study name; default: this file's name
description = "Does a larger batch need a larger learning rate?"
seeds = [42]                  # every variant runs once per seed; [42, 43, 44] compares over seeds
metric = "macro_f1"           # the selection metric, on the validation split
# storage = "sqlite:///reports/<name>/study.db"   # the default; or postgresql://..., journal:///...

[data]                        # a Hub id, a local .csv/.tsv/.jsonl/.parquet file, or a folder of them
dataset = "mteb/tweet_sentiment_extraction"
text_column = "text"
label_column = "label"        # integer class ids or class names
validation_size = 0.1         # of train, carved out (stratified) as validation; unless:
# validation_split = "validation"   # the data's own validation split, as it is
max_train_samples = 2000      # start small; remove to train on every row
max_eval_samples = 500

[model]                       # a Hub id or a local folder, with a sequence-classification head
name = "sentence-transformers/all-MiniLM-L6-v2"

[tracking]                    # one SwanLab run per trial
backend = "swanlab"           # or "none"
mode = "local"                # logs under the output folder; `ablate dashboard FILE` serves them

[baseline]                    # the recipe every variant starts from (unset knobs: defaults)
learning_rate = 2e-5
batch_size = 16
epochs = 1
eval_steps = 50               # evaluate every 50 steps; 0: once per epoch

[variants]                    # name = the knobs it changes; it runs as "baseline_<name>"
bs32 = { batch_size = 32 }
bs32_lr5e-5 = { batch_size = 32, learning_rate = 5e-5 }   # quote a name with a dot: "lr2.5e-5"

# [sweep]                     # one factor at a time: each value becomes its own variant
# dropout = [0.0, 0.3]
'''


def write_starter(path: str | Path) -> Path:
    """Write the starter file; never overwrite an existing one. A path ending in a slash names a
    folder (Path() would drop the slash and write a file of the folder's name)."""
    if isinstance(path, str) and path.endswith(("/", os.sep)) and path.strip("/" + os.sep):
        folder = Path(path)
        raise AblateInputError(
            f"{path}: is a folder; `ablate init` writes a file: give its path "
            f"(ablate init {shlex.quote(str(folder / 'experiment.toml'))})")
    from .config import home_path

    path = home_path(path)  # '~/x.toml' quoted: the home folder's, as every command reads it
    if not path.exists():  # a folder or a file there is refused below, as one
        from .config import default_study_name

        default_study_name(path, "give the file another name (ablate init other.toml), or set "
                                 "[experiment] name in it once written under another")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as out:
            out.write(STARTER)
    except FileExistsError:
        if path.is_dir():
            raise AblateInputError(
                f"{path}: is a folder; `ablate init` writes a file: give its path "
                f"(ablate init {shlex.quote(str(path / 'experiment.toml'))})") from None
        raise AblateInputError(
            f"{path}: already exists; `ablate init` never overwrites a file, give another "
            "path (ablate init other.toml)") from None
    except OSError as err:
        raise AblateInputError(f"{path}: cannot be written: {err.strerror or err}") from None
    return path
