"""Trial set-up in train.py: the pretrained weights are read once per worker process."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import transformers
from conftest import make_texts, seeded_init, tiny_experiment

from ablation import cli, train
from ablation.config import load_spec
from ablation.errors import AblateInputError
from ablation.queue import open_study
from ablation.train import ModelSource, PretrainedWeights, load_model_config

LABELS = ["neg", "neu", "pos"]


def _load(cache: PretrainedWeights, source: ModelSource, config=None, seed: int = 7) -> torch.nn.Module:
    transformers.set_seed(seed)
    return cache.load(source, config or load_model_config(source, LABELS))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _fresh_load(folder: Path, source: ModelSource, seed: int = 7) -> tuple[torch.nn.Module, float]:
    """A model loaded from the files, and the next random number after it."""
    transformers.set_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(folder), config=load_model_config(source, LABELS), ignore_mismatched_sizes=True)
    return model, torch.rand(1).item()


def test_a_checkpoint_saved_in_bf16_trains_fp32_weights(tiny_model_dir: Path, tmp_path: Path):
    """transformers loads a checkpoint in the dtype its config.json names: one saved in bf16 (as
    many on the Hub are) trained bf16 weights and AdamW state, outside `precision`, and the
    small updates of fine-tuning fell below bf16's resolution."""
    folder = tmp_path / "bf16"
    transformers.AutoModelForSequenceClassification.from_pretrained(
        str(tiny_model_dir)).to(torch.bfloat16).save_pretrained(folder)
    for name in tiny_model_dir.iterdir():
        if not (folder / name.name).exists():
            shutil.copy(name, folder)
    source = ModelSource(str(folder), None, {})
    cache = PretrainedWeights()
    first, second = _load(cache, source), _load(cache, source)  # from the files, then memory
    for model in (first, second):
        assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}


def test_later_loads_read_no_weights_and_match_a_fresh_load(tiny_model_dir: Path, tmp_path: Path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    source = ModelSource(str(folder), None, {})
    config = load_model_config(source, LABELS)
    fresh, next_random = _fresh_load(folder, source)  # its 2-class head is re-drawn for 3 classes
    cache = PretrainedWeights()
    first = _load(cache, source)
    assert _same_weights(first, fresh)
    with torch.no_grad():  # as training would: the copy kept must not change with it
        for parameter in first.parameters():
            parameter.add_(1.0)

    shutil.rmtree(folder)  # nothing left to read: the second load is served from memory
    second = _load(cache, source, config)
    assert _same_weights(second, fresh)  # the classifier head drew the same random numbers,
    assert torch.rand(1).item() == next_random  # and no more of them

    cache.clear()
    with pytest.raises(OSError):
        _load(cache, source, config)


def test_another_model_config_is_read_anew(tiny_model_dir: Path):
    cache = PretrainedWeights()
    full = _load(cache, ModelSource(str(tiny_model_dir), None, {}))
    one_layer = _load(cache, ModelSource(str(tiny_model_dir), None, {"num_hidden_layers": 1}))
    assert len(full.bert.encoder.layer) == 2 and len(one_layer.bert.encoder.layer) == 1
    prefix = "bert.encoder.layer.0."
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in one_layer.state_dict().items()
               if k.startswith(prefix))


def _results(path: Path) -> dict[str, dict]:
    trials = open_study(load_spec(path), create=False).get_trials()
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    return {t.user_attrs["key"]: t.user_attrs["result"] for t in trials}


def test_a_study_reads_the_weights_once_and_gets_the_results_of_fresh_loads(write_experiment,
                                                                             monkeypatch):
    variants = 'bs32 = { batch_size = 32 }\ndropout = { dropout = 0.3 }\n'
    auto = transformers.AutoModelForSequenceClassification
    real_from_pretrained = auto.from_pretrained
    reads: list[str] = []

    def counted(name, *args, **kwargs):
        reads.append(str(name))
        return real_from_pretrained(name, *args, **kwargs)

    monkeypatch.setattr(auto, "from_pretrained", counted)
    cached = write_experiment(name="cached", variants=variants)
    assert cli.main(["run", str(cached)]) == 0
    assert len(reads) == 1  # three trials, one read

    real_load = train.PRETRAINED.load

    def uncached(source, config):
        train.PRETRAINED.clear()
        return real_load(source, config)

    monkeypatch.setattr(train.PRETRAINED, "load", uncached)
    fresh = write_experiment(name="fresh", variants=variants)
    assert cli.main(["run", str(fresh)]) == 0
    assert len(reads) == 4  # every trial read the files
    a, b = _results(cached), _results(fresh)
    assert a.keys() == b.keys() == {"baseline-s42", "baseline_bs32-s42", "baseline_dropout-s42"}
    for key in a:
        assert a[key]["history"] == b[key]["history"], key
        assert a[key]["validation"] == b[key]["validation"], key


