"""Variants from [variants], [sweep] lists and [ablation] changes: names, overrides, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ablation.config import load_spec
from ablation.errors import AblateInputError
from ablation.variants import expand, named_variants, redundant_variants, reference_of, suffix_for


def spec_from(tmp_path: Path, body: str):
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent("""\
        [data]
        dataset = "mteb/x"
        [model]
        name = "org/model"
        [baseline]
        batch_size = 16
        learning_rate = 2e-5
        """) + textwrap.dedent(body), encoding="utf-8")
    return load_spec(path)


def error_from(tmp_path: Path, body: str) -> str:
    with pytest.raises(AblateInputError) as info:
        spec_from(tmp_path, body)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("knob, value, suffix", [
    ("batch_size", 32, "bs32"),
    ("learning_rate", 5e-5, "lr5e-5"),
    ("learning_rate", 1e-4, "lr1e-4"),
    ("dropout", 0.3, "dropout0.3"),
    ("class_weight", "balanced", "cw-balanced"),
    ("class_weight", [1.0, 2.5], "cw-1-2.5"),
    ("weight_decay", 0.01, "wd0.01"),
    ("epochs", 2.0, "epochs2"),
    ("warmup_ratio", 0.1, "warmup0.1"),
    ("lr_scheduler", "cosine", "sched-cosine"),
    ("max_length", 64, "maxlen64"),
    ("label_smoothing", 0.1, "ls0.1"),
    ("gradient_accumulation_steps", 4, "accum4"),
    ("max_grad_norm", 0.5, "clip0.5"),
    ("early_stopping_patience", 3, "patience3"),
    ("precision", "bf16", "precision-bf16"),
    ("max_train_samples", 2000, "n2000"),
    ("model_config", {"num_hidden_layers": 2}, "layers2"),
    ("model", "google-bert/bert-base-uncased", "model-bert-base-uncased"),
    ("eval_batch_size", 128, "eval_batch_size128"),  # no short form: the knob's own name
    ("dropout", None, "dropout-unset"),  # "" or false: the model's own, as the changes say
    ("model_config", None, "model_config-unset"),
    ("model", None, "model-unset"),
])
def test_generated_suffixes_read_as_a_person_writes_them(knob, value, suffix):
    assert suffix_for(knob, value) == suffix


def test_sweep_lists_expand_one_factor_at_a_time(tmp_path):
    spec = spec_from(tmp_path, """
        [sweep]
        batch_size = [16, 32]
        learning_rate = [5e-5, 1e-4]
        dropout = [0.3]
        class_weight = ["balanced"]
        """)
    assert named_variants(spec) == {
        "baseline_bs32": {"batch_size": 32},  # 16 is the baseline's own value: no variant
        "baseline_lr5e-5": {"learning_rate": 5e-5},
        "baseline_lr1e-4": {"learning_rate": 1e-4},
        "baseline_dropout0.3": {"dropout": 0.3},
        "baseline_cw-balanced": {"class_weight": "balanced"},
    }


def test_sweep_values_that_the_model_and_data_sections_already_set_are_the_baseline(tmp_path):
    """model, model_config and max_train_samples fall back to [model] and [data] in the baseline."""
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent("""\
        [data]
        dataset = "mteb/x"
        max_train_samples = 64
        [model]
        name = "org/model"
        config = { num_hidden_layers = 1 }
        [baseline]
        batch_size = 16
        [sweep]
        model = ["org/model", "org/other"]
        model_config = [{ num_hidden_layers = 1 }, { num_hidden_layers = 2 }]
        max_train_samples = [64, 32]
        """), encoding="utf-8")
    assert named_variants(load_spec(path)) == {
        "baseline_model-other": {"model": "org/other"},
        "baseline_layers2": {"model_config": {"num_hidden_layers": 2}},
        "baseline_n32": {"max_train_samples": 32},
    }


def test_sweep_and_variants_combine_in_file_section_order(tmp_path):
    spec = spec_from(tmp_path, """
        [variants]
        mine = { warmup_ratio = 0.1 }
        [sweep]
        batch_size = [32]
        """)
    assert list(named_variants(spec)) == ["baseline_mine", "baseline_bs32"]


@pytest.mark.parametrize("text, said", [
    ("[variants]\nBS32 = { batch_size = 64 }\n[sweep]\nbatch_size = [32]\n",
     "variant names 'baseline_BS32' ([variants] BS32) and 'baseline_bs32' ([sweep] batch_size) "
     "differ only in case"),
    ("[ablation]\n[ablation.changes]\ncw = { class_weight = 'balanced' }\n"
     "CW = { weight_decay = 0.1 }\n",
     "variant names 'full_minus_cw' ([ablation.changes] cw) and 'full_minus_CW' "
     "([ablation.changes] CW) differ only in case"),
])
def test_names_that_differ_only_in_case_are_an_error(tmp_path, text, said):
    """trials/baseline_BS32-s42 and trials/baseline_bs32-s42 are one folder on macOS and
    Windows: one trial's log, checkpoints and kept model would overwrite the other's."""
    message = error_from(tmp_path, text)
    assert said in message and "one folder on macOS and Windows; rename one" in message


def test_a_name_produced_twice_is_an_error(tmp_path):
    message = error_from(tmp_path, """
        [variants]
        bs32 = { batch_size = 32, learning_rate = 1e-4 }
        [sweep]
        batch_size = [32]
        """)
    assert "variant name 'baseline_bs32' is produced twice ([variants] bs32 and [sweep] batch_size)" \
        in message


@pytest.mark.parametrize("values, shown", [
    ("batch_size = [16, 16, 32]", "batch_size lists 16 twice"),  # 16: the baseline's value
    ("learning_rate = [1e-3, 0.001]", "learning_rate lists 0.001 twice"),
    ("learning_rate = [5e-5, 0.00005]", "learning_rate lists 5e-5 twice"),
])
def test_a_sweep_value_listed_twice_is_an_error_also_the_baselines(tmp_path, values, shown):
    message = error_from(tmp_path, f"""
        [sweep]
        {values}
        """)
    assert f"[sweep] {shown}; list each value once" in message


def test_generated_names_use_only_the_characters_of_written_names(tmp_path):
    """A model folder `my model` names the variant `model-my-model`: the name is a folder, a
    SwanLab run and an --only argument."""
    (tmp_path / "sp ace" / "my model").mkdir(parents=True)
    spec = spec_from(tmp_path, f"""
        [sweep]
        model = ["{tmp_path / 'sp ace' / 'my model'}"]
        lr_scheduler = ["cosine_with_restarts"]
        """)
    assert list(named_variants(spec)) == ["baseline_model-my-model",
                                          "baseline_sched-cosine_with_restarts"]


def test_two_sweep_values_that_give_one_name_are_not_called_the_same_value(tmp_path):
    """Two model folders of one name: different values, one generated name."""
    for parent in ("a", "b"):
        (tmp_path / parent / "tiny").mkdir(parents=True)
    message = error_from(tmp_path, f"""
        [sweep]
        model = ["{tmp_path / 'a' / 'tiny'}", "{tmp_path / 'b' / 'tiny'}"]
        """)
    assert (f"[sweep] model values '{tmp_path / 'a' / 'tiny'}' and '{tmp_path / 'b' / 'tiny'}' "
            "both give the variant name 'baseline_model-tiny'; give them names of your own in "
            "[variants]") in message


@pytest.mark.parametrize("body, expected", [
    ("[sweep]\nbatch_size = 32\n", "[sweep] batch_size = 32 must be a non-empty list"),
    ("[sweep]\nbatch_size = []\n", "[sweep] batch_size = [] must be a non-empty list"),
    ("[sweep.batch_size]\nvalues = [32]\n",  # a table is not a list: the example is a list
     "[sweep] batch_size = { values = [32] } must be a non-empty list of values, e.g. "
     "batch_size = [32]"),
    ("[sweep]\nbatch_sizes = [8]\n", "did you mean 'batch_size'"),
    # the example is a list the knob takes, never the refused value again
    ("[sweep]\ndropout = 1.5\n", "[sweep] dropout = 1.5 must be a non-empty list of values, e.g. "
     "dropout = [0.3]"),
    ("[sweep]\nbatch_size = \"8,16\"\n", "[sweep] batch_size = '8,16' must be a non-empty list "
     "of values, e.g. batch_size = [8, 16]"),
    # an empty text (`--set sweep.batch_size=`) holds no values: the example is the knob's own,
    # not the empty list the line says is refused
    ("[sweep]\nbatch_size = \"\"\n", "[sweep] batch_size = '' must be a non-empty list of "
     "values, e.g. batch_size = [32]"),
    ("[sweep]\ndropout = [1.5]\n", "[sweep] dropout = 1.5 must be a finite number in [0, 1)"),
    ("[ablation]\nmode = \"leave-two-out\"\n[ablation.changes]\ncw = { class_weight = \"balanced\" }\n",
     "[ablation] mode = 'leave-two-out' must be one of"),
    ("[ablation]\nmode = \"add-one\"\n", "[ablation.changes] must name at least one change"),
    ("[ablation.changes]\ncw = { class_weigth = \"balanced\" }\n", "did you mean 'class_weight'"),
    ("[ablation.changes]\na = { dropout = 0.2 }\nb = { dropout = 0.3 }\n",
     "'b' and 'a' both set 'dropout'"),
    ("[ablation]\nmodes = \"both\"\n[ablation.changes]\na = { dropout = 0.2 }\n",
     "unknown key 'modes' in [ablation]; did you mean 'mode'?"),
])
def test_sweep_and_ablation_errors(tmp_path, body, expected):
    assert expected in error_from(tmp_path, body)


ABLATION = """
    [ablation]
    mode = "{mode}"
    [ablation.changes]
    cw = {{ class_weight = "balanced" }}
    cosine = {{ lr_scheduler = "cosine", warmup_ratio = 0.1 }}
    ls = {{ label_smoothing = 0.1 }}
    """


def test_leave_one_out_runs_the_full_recipe_and_each_removal(tmp_path):
    spec = spec_from(tmp_path, ABLATION.format(mode="leave-one-out"))
    assert named_variants(spec) == {
        "full": {"class_weight": "balanced", "lr_scheduler": "cosine", "warmup_ratio": 0.1,
                 "label_smoothing": 0.1},
        "full_minus_cw": {"lr_scheduler": "cosine", "warmup_ratio": 0.1, "label_smoothing": 0.1},
        "full_minus_cosine": {"class_weight": "balanced", "label_smoothing": 0.1},
        "full_minus_ls": {"class_weight": "balanced", "lr_scheduler": "cosine", "warmup_ratio": 0.1},
    }


def test_add_one_runs_each_change_alone_on_the_baseline(tmp_path):
    spec = spec_from(tmp_path, ABLATION.format(mode="add-one"))
    assert named_variants(spec) == {
        "baseline_plus_cw": {"class_weight": "balanced"},
        "baseline_plus_cosine": {"lr_scheduler": "cosine", "warmup_ratio": 0.1},
        "baseline_plus_ls": {"label_smoothing": 0.1},
    }


def test_both_runs_all_and_each_is_compared_with_its_reference(tmp_path):
    spec = spec_from(tmp_path, ABLATION.format(mode="both"))
    names = ["baseline", *named_variants(spec)]
    assert len(names) == 1 + 1 + 3 + 3
    assert reference_of("full_minus_cw", names) == "full"
    assert reference_of("baseline_plus_cw", names) == "baseline"
    assert reference_of("full", names) == "baseline"


def test_seeds_multiply_every_variant_with_the_same_seeds(tmp_path):
    spec = spec_from(tmp_path, """
        [experiment]
        seeds = [1, 2, 3]
        [sweep]
        max_train_samples = [500]
        model_config = [{ num_hidden_layers = 2 }]
        """)
    trials = expand(spec)
    assert [t.key for t in trials] == [
        "baseline-s1", "baseline-s2", "baseline-s3", "baseline_n500-s1", "baseline_n500-s2",
        "baseline_n500-s3", "baseline_layers2-s1", "baseline_layers2-s2", "baseline_layers2-s3"]
    assert trials[3].recipe.max_train_samples == 500
    assert trials[6].recipe.model_config == {"num_hidden_layers": 2}
    assert trials[6].recipe.batch_size == 16  # everything else is the baseline's


def test_a_local_model_folder_in_a_variant_becomes_absolute(tmp_path, monkeypatch):
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    spec = spec_from(tmp_path, '[variants]\nlocal = { model = "my-model" }\n')
    assert named_variants(spec)["baseline_local"]["model"] == str(tmp_path / "my-model")


def test_variants_that_train_the_baseline_or_an_earlier_variant_again_get_a_note(tmp_path):
    spec = spec_from(tmp_path, """
        [variants]
        same = { batch_size = 16 }
        big = { batch_size = 32 }
        [sweep]
        batch_size = [32]
        learning_rate = [5e-5]
        """)
    assert redundant_variants(spec) == [
        "variant 'baseline_same' (batch_size=16) trains the same recipe as 'baseline'",
        "variant 'baseline_bs32' (batch_size=32) trains the same recipe as 'baseline_big'"]
    assert redundant_variants(spec_from(tmp_path, "[sweep]\nbatch_size = [32]\n")) == []


def test_a_sweep_of_only_the_baselines_value_gets_a_note(tmp_path):
    spec = spec_from(tmp_path, "[sweep]\nbatch_size = [16]\nlearning_rate = [2e-5, 5e-5]\n")
    assert redundant_variants(spec) == [
        "[sweep] batch_size = [16] lists only the baseline's value: it adds no variant"]


def test_knobs_that_change_nothing_in_their_recipe_get_a_note(tmp_path):
    """transformers' constant schedule takes no warmup, and max_steps decides the length whatever
    the epochs: such a variant trains the baseline again, and the note says why."""
    spec = spec_from(tmp_path, """
        max_steps = 100
        [variants]
        steady = { lr_scheduler = "constant", warmup_ratio = 0.1 }
        steady_ramp = { lr_scheduler = "constant_with_warmup", warmup_ratio = 0.1 }
        [sweep]
        epochs = [1, 5]
        """)
    assert redundant_variants(spec) == [
        "baseline_steady: warmup_ratio=0.1 changes nothing: lr_scheduler = 'constant' has no "
        "warmup (constant_with_warmup has)",
        "baseline_epochs1: epochs=1 changes nothing: max_steps = 100 sets how long training runs",
        "baseline_epochs5: epochs=5 changes nothing: max_steps = 100 sets how long training runs",
        "variant 'baseline_epochs1' (epochs=1) trains the same recipe as 'baseline'",
        "variant 'baseline_epochs5' (epochs=5) trains the same recipe as 'baseline'"]
    baseline_only = spec_from(tmp_path, 'lr_scheduler = "constant"\nwarmup_ratio = 0.06\n')
    assert redundant_variants(baseline_only) == [
        "baseline: warmup_ratio=0.06 changes nothing: lr_scheduler = 'constant' has no warmup "
        "(constant_with_warmup has)"]


def test_a_knob_that_changes_nothing_counts_as_unset_against_a_recipe_that_leaves_it_unset(tmp_path):
    """README: such a knob "counts as unset when recipes are compared". Warmup added to a constant
    schedule trains the baseline again, and so does a variant whose only change is that warmup
    beside one that names the constant schedule: the same-recipe note names them, as it does
    where both sides set the knob."""
    spec = spec_from(tmp_path, """
        lr_scheduler = "constant"
        [variants]
        ramp = { warmup_ratio = 0.1 }
        """)
    assert redundant_variants(spec)[-1] == (
        "variant 'baseline_ramp' (warmup_ratio=0.1) trains the same recipe as 'baseline'")
    spec = spec_from(tmp_path, """
        [variants]
        steady = { lr_scheduler = "constant" }
        steady_ramp = { lr_scheduler = "constant", warmup_ratio = 0.1 }
        """)
    assert redundant_variants(spec)[-1] == (
        "variant 'baseline_steady_ramp' (lr_scheduler=constant, warmup_ratio=0.1) trains the same "
        "recipe as 'baseline_steady'")
    spec = spec_from(tmp_path, """
        max_steps = 100
        epochs = 1
        [variants]
        long = { epochs = 5 }
        """)
    assert redundant_variants(spec)[-1] == (
        "variant 'baseline_long' (epochs=5) trains the same recipe as 'baseline'")


def test_cosine_with_restarts_gets_a_note_that_it_trains_the_cosine_schedule(tmp_path):
    """No knob passes num_cycles, and transformers' one cycle never restarts: the schedule is
    cosine's, step for step, so a restarts variant compared with a cosine one is an A/A comparison
    under another name."""
    spec = spec_from(tmp_path, """
        [variants]
        cosine = { lr_scheduler = "cosine" }
        restarts = { lr_scheduler = "cosine_with_restarts" }
        """)
    assert redundant_variants(spec) == [
        "baseline_restarts: lr_scheduler=cosine_with_restarts trains as lr_scheduler = 'cosine': "
        "no knob sets its num_cycles, and with one cycle it never restarts",
        "variant 'baseline_restarts' (lr_scheduler=cosine_with_restarts) trains the same recipe as "
        "'baseline_cosine'"]


def test_polynomial_gets_a_note_that_it_trains_almost_the_linear_schedule(tmp_path):
    """At transformers' default power 1 (no knob sets it) the polynomial decay is linear's, to
    1e-7 rather than 0: a polynomial-vs-linear comparison is nearly an A/A one, but still trained."""
    spec = spec_from(tmp_path, """
        [variants]
        poly = { lr_scheduler = "polynomial" }
        """)
    assert redundant_variants(spec) == [
        "baseline_poly: lr_scheduler=polynomial trains almost as lr_scheduler = 'linear': no knob "
        "sets its power, and at power 1 it is the linear decay, ending at 1e-7 rather than 0"]


def test_a_model_config_dropout_that_the_dropout_knob_overwrites_gets_a_note(tmp_path):
    """The dropout knobs are applied over the model config: with the baseline's dropout = 0.1, a
    variant's model_config = { hidden_dropout_prob = 0.2 } trained at 0.1, the baseline again,
    and its report row said hidden_dropout_prob=0.2 made no difference."""
    spec = spec_from(tmp_path, """
        dropout = 0.1
        [variants]
        hdrop = { model_config = { hidden_dropout_prob = 0.2, num_hidden_layers = 2 } }
        head = { classifier_dropout = 0.3, model_config = { classifier_dropout = 0.5 } }
        own = { dropout = "", model_config = { hidden_dropout_prob = 0.2 } }
        """)
    assert redundant_variants(spec) == [
        "baseline_hdrop: model_config hidden_dropout_prob = 0.2 changes nothing: dropout = 0.1 "
        "sets it (dropout = \"\" in this variant leaves it to model_config)",
        "baseline_head: model_config classifier_dropout = 0.5 changes nothing: classifier_dropout = "
        "0.3 sets it (classifier_dropout = \"\" in this variant leaves it to model_config)"]
    same = spec_from(tmp_path, """
        dropout = 0.1
        [variants]
        hdrop = { model_config = { hidden_dropout_prob = 0.2 } }
        """)
    assert redundant_variants(same)[1:] == [
        "variant 'baseline_hdrop' (model_config={hidden_dropout_prob=0.2}) trains the same recipe "
        "as 'baseline'"]
    path = tmp_path / "model_config.toml"  # [model] config is the baseline's own
    path.write_text('[data]\ndataset = "mteb/x"\n[model]\nname = "org/model"\n'
                    'config = { attention_probs_dropout_prob = 0.2 }\n[baseline]\ndropout = 0.1\n')
    assert redundant_variants(load_spec(path)) == [
        "baseline: [model] config attention_probs_dropout_prob = 0.2 changes nothing: dropout = 0.1 "
        "sets it (dropout = \"\" in [baseline] leaves it to [model] config)"]


def test_changes_are_described_as_the_file_writes_them():
    from ablation.variants import describe_changes

    assert describe_changes({"group_by_length": True, "learning_rate": 5e-5}) == \
        "group_by_length=true, learning_rate=5e-5"
    assert describe_changes({"dropout": None}) == "dropout=unset"  # dropout = "" in the file


def test_a_variants_model_config_adds_to_the_baselines(tmp_path):
    """A variant that sets one config key trains the baseline's model with that key changed, not
    a model without the baseline's other keys (6 layers where the baseline trains 2)."""
    spec = spec_from(tmp_path, """
        model_config = { num_hidden_layers = 2 }
        [variants]
        hdrop = { model_config = { hidden_dropout_prob = 0.2 } }
        same = { model_config = { num_hidden_layers = 2 } }
        plain = { model_config = false }
        [sweep]
        model_config = [{ num_hidden_layers = 2 }, { hidden_dropout_prob = 0.3 }]
        """)
    assert list(named_variants(spec)) == ["baseline_hdrop", "baseline_same", "baseline_plain",
                                          "baseline_hdrop0.3"]  # layers2: the baseline's own
    recipes = {t.variant: t.recipe.model_config for t in expand(spec)}
    assert recipes == {"baseline": {"num_hidden_layers": 2},
                       "baseline_hdrop": {"num_hidden_layers": 2, "hidden_dropout_prob": 0.2},
                       "baseline_same": {"num_hidden_layers": 2},
                       "baseline_plain": None,  # false: back to [model] config alone
                       "baseline_hdrop0.3": {"num_hidden_layers": 2, "hidden_dropout_prob": 0.3}}
    assert {t.variant: t.overrides for t in expand(spec)}["baseline_hdrop"] == {
        "model_config": {"hidden_dropout_prob": 0.2}}  # the change, as the file writes it
    assert redundant_variants(spec) == [
        "variant 'baseline_same' (model_config={num_hidden_layers=2}) trains the same recipe as "
        "'baseline'"]


def test_a_sweep_value_that_unsets_a_knob_names_its_variant_unset(tmp_path):
    """`false` in a [sweep] list goes back to the default the baseline left: a variant named as
    its changes say (dropout=unset), not by Python's None, and no traceback for model_config."""
    spec = spec_from(tmp_path, """
        dropout = 0.2
        model_config = { num_hidden_layers = 2 }
        [sweep]
        dropout = [false, 0.3]
        model_config = [false]
        """)
    assert named_variants(spec) == {"baseline_dropout-unset": {"dropout": None},
                                    "baseline_dropout0.3": {"dropout": 0.3},
                                    "baseline_model_config-unset": {"model_config": None}}
