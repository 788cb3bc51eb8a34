"""The experiment file loader: defaults, validation errors, `--set` overrides and variant expansion.

Everything here is pure parsing: no model, no data and no network is touched (Hub-looking ids need
not exist). Every test runs with the working folder set to its own `tmp_path`, because relative
paths (output_dir, storage, local datasets) resolve against the working folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ablation.config import (
    KNOBS,
    SECTIONS,
    ExperimentSpec,
    Recipe,
    apply_sets,
    load_spec,
    resolve_storage,
)
from ablation.errors import AblateInputError
from ablation.variants import TrialSpec, describe_changes, expand, human_number, variant_names

REQUIRED = {"data": 'dataset = "mteb/some_id"', "model": 'name = "some/model"'}


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write_toml(folder: Path, text: str, name: str = "study") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def write_spec(folder: Path, *, name: str = "study", head: str = "", **sections: str) -> Path:
    """A minimal valid file (a Hub dataset id and a model id) plus extra lines per section.

    `write_spec(tmp_path, baseline="batch_size = 32")` adds `batch_size = 32` under `[baseline]`;
    `head` goes before the first section (top-level keys, or whole extra sections).
    """
    unknown = set(sections) - set(SECTIONS)
    assert not unknown, f"write_spec: unknown sections {unknown}"
    parts = [head] if head else []
    for section in SECTIONS:
        body = "\n".join(line for line in (REQUIRED.get(section, ""), sections.get(section, "")) if line)
        if body:
            parts.append(f"[{section}]\n{body}\n")
    return write_toml(folder, "\n".join(parts), name=name)


def load_error(path: Path, sets: list[str] | None = None) -> str:
    """The one-line message load_spec raises for a bad input."""
    with pytest.raises(AblateInputError) as info:
        load_spec(path, sets=sets)
    message = str(info.value)
    assert "\n" not in message, f"error message is not one line: {message!r}"
    return message


# --------------------------------------------------------------------------- defaults


def test_minimal_file_loads(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path))
    assert isinstance(spec, ExperimentSpec)
    assert spec.data.dataset == "mteb/some_id"
    assert spec.model.name == "some/model"
    assert spec.variants == {}


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, name="my_study"))
    assert spec.name == "my_study"
    assert spec.experiment.name == "my_study"


def test_explicit_name_wins_over_file_stem(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, name="file", experiment='name = "chosen"'))
    assert spec.name == "chosen"


def test_experiment_defaults(tmp_path: Path) -> None:
    experiment = load_spec(write_spec(tmp_path)).experiment
    assert experiment.seeds == [42]
    assert experiment.metric == "macro_f1"
    assert experiment.direction == "maximize"
    assert experiment.description == ""


@pytest.mark.parametrize("metric", ["log_loss", "eval_loss"])
def test_direction_defaults_to_minimize_for_loss_metrics(tmp_path: Path, metric: str) -> None:
    spec = load_spec(write_spec(tmp_path, experiment=f'metric = "{metric}"'))
    assert spec.experiment.direction == "minimize"
    assert spec.greater_is_better is False


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "weighted_f1", "macro_recall"])
def test_direction_defaults_to_maximize_for_score_metrics(tmp_path: Path, metric: str) -> None:
    spec = load_spec(write_spec(tmp_path, experiment=f'metric = "{metric}"'))
    assert spec.experiment.direction == "maximize"
    assert spec.greater_is_better is True


def test_a_direction_that_agrees_with_the_metric_is_kept(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, experiment='metric = "log_loss"\ndirection = "minimize"'))
    assert spec.experiment.direction == "minimize"


def test_output_dir_defaults_to_reports_name_under_working_folder(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, name="abl"))
    expected = tmp_path.resolve() / "reports" / "abl"
    assert spec.experiment.output_dir == str(expected)
    assert spec.output_dir == expected
    assert spec.output_dir.is_absolute()


def test_relative_output_dir_becomes_absolute(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, experiment='output_dir = "out/here"'))
    assert spec.output_dir == tmp_path.resolve() / "out" / "here"


def test_output_dir_is_relative_to_working_folder_not_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    spec = load_spec(write_spec(tmp_path / "sub", name="abl"))
    assert spec.output_dir == tmp_path.resolve() / "reports" / "abl"


def test_storage_defaults_to_sqlite_in_output_dir(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, name="abl"))
    db = tmp_path.resolve() / "reports" / "abl" / "study.db"
    assert spec.experiment.storage == "sqlite:///" + str(db)


def test_relative_sqlite_storage_becomes_absolute(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, experiment='storage = "sqlite:///dbs/s.db"'))
    assert spec.experiment.storage == "sqlite:///" + str(tmp_path.resolve() / "dbs" / "s.db")


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "sqlite:////abs/path/s.db"])
def test_absolute_or_non_sqlite_storage_is_kept(tmp_path: Path, url: str) -> None:
    spec = load_spec(write_spec(tmp_path, experiment=f'storage = "{url}"'))
    assert spec.experiment.storage == url


def test_a_server_storage_url_with_a_long_token_is_kept(tmp_path: Path) -> None:
    # A database server's URL names no file: a password that is a cloud IAM token (AWS RDS's run
    # to 800+ characters) or a long query string is no file or folder name over 255 bytes.
    token = "X-Amz-Signature%3D" + "a" * 600
    url = f"postgresql://iam_user:{token}@db.example.com:5432/studies?sslmode=require"
    spec = load_spec(write_spec(tmp_path, experiment=f'storage = "{url}"'))
    assert spec.experiment.storage == url


def test_a_sqlite_storage_file_name_over_255_bytes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AblateInputError, match="255 bytes"):
        load_spec(write_spec(tmp_path, experiment='storage = "sqlite:///' + "x" * 300 + '.db"'))


def test_spec_records_absolute_path_and_text(tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    spec = load_spec(path)
    assert spec.path == path.resolve()
    assert spec.text == path.read_text(encoding="utf-8")


def test_load_spec_accepts_a_string_path(tmp_path: Path) -> None:
    spec = load_spec(str(write_spec(tmp_path, name="strpath")))
    assert spec.name == "strpath"


def test_data_defaults(tmp_path: Path) -> None:
    data = load_spec(write_spec(tmp_path)).data
    assert (data.text_column, data.label_column, data.train_split) == ("text", "label", "train")
    assert data.validation_split is None
    assert data.validation_size == 0.1
    assert data.test_split == "test"
    assert data.text_pair_column is None
    assert data.label_names is None
    assert (data.max_train_samples, data.max_eval_samples, data.max_test_samples) == (None, None, None)


def test_model_defaults(tmp_path: Path) -> None:
    model = load_spec(write_spec(tmp_path)).model
    assert model.revision is None
    assert model.config == {}


def test_model_config_table_is_kept(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, model="config = { num_hidden_layers = 2 }"))
    assert spec.model.config == {"num_hidden_layers": 2}


def test_tracking_defaults(tmp_path: Path) -> None:
    tracking = load_spec(write_spec(tmp_path)).tracking
    assert (tracking.backend, tracking.project, tracking.mode) == ("swanlab", "ablate", "local")


def test_hub_ids_are_kept_verbatim(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path))
    assert spec.data.dataset == "mteb/some_id"
    assert spec.model.name == "some/model"


def test_existing_local_dataset_becomes_absolute(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\na,0\n", encoding="utf-8")
    path = write_toml(tmp_path, '[data]\ndataset = "./train.csv"\n[model]\nname = "some/model"\n')
    assert load_spec(path).data.dataset == str(tmp_path.resolve() / "train.csv")


def test_existing_local_model_folder_becomes_absolute(tmp_path: Path) -> None:
    (tmp_path / "my-model").mkdir()
    path = write_toml(tmp_path, '[data]\ndataset = "mteb/some_id"\n[model]\nname = "my-model"\n')
    assert load_spec(path).model.name == str(tmp_path.resolve() / "my-model")


@pytest.mark.parametrize(("section", "line", "attr"), [
    ("data", 'test_split = ""', "test_split"),
    ("data", "test_split = false", "test_split"),
    ("baseline", 'dropout = ""', "dropout"),
    ("baseline", "classifier_dropout = false", "classifier_dropout"),
])
def test_optional_key_is_unset_by_empty_string_or_false(tmp_path: Path, section: str, line: str,
                                                         attr: str) -> None:
    spec = load_spec(write_spec(tmp_path, **{section: line}))
    assert getattr(getattr(spec, section), attr) is None


def test_to_dict_holds_every_section(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, variants="bs32 = { batch_size = 32 }"))
    resolved = spec.to_dict()
    assert set(resolved) == set(SECTIONS)
    assert resolved["baseline"]["batch_size"] == 16
    assert resolved["variants"] == {"bs32": {"batch_size": 32}}
    assert resolved["experiment"]["output_dir"] == str(spec.output_dir)


# --------------------------------------------------------------------------- baseline knobs

BASELINE_DEFAULTS = {
    "learning_rate": 2e-5,
    "batch_size": 16,
    "eval_batch_size": 64,
    "gradient_accumulation_steps": 1,
    "epochs": 3,
    "max_steps": -1,
    "max_length": 128,
    "weight_decay": 0.0,
    "warmup_ratio": 0.0,
    "lr_scheduler": "linear",
    "dropout": None,
    "classifier_dropout": None,
    "class_weight": "none",
    "label_smoothing": 0.0,
    "max_grad_norm": 1.0,
    "early_stopping_patience": 0,
    "eval_steps": 0,
    "logging_steps": 10,
    "precision": "auto",
    "group_by_length": False,
    # issue 3: axes beyond the Trainer
    "max_train_samples": None,
    "model": None,
    "model_config": None,
}


def test_knobs_are_exactly_the_documented_list() -> None:
    assert KNOBS == tuple(BASELINE_DEFAULTS)


@pytest.mark.parametrize(("knob", "default"), list(BASELINE_DEFAULTS.items()))
def test_baseline_knob_default(tmp_path: Path, knob: str, default: object) -> None:
    baseline = load_spec(write_spec(tmp_path)).baseline
    assert getattr(baseline, knob) == default


def test_baseline_values_override_defaults(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, baseline="learning_rate = 5e-5\nbatch_size = 8\nepochs = 1"))
    assert (spec.baseline.learning_rate, spec.baseline.batch_size, spec.baseline.epochs) == (5e-5, 8, 1.0)
    assert spec.baseline.max_length == 128


def test_integral_float_is_accepted_for_an_integer_knob(tmp_path: Path) -> None:
    batch_size = load_spec(write_spec(tmp_path, baseline="batch_size = 32.0")).baseline.batch_size
    assert batch_size == 32
    assert isinstance(batch_size, int)


def test_integer_is_accepted_for_a_float_knob(tmp_path: Path) -> None:
    epochs = load_spec(write_spec(tmp_path, baseline="epochs = 2")).baseline.epochs
    assert epochs == 2.0
    assert isinstance(epochs, float)


@pytest.mark.parametrize(("line", "knob", "value"), [
    ("max_steps = -1", "max_steps", -1),
    ("max_steps = 1", "max_steps", 1),
    ("max_length = 2", "max_length", 2),
    ("dropout = 0.0", "dropout", 0.0),
    ("dropout = 0.3", "dropout", 0.3),
    ("warmup_ratio = 0.0", "warmup_ratio", 0.0),
    ("weight_decay = 0", "weight_decay", 0.0),
    ("max_grad_norm = 0", "max_grad_norm", 0.0),
    ("eval_steps = 0", "eval_steps", 0),
    ("early_stopping_patience = 3", "early_stopping_patience", 3),
    ('class_weight = "balanced"', "class_weight", "balanced"),
    ("class_weight = [1, 2.5]", "class_weight", [1.0, 2.5]),
    ('lr_scheduler = "cosine"', "lr_scheduler", "cosine"),
    ('precision = "bf16"', "precision", "bf16"),
])
def test_boundary_and_valid_knob_values_are_accepted(tmp_path: Path, line: str, knob: str,
                                                     value: object) -> None:
    assert getattr(load_spec(write_spec(tmp_path, baseline=line)).baseline, knob) == value


# --------------------------------------------------------------------------- variants


def test_variants_keep_file_order(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, variants="\n".join([
        "zeta = { batch_size = 32 }",
        "alpha = { epochs = 1 }",
        "mid = { dropout = 0.1 }",
    ])))
    assert list(spec.variants) == ["zeta", "alpha", "mid"]


def test_variant_overrides_are_validated_and_cleaned(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, variants="v = { epochs = 2, batch_size = 32.0 }"))
    assert spec.variants["v"] == {"epochs": 2.0, "batch_size": 32}
    assert isinstance(spec.variants["v"]["epochs"], float)
    assert isinstance(spec.variants["v"]["batch_size"], int)


def test_variant_as_a_table_header(tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + "[variants.bs32]\nbatch_size = 32\n",
                    encoding="utf-8")
    assert load_spec(path).variants == {"bs32": {"batch_size": 32}}


@pytest.mark.parametrize("name", ["dropout0.3", "bs32_lr5e-5", "cw-balanced", "a+b", "V2", "0"])
def test_variant_name_may_use_letters_digits_and_dot_dash_plus_underscore(tmp_path: Path,
                                                                           name: str) -> None:
    spec = load_spec(write_spec(tmp_path, variants=f'"{name}" = {{ batch_size = 8 }}'))
    assert list(spec.variants) == [name]


@pytest.mark.parametrize("name", ["has space", "a/b", "café", "x:y", ""])
def test_variant_name_with_other_characters_is_rejected(tmp_path: Path, name: str) -> None:
    message = load_error(write_spec(tmp_path, variants=f'"{name}" = {{ batch_size = 8 }}'))
    assert f"name {name!r}" in message
    assert "ASCII letters (a-z, A-Z), digits and . _ + -" in message


def test_empty_variant_is_rejected(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, variants="nothing = {}"))
    assert "[variants.nothing]" in message
    assert "changes nothing" in message


def test_variant_that_is_not_a_table_is_rejected(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, variants="bs32 = 32"))
    assert "[variants.bs32]" in message
    assert "must be a table of knob overrides" in message


@pytest.mark.parametrize(("knob", "suggestion"), [
    ("batch_sise", "batch_size"),
    ("learnig_rate", "learning_rate"),
    ("drop_out", "dropout"),
])
def test_unknown_knob_in_variant_suggests_the_close_one(tmp_path: Path, knob: str, suggestion: str) -> None:
    message = load_error(write_spec(tmp_path, variants=f"v = {{ {knob} = 1 }}"))
    assert f"unknown knob {knob!r}" in message
    assert f"did you mean {suggestion!r}?" in message


def test_unknown_knob_without_close_match_lists_every_knob(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, variants="v = { momentum = 0.9 }"))
    assert "[variants.v] unknown knob 'momentum'" in message
    assert "did you mean" not in message
    assert "knobs: " + ", ".join(KNOBS) in message


@pytest.mark.parametrize(("where", "knob", "suggestion"), [
    ("variants", "v = { lr = 1e-4 }", "learning_rate"),  # as generated names write it: lr1e-4
    ("sweep", "bs = [32]", "batch_size"),
    ("sweep", "warmup = [0.1]", "warmup_ratio"),
    ("baseline", "num_train_epochs = 2", "epochs"),  # the Trainer's names
    ("baseline", "fp16 = true", "precision"),
    ("variants", "v = { num_hidden_layers = 2 }", "model_config"),  # a model config key
])
def test_a_knob_by_another_of_its_names_suggests_the_knob(tmp_path: Path, where: str, knob: str,
                                                          suggestion: str) -> None:
    message = load_error(write_spec(tmp_path, **{where: knob}))
    assert f"did you mean {suggestion!r}?" in message


def test_bad_value_in_variant_names_the_variant_and_knob(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, variants="v = { batch_size = 0 }"))
    assert "[variants.v] batch_size = 0 must be an integer >= 1" in message


def test_duplicate_variant_names_are_invalid_toml(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, variants="v = { batch_size = 8 }\nv = { batch_size = 16 }"))
    assert "invalid TOML" in message


def test_unquoted_dotted_variant_name_is_rejected_not_nested_silently(tmp_path: Path) -> None:
    # Unquoted, `dropout0.3` is the TOML dotted key dropout0 → 3; it must fail, not run a variant.
    message = load_error(write_spec(tmp_path, variants="dropout0.3 = { dropout = 0.3 }"))
    assert "variants.dropout0" in message


# --------------------------------------------------------------------------- whole-file errors


@pytest.mark.parametrize(("dataset", "said"), [
    ("C:\\Users\\me\\train.csv", "invalid TOML: Invalid hex value"),  # \U: a code point
    ("data\\dev.csv", "invalid TOML: Unescaped '\\' in a string"),
    ("data\\train.csv", 'dataset = "data\\train.csv" must have no control characters'),  # a tab
])
def test_a_windows_path_in_a_basic_string_says_the_backslash_is_an_escape(
        tmp_path: Path, dataset: str, said: str) -> None:
    """A path copied from Windows ("data\\train.csv") was refused as TOML's "Invalid hex value",
    or as having control characters (its \\t a tab), saying nothing of the backslash."""
    path = write_toml(tmp_path, f'[data]\ndataset = "{dataset}"\n[model]\nname = "some/model"\n')
    message = load_error(path)
    assert said in message, message
    assert message.endswith("; written with a backslash? In a \"...\" string it starts an escape "
                            "(\\t is a tab, \\U a code point): write the path with / "
                            "(data/train.csv) or between single quotes ('data\\train.csv'), which "
                            "keep it"), message



def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write_spec(tmp_path, baseline="batch_size = ")
    message = load_error(path)
    assert str(path) in message
    assert "invalid TOML" in message
    assert "line" in message


def test_unknown_section_suggests_the_close_one(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, head="[baslines]\nepochs = 1\n"))
    assert "unknown section [baslines]" in message
    assert "did you mean 'baseline'?" in message


def test_unknown_section_without_close_match_lists_sections(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, head="[zzz]\nx = 1\n"))
    assert "unknown section [zzz]" in message
    assert "did you mean" not in message
    assert "sections: " + ", ".join(SECTIONS) in message


@pytest.mark.parametrize("section", ["experiment", "variants"])
def test_section_that_is_not_a_table_is_rejected(tmp_path: Path, section: str) -> None:
    message = load_error(write_spec(tmp_path, head=f"{section} = 3\n"))
    assert f"[{section}] must be a table" in message


@pytest.mark.parametrize(("section", "key", "suggestion"), [
    ("experiment", "nmae", "name"),
    ("experiment", "seed", "seeds"),
    ("data", "datset", "dataset"),
    ("data", "text_colum", "text_column"),
    ("model", "revison", "revision"),
    ("tracking", "mdoe", "mode"),
    ("baseline", "batch_sise", "batch_size"),
])
def test_unknown_key_in_section_suggests_the_close_one(tmp_path: Path, section: str, key: str,
                                                       suggestion: str) -> None:
    message = load_error(write_spec(tmp_path, **{section: f'{key} = "x"'}))
    assert f"unknown key {key!r} in [{section}]" in message
    assert f"did you mean {suggestion!r}?" in message
    assert "(allowed: " in message


@pytest.mark.parametrize(("section", "line", "allowed"), [
    ("baseline", 'batch_size = "32"', "must be an integer >= 1"),
    ("baseline", "batch_size = true", "must be an integer >= 1"),
    ("baseline", "batch_size = 2.5", "must be an integer >= 1"),
    ("baseline", 'learning_rate = "fast"', "must be a finite number in (0, inf)"),
    ("baseline", "learning_rate = nan", "must be a finite number in (0, inf)"),
    ("baseline", "epochs = true", "must be a finite number in (0, inf)"),
    ("experiment", "seeds = 42", "must be a non-empty list of integers in [0, 2**32)"),
    ("experiment", "seeds = []", "must be a non-empty list of integers in [0, 2**32)"),
    ("experiment", "seeds = [1, 1]", "must not repeat a seed"),
    ("experiment", "seeds = [-1]", "must be a non-empty list of integers in [0, 2**32)"),
    ("experiment", "seeds = [true]", "must be a non-empty list of integers in [0, 2**32)"),
    ("experiment", "seeds = [1.5]", "must be a non-empty list of integers in [0, 2**32)"),
    ("experiment", 'metric = "f1"', "must be one of 'accuracy', 'macro_f1'"),
    ("experiment", 'direction = "up"', "must be one of 'maximize', 'minimize'"),
    ("experiment", 'name = ""', "must be a non-empty string"),
    ("experiment", 'name = "   "', "must be a non-empty string"),
    ("experiment", "description = 3", "must be a non-empty string"),
    ("experiment", "storage = 3", "must be a non-empty string"),
    ("data", "text_column = 3", "must be a non-empty string"),
    ("data", "label_names = []", "must be a non-empty list of strings"),
    ("data", 'label_names = ["a", 1]', "must be a non-empty list of strings"),
    ("data", 'label_names = ["a", "line\\nbreak"]', "must be names without control characters"),
    ("model", "config = 3", "must be a table"),
    ("tracking", 'mode = "cloud"', "must be one of 'offline', 'local', 'online', 'disabled'"),
    ("tracking", 'backend = "wandb"', "must be one of 'swanlab', 'none'"),
    ("baseline", 'precision = "fp8"', "must be one of 'auto', 'fp32', 'bf16', 'fp16'"),
    ("baseline", 'lr_scheduler = "nope"', "must be a transformers scheduler name: linear"),
    ("baseline", 'group_by_length = "yes"', "must be true or false"),
    ("baseline", "group_by_length = 1", "must be true or false"),
    ("experiment", "devices_per_trial = 0", "must be an integer >= 1"),
    ("experiment", "checkpoint_steps = -5", "must be an integer >= 0"),
])
def test_wrong_type_or_choice_is_rejected(tmp_path: Path, section: str, line: str, allowed: str) -> None:
    path = write_spec(tmp_path, **{section: line})
    key = line.split(" = ")[0]
    message = load_error(path)
    assert message.startswith(f"{path}: [{section}] {key} = ")
    assert allowed in message


@pytest.mark.parametrize(("section", "line", "allowed"), [
    ("baseline", "learning_rate = 0", "(0, inf)"),
    ("baseline", "learning_rate = -1", "(0, inf)"),
    ("baseline", "epochs = 0", "(0, inf)"),
    ("baseline", "dropout = 1.0", "[0, 1)"),
    ("baseline", "dropout = -0.1", "[0, 1)"),
    ("baseline", "classifier_dropout = 1", "[0, 1)"),
    ("baseline", "batch_size = 0", "an integer >= 1"),
    ("baseline", "eval_batch_size = 0", "an integer >= 1"),
    ("baseline", "max_length = 1", "an integer >= 2"),
    ("baseline", "warmup_ratio = 1", "[0, 1)"),
    ("baseline", "label_smoothing = 1", "[0, 1)"),
    ("baseline", "weight_decay = -0.01", "[0, inf)"),
    ("baseline", "max_grad_norm = -1", "[0, inf)"),
    ("baseline", "max_steps = 0", "an integer >= 1 or -1"),
    ("baseline", "max_steps = -2", "an integer >= 1 or -1"),
    ("baseline", "eval_steps = -1", "an integer >= 0"),
    ("baseline", "early_stopping_patience = -1", "an integer >= 0"),
    ("baseline", "logging_steps = 0", "an integer >= 1"),
    ("baseline", "gradient_accumulation_steps = 0", "an integer >= 1"),
    ("baseline", 'class_weight = "auto"', '"none", "balanced" or a list of positive numbers'),
    ("baseline", "class_weight = [1, -2]", '"none", "balanced" or a list of positive numbers'),
    ("baseline", "class_weight = [1, 0]", '"none", "balanced" or a list of positive numbers'),
    ("baseline", "class_weight = [1, inf]", '"none", "balanced" or a list of positive numbers'),
    ("baseline", "class_weight = []", '"none", "balanced" or a list of positive numbers'),
    ("data", "validation_size = 0", "(0, 1)"),
    ("data", "validation_size = 1", "(0, 1)"),
    ("data", "max_train_samples = 0", "an integer >= 1"),
    ("data", "max_eval_samples = -5", "an integer >= 1"),
])
def test_out_of_range_value_is_rejected(tmp_path: Path, section: str, line: str, allowed: str) -> None:
    path = write_spec(tmp_path, **{section: line})
    key = line.split(" = ")[0]
    message = load_error(path)
    assert f"[{section}] {key} = " in message
    assert allowed in message


def test_error_message_escapes_newlines_in_a_value(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, experiment='metric = """macro\nf1"""'))
    assert 'metric = "macro\\nf1"' in message


def test_missing_dataset_is_rejected(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[model]\nname = "some/model"\n')
    assert "[data] dataset is required" in load_error(path)


def test_empty_dataset_is_rejected(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[data]\ndataset = ""\n[model]\nname = "some/model"\n')
    assert "[data] dataset = '' must be a non-empty string" in load_error(path)


def test_missing_model_name_is_rejected(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[data]\ndataset = "mteb/some_id"\n')
    assert "[model] name is required" in load_error(path)


def test_validation_split_equal_to_train_split_is_rejected(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, data='validation_split = "train"'))
    assert "[data] validation_split must differ from train_split ('train')" in message


def test_test_split_equal_to_train_split_is_rejected(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, data='train_split = "all"\ntest_split = "all"'))
    assert "[data] test_split = 'all' must differ from the train and validation splits" in message


def test_test_split_equal_to_validation_split_is_rejected(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, data='validation_split = "dev"\ntest_split = "dev"'))
    assert "[data] test_split = 'dev' must differ" in message


def test_validation_split_named_test_clashes_with_the_default_test_split(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, data='validation_split = "test"'))
    assert "test_split = 'test' (the default) must differ" in message
    assert 'set test_split = "" for none' in message


def test_validation_split_named_test_loads_once_test_split_is_unset(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, data='validation_split = "test"\ntest_split = ""'))
    assert (spec.data.validation_split, spec.data.test_split) == ("test", None)


@pytest.mark.parametrize("dataset", [
    "./nope.csv", "data/nope.csv", "nope.jsonl", "/nonexistent-ablate-dir/x", "~/no-such-ablate-file.parquet",
])
def test_local_looking_dataset_that_does_not_exist_is_rejected(tmp_path: Path, dataset: str) -> None:
    path = write_toml(tmp_path, f'[data]\ndataset = "{dataset}"\n[model]\nname = "some/model"\n')
    message = load_error(path)
    assert f"[data] dataset = {dataset!r}: no such file or folder" in message


def test_a_dataset_that_is_a_dangling_symlink_or_an_absolute_path_is_said_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dataset = "tweets.csv"`, a symlink to a disk not mounted, was "no such file or folder
    (relative paths start at the working folder)", as if mistyped, and so was an absolute path
    or one in the home folder (`~/x.csv`), which no working folder changes; the home folder's
    path is named as it was looked for."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "tweets.csv").symlink_to(tmp_path / "unmounted" / "tweets.csv")
    expected = {
        "tweets.csv": f"a symlink to {tmp_path / 'unmounted' / 'tweets.csv'}, which is missing",
        "/nonexistent-ablate-dir/x.csv": "no such file or folder",
        "~/x.csv": f"no such file or folder ({tmp_path / 'home' / 'x.csv'})",
        "nope.csv": "no such file or folder (relative paths start at the working folder)",
    }
    for dataset, problem in expected.items():
        path = write_toml(tmp_path, f'[data]\ndataset = "{dataset}"\n[model]\nname = "some/model"\n')
        assert load_error(path) == f"{path}: [data] dataset = {dataset!r}: {problem}"


def test_an_experiment_file_that_is_a_dangling_symlink_names_its_target(tmp_path: Path) -> None:
    """`current.toml -> /mnt/studies/v3.toml` with that disk not mounted: "no such experiment
    file", though `ls` shows the file there."""
    path = tmp_path / "current.toml"
    path.symlink_to(tmp_path / "unmounted" / "v3.toml")
    assert load_error(path) == (f"{path}: a symlink to {tmp_path / 'unmounted' / 'v3.toml'}, "
                                "which is missing")


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert load_error(path) == f"{path}: no such experiment file"