def test_trials_run_with_the_long_lived_objects_frozen_and_the_freeze_ends_with_the_study(
        write_experiment, monkeypatch):
    import gc

    frozen_during_trials: list[int] = []
    real_train = train.train_trial

    def watched(*args, **kwargs):
        frozen_during_trials.append(gc.get_freeze_count())
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train, "train_trial", watched)
    assert cli.main(["run", str(write_experiment())]) == 0
    assert len(frozen_during_trials) == 2 and min(frozen_during_trials) > 10_000
    assert gc.get_freeze_count() == 0


def _trainer_with_a_scripted_metric(folder: Path, best_in_memory: bool) -> tuple[train.AblateTrainer, dict]:
    """An AblateTrainer on a tiny random BERT whose evaluations score 0.2, 0.9, 0.4, 0.3 (best: the
    second), with the weights at each evaluation recorded."""
    transformers.set_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    rows = [{"input_ids": [1, 5 + i % 7, 9, 2], "attention_mask": [1, 1, 1, 1], "labels": i % 2}
            for i in range(32)]
    scores = iter([0.2, 0.9, 0.4, 0.3])
    weights_at: dict[int, dict[str, torch.Tensor]] = {}

    class Record(transformers.TrainerCallback):
        def on_evaluate(self, args, state, control, model=None, **kwargs):
            weights_at[state.global_step] = {k: v.clone() for k, v in model.state_dict().items()}

    args = transformers.TrainingArguments(
        output_dir=str(folder), per_device_train_batch_size=8, num_train_epochs=4, learning_rate=1e-2,
        eval_strategy="steps", eval_steps=4, save_strategy="best", save_total_limit=1, save_only_model=True,
        load_best_model_at_end=True, metric_for_best_model="score", report_to="none", use_cpu=True,
        disable_tqdm=True, seed=0, data_seed=0)
    trainer = train.AblateTrainer(model=model, args=args, train_dataset=rows, eval_dataset=rows[:8],
                                  compute_metrics=lambda _: {"score": next(scores)}, callbacks=[Record()])
    trainer.best_in_memory = best_in_memory
    return trainer, weights_at


@pytest.mark.parametrize("best_in_memory", [False, True])
def test_the_best_checkpoint_is_loaded_back_whether_kept_in_memory_or_on_disk(tmp_path: Path, best_in_memory):
    trainer, weights_at = _trainer_with_a_scripted_metric(tmp_path / "checkpoints", best_in_memory)
    written = []
    trainer.add_callback(type("Files", (transformers.TrainerCallback,), {
        "on_save": lambda self, args, state, control, **kw: written.extend(
            p.name for p in (tmp_path / "checkpoints").rglob("*.safetensors"))}))
    trainer.train()
    assert sorted(weights_at) == [4, 8, 12, 16] and trainer.state.best_global_step == 8
    final = trainer.model.state_dict()
    assert all(torch.equal(final[k], weights_at[8][k]) for k in final)  # the best, not the last
    assert not all(torch.equal(final[k], weights_at[16][k]) for k in final)
    # In memory, no weights are written; the checkpoint folder and its trainer state still are.
    assert ("model.safetensors" in written) is not best_in_memory
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["checkpoint-8"]