def test_folder_instead_of_file_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    assert f"{folder}: cannot read experiment file" in load_error(folder)


def test_non_utf8_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b"\xff\xfe\x00bad")
    message = load_error(path)
    assert message.startswith(f"{path}: line 1 (byte 0) cannot be decoded as UTF-8 text")
    assert "save the file as UTF-8" in message


@pytest.mark.parametrize("encoding, says", [
    ("utf-16", "it is UTF-16"), ("gbk", "it looks like GBK/GB18030"),
    ("latin-1", "line 2 (byte 28) cannot be decoded")])
def test_an_experiment_file_in_another_encoding_is_named_by_it(tmp_path: Path, encoding: str,
                                                                 says: str) -> None:
    # Windows Notepad's "Unicode" is UTF-16, a Chinese Windows editor's default GBK: the line said
    # only "not UTF-8 text (byte 0)", as it does for a file of random bytes
    path = tmp_path / "exp.toml"
    text = '[experiment]\ndescription = "情感分析 über alles"\n' if encoding != "latin-1" else \
        '[experiment]\ndescription = "über"\n'
    path.write_bytes(text.encode(encoding))
    message = load_error(path)
    assert says in message and "save the file as UTF-8" in message, message


def test_an_experiment_file_whose_name_is_not_utf8_is_refused_before_anything_runs(
        tmp_path: Path) -> None:
    """`ablate run caf\\xe9.toml` (a Latin-1 name, unpacked from a Windows archive) with a `name`
    of its own trained every trial, then writing report.md, which names the file in the
    commands it gives, was a UnicodeEncodeError traceback (exit 1)."""
    path = write_spec(tmp_path, name=os.fsdecode(b"caf\xe9"), experiment='name = "cafe"')
    message = load_error(path)
    assert "not UTF-8 (byte 0xe9)" in message and "rename" in message, message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[data]\ndataset = "mteb/some_id"\n[model]\nname = "some/model"\n')
    spec = load_spec(path)
    assert spec.data.dataset == "mteb/some_id"
    assert not spec.text.startswith("\ufeff")


# --------------------------------------------------------------------------- --set overrides


def test_a_set_value_typed_under_an_ascii_locale_is_its_utf8_and_one_not_utf8_is_refused(
        tmp_path: Path) -> None:
    """LC_ALL=C with PYTHONUTF8=0 reads an argument's bytes past ASCII as lone surrogates:
    `--set 'experiment.description="中文"'` kept them, and `report` (and a run's end) wrote
    report.md, which names the command with its --sets, with a UnicodeEncodeError traceback; a
    Latin-1 byte in a UTF-8 locale did too."""
    typed = "".join(chr(0xDC00 + byte) for byte in "中文".encode())  # as LC_ALL=C reads it
    spec = load_spec(write_spec(tmp_path), [f'experiment.description="{typed}"'], need_data=False)
    assert spec.experiment.description == "中文"
    assert spec.command("report").endswith("""--set 'experiment.description="中文"'""")  # report.md's
    message = load_error(write_spec(tmp_path), ['experiment.description="caf\udce9"'])
    assert message.startswith("--set 'experiment.description=") and "not UTF-8" in message, message
    assert "byte 0xe9" in message and "\n" not in message, message


def test_set_int_into_float_knob(tmp_path: Path) -> None:
    assert load_spec(write_spec(tmp_path), sets=["baseline.epochs=2"]).baseline.epochs == 2.0