def test_trials_keep_the_best_checkpoint_in_memory_unless_checkpoints_are_kept_or_resumable(
        tmp_path, tiny_model_dir, tiny_data_dir, monkeypatch):
    seen: dict[str, set[bool]] = {}
    real_train = train.AblateTrainer.train

    def watched(self, *args, **kwargs):
        seen.setdefault(Path(self.args.output_dir).parts[-4], set()).add(self.best_in_memory)
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(train.AblateTrainer, "train", watched)
    modes = {"default": "", "none": 'save_models = "none"', "all": 'save_models = "all"',
             "resumable": "checkpoint_steps = 4"}
    for name, experiment in modes.items():
        path = tiny_experiment(tmp_path, tiny_model_dir, tiny_data_dir, name=name, variants="",
                               experiment=experiment + "\nseeds = [42]")
        assert cli.main(["run", str(path)]) == 0
    assert seen == {"default": {True}, "none": {True}, "all": {False}, "resumable": {False}}


def test_gradient_accumulation_and_clipping_off_log_the_loss_and_gradient_of_one_large_batch(
        write_experiment):
    """32 examples as one batch, as 2 × 16 or 4 × 8 accumulated, with a custom loss or BERT's own,
    clipped or not: the same first step's loss and gradient norm (BERT's own loss once counted
    N×, and the norm with clipping off missed the word embeddings' gradient)."""
    baseline = ("learning_rate = 1e-3\nbatch_size = 32\nmax_steps = 2\nlogging_steps = 1\n"
                "eval_steps = 2\ndropout = 0.0\nclassifier_dropout = 0.0\n")
    variants = ("acc2 = { batch_size = 16, gradient_accumulation_steps = 2 }\n"
                "acc4 = { batch_size = 8, gradient_accumulation_steps = 4 }\n"
                "cwacc = { class_weight = [1, 1, 1], batch_size = 16, gradient_accumulation_steps = 2 }\n"
                "clip0 = { max_grad_norm = 0 }\n")
    path = write_experiment(baseline=baseline, variants=variants)
    assert cli.main(["run", str(path)]) == 0
    first = {key: result["history"][0] for key, result in _results(path).items()}
    reference = first.pop("baseline-s42")
    assert len(first) == 4
    for key, step in first.items():
        assert step["loss"] == pytest.approx(reference["loss"], rel=1e-4), key
        assert step["grad_norm"] == pytest.approx(reference["grad_norm"], rel=1e-4), key