def test_set_float_knob(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), sets=["baseline.learning_rate=5e-5"])
    assert spec.baseline.learning_rate == 5e-5


def test_set_data_key(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), sets=["data.max_train_samples=500"])
    assert spec.data.max_train_samples == 500


def test_set_bare_word_is_a_string(tmp_path: Path) -> None:
    assert load_spec(write_spec(tmp_path), sets=["tracking.mode=offline"]).tracking.mode == "offline"


def test_a_later_set_of_the_same_key_replaces_an_earlier_one_unchecked(tmp_path: Path) -> None:
    sets = ['tracking.mode="bad"', 'tracking.mode="local"']
    assert load_spec(write_spec(tmp_path), sets=sets).tracking.mode == "local"


def test_set_a_variant_whose_name_holds_a_dot(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), sets=['variants."dropout0.3".dropout=0.3'])
    assert spec.variants == {"dropout0.3": {"dropout": 0.3}}


def test_set_quoted_string(tmp_path: Path) -> None:
    assert load_spec(write_spec(tmp_path), sets=['experiment.name="my study"']).name == "my study"


def test_set_list_value(tmp_path: Path) -> None:
    assert load_spec(write_spec(tmp_path), sets=["experiment.seeds=[1, 2]"]).experiment.seeds == [1, 2]


def test_set_tolerates_spaces_around_key_and_value(tmp_path: Path) -> None:
    assert load_spec(write_spec(tmp_path), sets=[" baseline.batch_size = 8 "]).baseline.batch_size == 8


def test_set_wins_over_the_file(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, baseline="epochs = 5"), sets=["baseline.epochs=1"])
    assert spec.baseline.epochs == 1.0


def test_later_set_wins_over_earlier(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), sets=["baseline.epochs=1", "baseline.epochs=4"])
    assert spec.baseline.epochs == 4.0


def test_set_empty_value_unsets_an_optional_key(tmp_path: Path) -> None:
    assert load_spec(write_spec(tmp_path), sets=["data.test_split="]).data.test_split is None


def test_set_local_dataset_becomes_absolute(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("text,label\na,0\n", encoding="utf-8")
    spec = load_spec(write_spec(tmp_path), sets=["data.dataset=./data.csv"])
    assert spec.data.dataset == str(tmp_path.resolve() / "data.csv")


def test_set_nested_model_config(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), sets=["model.config.num_hidden_layers=2"])
    assert spec.model.config == {"num_hidden_layers": 2}


def test_set_nested_model_config_merges_with_the_file(tmp_path: Path) -> None:
    path = write_spec(tmp_path, model="config = { num_hidden_layers = 4, hidden_dropout_prob = 0.2 }")
    spec = load_spec(path, sets=["model.config.num_hidden_layers=2"])
    assert spec.model.config == {"num_hidden_layers": 2, "hidden_dropout_prob": 0.2}