def test_an_accumulated_step_of_uneven_micro_batches_is_the_mean_over_its_examples(write_experiment):
    """The epoch's last step: 216 training rows as batches of 20 end with 16 rows; as 10 × 2
    accumulated they end with micro-batches of 10 and 6. BERT's own loss (a mean per micro-batch,
    divided by the accumulation steps) weighted the 6 rows as much as the 10: that step's loss and
    gradient were not the one large batch's, and the training went apart from there."""
    baseline = ("learning_rate = 1e-3\nbatch_size = 20\nepochs = 1\nlogging_steps = 1\n"
                "eval_steps = 0\ndropout = 0.0\nclassifier_dropout = 0.0\n")
    variants = "acc = { batch_size = 10, gradient_accumulation_steps = 2 }\n"
    path = write_experiment(baseline=baseline, variants=variants)
    assert cli.main(["run", str(path)]) == 0
    results = _results(path)
    assert results["baseline-s42"]["train_examples"] % 20 == 16  # the last step is uneven
    large, accumulated = results["baseline-s42"]["history"], results["baseline_acc-s42"]["history"]
    assert [p["step"] for p in large] == [p["step"] for p in accumulated]
    for one, other in zip(large, accumulated, strict=True):
        assert other["loss"] == pytest.approx(one["loss"], rel=1e-4), one["step"]
        assert other["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4), one["step"]


def test_evaluating_more_often_trains_the_same_steps(write_experiment):
    """eval_steps says when to evaluate, not how to train: every evaluation's data loader drew its
    seed from torch's generator, so a variant evaluating at step 3 trained with other dropout masks
    from step 4 on than a baseline evaluating at step 5, and its report compared two trainings."""
    baseline = "learning_rate = 1e-3\nbatch_size = 16\nepochs = 1\nlogging_steps = 1\neval_steps = 5\n"
    variants = "ev3 = { eval_steps = 3 }\n"
    path = write_experiment(baseline=baseline, variants=variants)
    assert cli.main(["run", str(path)]) == 0
    results = _results(path)
    baseline_steps, variant_steps = results["baseline-s42"]["history"], results["baseline_ev3-s42"]["history"]
    assert [p["step"] for p in variant_steps] == [p["step"] for p in baseline_steps] == list(range(1, 15))
    assert [p["loss"] for p in variant_steps] == [p["loss"] for p in baseline_steps]
    assert ([p["step"] for p in results["baseline_ev3-s42"]["eval_history"]]
            == [3, 6, 9, 12, 14])


SMALL_CONFIGS = {
    "bert": lambda: transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=32, vocab_size=50),
    "distilbert": lambda: transformers.DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=32,
                                                        vocab_size=50),
    "modernbert": lambda: transformers.ModernBertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=50,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2),
    "albert": lambda: transformers.AlbertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                intermediate_size=32, vocab_size=50, embedding_size=8),
    "xlnet": lambda: transformers.XLNetConfig(d_model=16, n_layer=1, n_head=2, d_inner=32, vocab_size=50),
    "funnel": lambda: transformers.FunnelConfig(d_model=16, n_head=2, d_head=8, d_inner=32, vocab_size=50,
                                                block_sizes=[1], block_repeats=[1], num_decoder_layers=1),
    "deberta": lambda: transformers.DebertaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                  intermediate_size=32, vocab_size=50),
    "deberta-v2": lambda: transformers.DebertaV2Config(hidden_size=16, num_hidden_layers=1,
                                                       num_attention_heads=2, intermediate_size=32,
                                                       vocab_size=50),
    "mpnet": lambda: transformers.MPNetConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=32, vocab_size=50),
    "longformer": lambda: transformers.LongformerConfig(hidden_size=16, num_hidden_layers=1,
                                                        num_attention_heads=2, intermediate_size=32,
                                                        vocab_size=50, attention_window=4),
}
# Heads whose dropout is the encoder's hidden dropout: no key sets theirs alone.
SHARED_HEAD_DROPOUT = ("funnel", "longformer", "mpnet")


@pytest.mark.parametrize("architecture", sorted(SMALL_CONFIGS))
def test_the_dropout_knob_sets_every_dropout_of_the_encoder(architecture):
    """`dropout` sets hidden and attention dropout whatever the config calls them: ModernBERT's
    embedding and MLP dropout (and Funnel's hidden dropout) were left as they were, so a dropout
    variant of those models changed the attention dropout only, under the name `dropout=0.37`.
    Dropout inside the feed-forward layer (activation_dropout) stays the model's, as documented."""
    from ablation.config import Recipe

    config = train.apply_dropout(SMALL_CONFIGS[architecture](), Recipe(dropout=0.37))
    config.num_labels = 3
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    rates = {name: module.p for name, module in model.base_model.named_modules()  # not Funnel's
             if isinstance(module, torch.nn.Dropout) and not name.endswith("activation_dropout")}
    assert rates and set(rates.values()) == {0.37}, rates
    attention = [key for key in ("attention_probs_dropout_prob", "attention_dropout") if hasattr(config, key)]
    assert all(getattr(config, key) == 0.37 for key in attention)  # XLNet's: `dropout`, above


@pytest.mark.parametrize("architecture", sorted(set(SMALL_CONFIGS) - set(SHARED_HEAD_DROPOUT)))
def test_the_classifier_dropout_knob_sets_the_dropout_of_the_classification_head(architecture):
    """ALBERT names it classifier_dropout_prob and XLNet summary_last_dropout: the knob was refused
    for them ("has none of classifier_dropout, seq_classif_dropout"). DeBERTa's head reads
    cls_dropout, which its config class does not define, and pooler_dropout: refused too."""
    from ablation.config import Recipe

    config = train.apply_dropout(SMALL_CONFIGS[architecture](), Recipe(classifier_dropout=0.37))
    config.num_labels = 3
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    encoder = {id(module) for module in model.base_model.modules()}
    rates = {name: module.p for name, module in model.named_modules()
             if isinstance(module, torch.nn.Dropout) and id(module) not in encoder}
    assert rates and set(rates.values()) == {0.37}, rates