def test_set_knob_of_a_variant_whose_name_has_a_dot(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, variants='"dropout0.3" = { dropout = 0.3 }'),
                     sets=["variants.dropout0.3.dropout=0.2"])
    assert spec.variants == {"dropout0.3": {"dropout": 0.2}}


def test_set_one_model_config_key_of_a_variant(tmp_path: Path) -> None:
    """As baseline.model_config.KEY: the dotted key goes into the variant's model_config, which
    keeps the file's other keys, also for a variant whose name holds a dot."""
    path = write_spec(tmp_path, variants='"v1.5" = { model_config = { hidden_dropout_prob = 0.2 } }')
    spec = load_spec(path, sets=["variants.v1.5.model_config.num_hidden_layers=1",
                                 "variants.new.model_config.num_hidden_layers=2"])
    assert spec.variants == {"v1.5": {"model_config": {"hidden_dropout_prob": 0.2,
                                                       "num_hidden_layers": 1}},
                             "new": {"model_config": {"num_hidden_layers": 2}}}


def test_set_adds_a_new_variant_after_the_file_ones(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, variants="bs32 = { batch_size = 32 }"),
                     sets=["variants.new.batch_size=8"])
    assert spec.variants == {"bs32": {"batch_size": 32}, "new": {"batch_size": 8}}
    assert list(spec.variants) == ["bs32", "new"]


@pytest.mark.parametrize("item", ["baseline.epochs", "baseline.epochs 2", "epochs=2", "baseline..epochs=2",
                                  ".epochs=2", "=2"])
def test_set_without_section_key_and_value_is_rejected(tmp_path: Path, item: str) -> None:
    message = load_error(write_spec(tmp_path), sets=[item])
    assert message.startswith(f"--set {item!r}: expected SECTION.KEY=VALUE")


def test_set_unknown_section_suggests_the_close_one(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path), sets=["baslines.epochs=2"])
    assert "--set 'baslines.epochs=2': unknown section 'baslines'" in message
    assert "did you mean 'baseline'?" in message


def test_set_variant_without_knob_is_rejected(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path), sets=["variants.bs32=1"])
    assert "--set 'variants.bs32=1': expected variants.NAME.KNOB=VALUE" in message


def test_set_through_a_non_table_is_rejected(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path), sets=["data.dataset.x=1"])
    assert "--set 'data.dataset.x=1': 'dataset' is not a table" in message