@pytest.mark.parametrize("architecture", SHARED_HEAD_DROPOUT)
def test_classifier_dropout_of_a_head_using_the_encoders_dropout_is_refused_naming_dropout(architecture):
    """MPNet's, Longformer's and Funnel's heads read the encoder's hidden dropout: refused with a
    line listing keys the model does not have, and no word of `dropout`, which sets it."""
    from ablation.config import Recipe

    with pytest.raises(AblateInputError) as refused:
        train.apply_dropout(SMALL_CONFIGS[architecture](), Recipe(classifier_dropout=0.37))
    message = str(refused.value)
    assert "\n" not in message and "no dropout of its own" in message and "set dropout instead" in message
    config = train.apply_dropout(SMALL_CONFIGS[architecture](), Recipe(dropout=0.37))
    config.num_labels = 3
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    head = {name: module.p for name, module in model.named_modules() if isinstance(module, torch.nn.Dropout)
            and not name.startswith(model.base_model_prefix)}
    assert head and set(head.values()) == {0.37}, head  # what the line says `dropout` does


def test_group_by_length_keeps_the_evaluation_predictions_in_the_datas_order(write_experiment,
                                                                            tiny_data_dir):
    """The Trainer evaluates with its length-grouped sampler too where training uses it
    (group_by_length): randomly ordered batches, which put every stored prediction beside
    another example's label, and the report found no examples in common with the baseline."""
    path = write_experiment(variants="gbl = { group_by_length = true }\n")
    assert cli.main(["run", str(path), "--set", "baseline.epochs=1"]) == 0
    results = _results(path)
    grouped, baseline = results["baseline_gbl-s42"], results["baseline-s42"]
    test_labels = pd.read_csv(tiny_data_dir / "test.csv")["label"].tolist()
    assert grouped["test_labels"] == baseline["test_labels"] == test_labels
    assert grouped["validation_labels"] == baseline["validation_labels"]
    report = (load_spec(path).output_dir / "report.md").read_text()
    assert "Not compared" not in report


def test_fewer_layers_of_a_model_with_layer_types_keep_their_types_and_save(tmp_path):
    """ModernBERT (and Llama, Qwen2, Gemma) configs list each layer's attention (layer_types):
    `model_config = { num_hidden_layers = 1 }` left the list at the checkpoint's 2 entries, the
    trial trained, and saving its model failed at the end ('`num_hidden_layers` (1) must be equal
    to the number of `layer_types` (2)'): the whole trial lost. The first layers keep their
    entries now; more layers than the list names are refused before training, naming it."""
    config = transformers.ModernBertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
        global_attn_every_n_layers=2)
    folder = tmp_path / "modernbert"
    with seeded_init():
        transformers.ModernBertForSequenceClassification(config).save_pretrained(folder)
    assert config.layer_types == ["full_attention", "sliding_attention"]
    fewer = load_model_config(ModelSource(str(folder), None, {"num_hidden_layers": 1},
                                          variant_config=("num_hidden_layers",)), ["a", "b"])
    assert fewer.layer_types == ["full_attention"]
    model = transformers.AutoModelForSequenceClassification.from_config(fewer)
    model.save_pretrained(tmp_path / "saved")  # what keep_trial_model does after training
    saved = transformers.AutoConfig.from_pretrained(tmp_path / "saved")
    assert saved.num_hidden_layers == 1 and saved.layer_types == ["full_attention"]
    with pytest.raises(AblateInputError) as refused:
        load_model_config(ModelSource(str(folder), None, {"num_hidden_layers": 3},
                                      variant_config=("num_hidden_layers",)), ["a", "b"])
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("model_config num_hidden_layers = 3: ") and "set layer_types too" in message