@pytest.mark.parametrize(("item", "expected"), [
    ("baseline.batch_size=0", "[baseline] batch_size = 0 must be an integer >= 1"),
    ("tracking.mode=cloud", "[tracking] mode = 'cloud' must be one of"),
    ("data.bogus=1", "unknown key 'bogus' in [data]"),
    ("variants.new.bogus=1", "[variants.new] unknown knob 'bogus'"),
    ("variants.a b.batch_size=1", "[variants] name 'a b'"),
])
def test_set_value_is_validated_like_the_file(tmp_path: Path, item: str, expected: str) -> None:
    assert expected in load_error(write_spec(tmp_path), sets=[item])


@pytest.mark.parametrize(("item", "expected"), [
    ("sweep.batchsize=[64]", "[sweep] unknown knob 'batchsize'"),
    ("sweep.learning_rate=[5e-5, 5e-5]", "[sweep] learning_rate lists 5e-5 twice"),
    ('variants."a b".batch_size=32', "[variants] name 'a b' may use only"),
    ('ablation.changes.cw.clas_weight="balanced"', "[ablation.changes.cw] unknown knob 'clas_weight'"),
    ("sweep.dropout=[0.3]", "variant name 'baseline_dropout0.3' is produced twice"),
])
def test_set_mistakes_in_sections_the_file_has_are_the_sets(tmp_path: Path, item: str,
                                                            expected: str) -> None:
    """The file has [variants], [sweep] and [ablation]; what a --set wrote into them is blamed
    on that --set, also where the mistake only shows once the variants are named."""
    path = write_spec(tmp_path, variants='"dropout0.3" = { dropout = 0.3 }',
                      sweep="batch_size = [32]",
                      ablation='[ablation.changes]\ncw = { class_weight = "balanced" }')
    assert load_error(path, sets=[item]).startswith(f"--set {item!r}: {expected}")


def test_the_files_own_mistake_stays_the_files_beside_a_set_of_the_same_section(
        tmp_path: Path) -> None:
    """The allowed knobs listed in the message name the --set's key too: that is not blame."""
    path = write_spec(tmp_path, sweep="batchsize = [32]")
    message = load_error(path, sets=["sweep.learning_rate=[1e-4]"])
    assert message.startswith(f"{path}: [sweep] unknown knob 'batchsize'")


# --------------------------------------------------------------------------- apply_sets, resolve_storage


def test_apply_sets_creates_missing_tables(tmp_path: Path) -> None:
    raw: dict = {}
    apply_sets(raw, ["baseline.epochs=2", "model.config.num_hidden_layers=2"], tmp_path / "x.toml")
    assert raw == {"baseline": {"epochs": 2}, "model": {"config": {"num_hidden_layers": 2}}}


def test_apply_sets_joins_every_middle_part_into_the_variant_name(tmp_path: Path) -> None:
    raw: dict = {}
    apply_sets(raw, ["variants.a.b.c.dropout=0.1"], tmp_path / "x.toml")
    assert raw == {"variants": {"a.b.c": {"dropout": 0.1}}}


@pytest.mark.parametrize(("text", "value"), [
    ("2", 2),
    ("5e-5", 5e-5),
    ("true", True),
    ('"quoted"', "quoted"),
    ("[1, 2]", [1, 2]),
    ("bare", "bare"),
    ("./x.csv", "./x.csv"),
    ("a=b", "a=b"),
    ("", ""),
])
def test_apply_sets_parses_values_as_toml_or_plain_string(tmp_path: Path, text: str, value: object) -> None:
    raw: dict = {}
    apply_sets(raw, [f"data.key={text}"], tmp_path / "x.toml")
    assert raw["data"]["key"] == value


def test_apply_sets_with_no_items_changes_nothing(tmp_path: Path) -> None:
    raw = {"baseline": {"epochs": 1}}
    apply_sets(raw, [], tmp_path / "x.toml")
    assert raw == {"baseline": {"epochs": 1}}