@pytest.mark.parametrize("config_pad", [None, 0])
def test_a_decoder_whose_tokenizer_has_no_padding_token_trains_padded_with_its_end_token(
        config_pad, tmp_path, tiny_model_dir, tiny_data_dir, capsys):
    """GPT-2's and Llama's tokenizers have no padding token (and their configs no pad_token_id):
    `validate` said ok and every trial failed ('Asking to pad but the tokenizer does not have a
    padding token'). Batches are now padded with the end-of-sequence token, which the config
    takes as pad_token_id, so the head reads each text's last real token; a note says so, and the
    saved model labels a padded batch as it labels each text alone. A config that names another
    pad_token_id (Llama-7b's says 0, a token the tokenizer never pads with) would make the head
    read a padded text at its last padding token: the Trainer aligns it with the tokenizer's."""
    from ablation.inference._model import class_logits, load_classifier

    folder = tmp_path / "decoder"
    wordpiece = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer = transformers.PreTrainedTokenizerFast(  # as GPT-2's: no padding token, no token types
        tokenizer_object=wordpiece.backend_tokenizer, unk_token="[UNK]", eos_token="[SEP]",
        model_input_names=["input_ids", "attention_mask"])
    assert tokenizer.pad_token is None
    tokenizer.save_pretrained(folder)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2,
                                     n_positions=64, pad_token_id=config_pad)
    with seeded_init():
        transformers.GPT2ForSequenceClassification(config).save_pretrained(folder)
    path = tiny_experiment(tmp_path, folder, tiny_data_dir, variants="",
                           baseline="learning_rate = 1e-3\nbatch_size = 16\nepochs = 1\n")
    assert cli.main(["run", str(path)]) == 0
    note = "has no padding token: batches are padded with its end-of-sequence token '[SEP]'"
    assert note in capsys.readouterr().out
    assert list(_results(path)) == ["baseline-s42"]
    saved = load_spec(path).output_dir / "best_model"
    assert transformers.AutoConfig.from_pretrained(saved).pad_token_id == tokenizer.eos_token_id
    tokenizer, model, _ = load_classifier(saved)
    texts = ["great fun movie so good today", "bad", "the awful table"]
    together = class_logits(model, tokenizer, texts, max_length=32)
    alone = [class_logits(model, tokenizer, [text], max_length=32)[0] for text in texts]
    assert torch.allclose(torch.from_numpy(together), torch.from_numpy(np.stack(alone)), atol=1e-5)


def test_gpt2_with_token_type_ids_trains_with_the_kept_embedding_gradient(tmp_path, tiny_model_dir,
                                                                           tiny_data_dir):
    """GPT-2 embeds token type ids with its word embeddings (wte): with a tokenizer that gives
    them (a WordPiece one), the CPU path that steps only the word embeddings' rows the training
    texts hold failed every trial ('a training batch holds a token outside the training data's
    vocabulary'). The token type ids count as reachable rows too."""
    folder = tmp_path / "gpt2"
    shutil.copytree(tiny_model_dir, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert tokenizer("a text")["token_type_ids"] == [0, 0, 0, 0]  # id 0: [PAD], in no text
    tokenizer.pad_token = "[MASK]"  # so that the padding row is not row 0
    tokenizer.save_pretrained(folder)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2,
                                     n_positions=64, pad_token_id=tokenizer.pad_token_id)
    with seeded_init():
        transformers.GPT2ForSequenceClassification(config).save_pretrained(folder)
    path = tiny_experiment(tmp_path, folder, tiny_data_dir, variants="",
                           baseline="learning_rate = 1e-3\nbatch_size = 16\nepochs = 1\n")
    assert cli.main(["run", str(path)]) == 0
    assert list(_results(path)) == ["baseline-s42"]


@pytest.mark.parametrize("metric", ["macro_f1", "eval_loss"])
def test_schedulers_that_follow_the_metric_follow_it_in_its_direction(write_experiment, monkeypatch,
                                                                      metric):
    """reduce_lr_on_plateau and greedy step on the selection metric at each evaluation: transformers
    makes them in torch's default 'min' mode whatever the metric, so with macro_f1 (maximized) a
    score that rose at every evaluation counted as no improvement and the rate was cut ×0.1 at
    the 12th evaluation, and a falling one counted as improving (greedy raises the rate while the metric
    improves: it did so as macro_f1 fell)."""
    made = []
    real = train.AblateTrainer.create_scheduler

    def recording(self, *args, **kwargs):
        made.append(real(self, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(train.AblateTrainer, "create_scheduler", recording)
    baseline = "learning_rate = 1e-3\nbatch_size = 16\nmax_steps = 4\neval_steps = 2\n"
    path = write_experiment(baseline=baseline, variants='greedy = { lr_scheduler = "greedy" }\n',
                            extra="")
    text = path.read_text().replace("[baseline]\n", '[baseline]\nlr_scheduler = "reduce_lr_on_plateau"\n')
    path.write_text(text.replace("[experiment]\n", f'[experiment]\nmetric = "{metric}"\n'))
    assert cli.main(["run", str(path)]) == 0
    assert len(made) == 2
    sign = 1 if metric == "macro_f1" else -1  # better and better, past anything the trials saw
    for scheduler in made:
        lr = scheduler.optimizer.param_groups[0]["lr"]
        for i in range(30):
            scheduler.step(sign * (10.0 + i))
        after = scheduler.optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            assert after == lr  # improving at every evaluation: no plateau
        else:
            assert after > lr, type(scheduler).__name__  # greedy: improving, so raised


@pytest.mark.parametrize("names, says", [
    (["pos", "neu", "neg"], "'s classification head names the data's 3 classes in another order "
     "(its id 0 is 'pos', the data's 'neg'): fine-tuning starts from its head as it is, each class "
     "from the weights its id had there, trained for another class; to start from the head as "
     "trained, give the classes in its order: [data] label_names = ['pos', 'neu', 'neg'] (where "
     "the labels are written as names)"),
    (["POS", "NEU", "NEG"], "'s classification head names the data's 3 classes in another order "
     "(its id 0 is 'POS', the data's 'neg'): fine-tuning starts from its head as it is, each class "
     "from the weights its id had there, trained for another class; to start from the head as "
     "trained, give the classes in its order: [data] label_names = ['pos', 'neu', 'neg'] (where "
     "the labels are written as names)"),
    (["negative", "positive"], "'s classification head has 2 classes (negative, positive), the "
     "data 3 (neg, neu, pos): it starts from random values, not from the checkpoint's head"),
])
def test_a_checkpoint_whose_head_names_other_classes_is_noted(
        tmp_path: Path, tiny_model_dir: Path, names: list[str], says: str, capsys):
    # a fine-tuned checkpoint's head with the data's classes in another order was kept as it is,
    # swapped, and one of another size started from random values, both saying nothing
    folder = tmp_path / "tuned"
    shutil.copytree(tiny_model_dir, folder)
    config = transformers.AutoConfig.from_pretrained(tiny_model_dir, num_labels=len(names),
                                                     id2label=dict(enumerate(names)),
                                                     label2id={n: i for i, n in enumerate(names)})
    with seeded_init():
        transformers.BertForSequenceClassification(config).save_pretrained(folder)
    data = tmp_path / "data"
    data.mkdir()
    frame = make_texts(60, 1)
    frame["label"] = [["neg", "neu", "pos"][label] for label in frame["label"]]
    frame.to_csv(data / "train.csv", index=False)
    path = tiny_experiment(tmp_path, folder, data, variants="")
    assert cli.main(["validate", str(path)]) == 0
    assert f"{folder}{says}" in capsys.readouterr().out


def test_the_device_of_a_cpu_trial_on_macos_is_the_cpus_name_not_its_architecture(monkeypatch):
    """macOS has no /proc/cpuinfo: the report's device was platform.processor()'s "arm" for every
    Apple silicon Mac ("i386" for an Intel one, which is x86_64). It is sysctl's brand string
    (simulated: sys.platform darwin, no /proc/cpuinfo, sysctl's answer)."""
    import subprocess
    import sys

    real_read_text = Path.read_text

    def no_proc(self: Path, *args, **kwargs) -> str:
        if str(self).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return real_read_text(self, *args, **kwargs)

    def sysctl(command, **kwargs):
        assert command == ["sysctl", "-n", "machdep.cpu.brand_string"]
        return subprocess.CompletedProcess(command, 0, stdout="Apple M2 Pro\n", stderr="")

    monkeypatch.setattr(train.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(Path, "read_text", no_proc)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(subprocess, "run", sysctl)
    monkeypatch.setattr(train.platform, "processor", lambda: "arm")
    assert train.device_name() == f"CPU: Apple M2 Pro ({train.torch.get_num_threads()} threads)"