def test_apply_sets_names_the_file_when_a_part_is_not_a_table(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    with pytest.raises(AblateInputError, match="'epochs' is not a table in .*x.toml"):
        apply_sets({"baseline": {"epochs": 1}}, ["baseline.epochs.x=1"], path)


@pytest.mark.parametrize("url", [
    "sqlite:////abs/s.db", "sqlite:///:memory:", "postgresql://u@h/db", "mysql+pymysql://u:p@h/db", "sqlite://",
])
def test_resolve_storage_keeps_absolute_and_non_sqlite_urls(url: str) -> None:
    assert resolve_storage(url) == url


def test_resolve_storage_makes_relative_sqlite_absolute(tmp_path: Path) -> None:
    assert resolve_storage("sqlite:///s.db") == "sqlite:///" + str(tmp_path.resolve() / "s.db")


def test_resolve_storage_normalises_dot_dot(tmp_path: Path) -> None:
    assert resolve_storage("sqlite:///a/../s.db") == "sqlite:///" + str(tmp_path.resolve() / "s.db")


def test_resolve_storage_expands_home(tmp_path: Path) -> None:
    assert resolve_storage("sqlite:///~/s.db") == "sqlite:///" + str(Path.home().resolve() / "s.db")


def test_a_journal_storage_under_the_home_folder_is_there_not_in_a_folder_named_tilde(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """journal:///~/s.journal was opened as /~/s.journal (a folder `~` made at the root), where
    sqlite:///~/s.db and output_dir = "~/x" are the home folder's."""
    from ablation.queue import _journal_path

    monkeypatch.setenv("HOME", str(tmp_path))
    url = resolve_storage("journal:///~/runs/s.journal")
    assert _journal_path(url) == tmp_path.resolve() / "runs" / "s.journal"
    assert url == "journal:///" + str(tmp_path.resolve() / "runs" / "s.journal").lstrip("/")
    assert resolve_storage("journal:///data/s.journal") == "journal:///data/s.journal"


# --------------------------------------------------------------------------- variants.expand


@pytest.fixture
def two_variant_spec(tmp_path: Path) -> ExperimentSpec:
    return load_spec(write_spec(
        tmp_path,
        experiment="seeds = [1, 2]",
        baseline="learning_rate = 2e-5\nbatch_size = 16",
        variants='bs32 = { batch_size = 32 }\n"dropout0.3" = { dropout = 0.3, learning_rate = 5e-5 }',
    ))


def test_expand_orders_baseline_then_variants_with_seeds_inner(two_variant_spec: ExperimentSpec) -> None:
    keys = [trial.key for trial in expand(two_variant_spec)]
    assert keys == [
        "baseline-s1", "baseline-s2",
        "baseline_bs32-s1", "baseline_bs32-s2",
        "baseline_dropout0.3-s1", "baseline_dropout0.3-s2",
    ]


def test_expand_makes_one_trial_per_variant_and_seed(two_variant_spec: ExperimentSpec) -> None:
    trials = expand(two_variant_spec)
    assert all(isinstance(trial, TrialSpec) for trial in trials)
    assert [(t.variant, t.seed) for t in trials][:2] == [("baseline", 1), ("baseline", 2)]
    assert len({trial.key for trial in trials}) == len(trials) == 6


def test_expand_baseline_trial_has_no_overrides(two_variant_spec: ExperimentSpec) -> None:
    baseline = expand(two_variant_spec)[0]
    assert baseline.overrides == {}
    assert baseline.recipe == two_variant_spec.baseline


def test_expand_variant_recipe_is_baseline_with_overrides(two_variant_spec: ExperimentSpec) -> None:
    trial = next(t for t in expand(two_variant_spec) if t.variant == "baseline_dropout0.3")
    assert trial.overrides == {"dropout": 0.3, "learning_rate": 5e-5}
    assert trial.recipe.dropout == 0.3
    assert trial.recipe.learning_rate == 5e-5
    assert trial.recipe.batch_size == 16
    assert isinstance(trial.recipe, Recipe)


def test_expand_copies_overrides(two_variant_spec: ExperimentSpec) -> None:
    trial = next(t for t in expand(two_variant_spec) if t.variant == "baseline_bs32")
    trial.overrides["epochs"] = 9
    assert two_variant_spec.variants["bs32"] == {"batch_size": 32}


def test_expand_without_variants_gives_baseline_only(tmp_path: Path) -> None:
    assert [t.key for t in expand(load_spec(write_spec(tmp_path)))] == ["baseline-s42"]


def test_variant_names(two_variant_spec: ExperimentSpec) -> None:
    assert variant_names(two_variant_spec) == ["baseline", "baseline_bs32", "baseline_dropout0.3"]


def test_describe_changes_writes_numbers_as_a_person_would() -> None:
    assert describe_changes({"learning_rate": 5e-5, "batch_size": 32}) == "learning_rate=5e-5, batch_size=32"


def test_describe_changes_of_nothing_is_a_dash() -> None:
    assert describe_changes({}) == "—"


def test_describe_changes_keeps_strings() -> None:
    text = describe_changes({"class_weight": "balanced", "dropout": 0.3})
    assert text == "class_weight=balanced, dropout=0.3"


def test_describe_changes_writes_class_weights_as_the_file_does() -> None:
    # the file's `class_weight = [1, 2, 3]` is read as floats; the name says cw-1-2-3, and so
    # must the report's changes column and the plan, not [1.0, 2.0, 3.0]
    assert describe_changes({"class_weight": [1.0, 2.0, 3.0]}) == "class_weight=[1, 2, 3]"
    assert describe_changes({"class_weight": [0.5, 1e-4]}) == "class_weight=[0.5, 1e-4]"


@pytest.mark.parametrize(("value", "text"), [
    (5e-05, "5e-5"),
    (1e-4, "1e-4"),
    (1.5e-5, "1.5e-5"),
    (0.3, "0.3"),
    (32.0, "32"),
    (2e-5, "2e-5"),
])
def test_human_number(value: float, text: str) -> None:
    assert human_number(value) == text


@pytest.mark.parametrize("line", [
    "learning_rate = inf", "epochs = inf", "weight_decay = inf", "max_grad_norm = inf",
    "learning_rate = nan",
])
def test_non_finite_numbers_are_rejected(tmp_path: Path, line: str) -> None:
    assert "must be a finite number" in load_error(write_spec(tmp_path, baseline=line))


def test_seed_beyond_numpy_range_is_rejected(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, experiment="seeds = [4294967296]"))
    assert "[experiment] seeds" in message and "[0, 2**32)" in message


def test_unquoted_dotted_variant_name_gets_a_quoting_hint(tmp_path: Path) -> None:
    message = load_error(write_spec(tmp_path, variants="dropout0.3 = { dropout = 0.3 }"))
    assert 'quote variant names that contain a dot, e.g. "dropout0.3"' in message


def test_bare_sqlite_prefix_is_left_alone() -> None:
    assert resolve_storage("sqlite:///") == "sqlite:///"


def test_error_lines_show_values_as_toml_writes_them(tmp_path: Path) -> None:
    """The user wrote TOML: an error line quotes their value in it, not in Python's spelling."""
    import datetime

    from ablation.config import toml_value

    assert toml_value(True) == "true" and toml_value(5e-5) == "5e-5" and toml_value(0.001) == "0.001"
    assert toml_value({"hidden_size": 37, "act": "gelu"}) == "{ hidden_size = 37, act = 'gelu' }"
    assert toml_value([1, "it's"]) == "[1, \"it's\"]"  # a literal string cannot hold '
    assert toml_value(datetime.date(2024, 1, 1)) == "2024-01-01"
    message = load_error(write_spec(tmp_path, baseline="epochs = 2024-01-01"))
    assert "[baseline] epochs = 2024-01-01 must be" in message
    message = load_error(write_spec(tmp_path, baseline="learning_rate = true"))
    assert "[baseline] learning_rate = true must be" in message
    message = load_error(write_spec(tmp_path, baseline="model_config = { num_hidden_layers = 0 }"))
    assert "model_config = { num_hidden_layers = 0 } sets num_hidden_layers = 0" in message


def test_a_layer_count_beyond_any_model_is_refused_and_the_deepest_in_use_are_not(tmp_path: Path) -> None:
    """Building the skeleton of a billion layers never ended; 1000 layers still load."""
    message = load_error(write_spec(tmp_path, model="config = { n_layer = 1001 }"))
    assert "[model] config = { n_layer = 1001 } sets n_layer = 1001: at most 1000 layers" in message
    message = load_error(write_spec(tmp_path, variants="deep = { model_config = { encoder_layers = 1e9 } }"))
    assert "sets encoder_layers = 1000000000.0: at most 1000 layers" in message
    spec = load_spec(write_spec(tmp_path, baseline="model_config = { num_hidden_layers = 1000 }"))
    assert spec.baseline.model_config == {"num_hidden_layers": 1000}
