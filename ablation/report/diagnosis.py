"""What a person reads off a trial's SwanLab charts, found automatically and said in one sentence each.

Each rule is a small pure function over the stored ``result`` dict (``history``, ``eval_history``,
``validation_confusion``); ``diagnose`` composes them and orders the findings by severity. A rule that
lacks the data to judge (short curves, missing keys, malformed values) stays silent: in a report a
wrong alarm costs more than a missed one.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, NamedTuple

from ..errors import some_of

# Fewer finite points than this on a curve is too little to call a trend: the rule gives no finding.
MIN_POINTS = 4
# Divergence: the last finite train loss above this multiple of the first one.
DIVERGENCE_END_RATIO = 1.5
# Divergence: the median train loss of the last quarter above this multiple of the first quarter's.
DIVERGENCE_QUARTER_RATIO = 3.0
# Overfitting: validation loss rising by more than this fraction from its minimum to the last evaluation.
OVERFIT_MIN_RISE = 0.05
# Unstable gradients: coefficient of variation (std / mean) of the second half's grad norms above this.
UNSTABLE_MAX_CV = 0.5
# Unstable gradients: a grad norm in the second half above this multiple of that half's median.
UNSTABLE_SPIKE_RATIO = 4.0
# Not converged: the two windows compared are this fraction of the logged train losses each...
NOT_CONVERGED_WINDOW = 0.1
# ...and at least this many points each, so that one noisy log line cannot decide.
NOT_CONVERGED_MIN_WINDOW_POINTS = 2
# Not converged: the last window's mean train loss more than this fraction below the window before it...
NOT_CONVERGED_TRAIN_DROP = 0.10
# ...by at least this fraction of the first train loss: near zero, tiny moves are large relative ones
# without being progress worth more steps.
NOT_CONVERGED_MIN_DROP_OF_FIRST = 0.02
# Not converged: validation loss falling by more than this fraction at the last evaluation (after a
# fall at the evaluation before it too, so one lucky evaluation does not decide).
NOT_CONVERGED_EVAL_DROP = 0.02

# Class collapse onto one class with the validation loss within this fraction of the class mix's
# entropy (what predicting the class frequencies scores), or above it: the model has not learned at all.
NOT_LEARNED_LOSS_TOLERANCE = 0.02

# Most severe first: the order of ``diagnose``'s findings.
KINDS = ("divergence", "class_collapse", "overfitting", "unstable_gradients", "not_converged")


@dataclass(frozen=True)
class Finding:
    """One diagnosis: a plain sentence with its numbers, what to try, and the numbers for machines."""

    kind: str  # one of KINDS
    sentence: str
    suggestion: str
    numbers: dict[str, float] = field(default_factory=dict)
    # The trial learned nothing from the text (one class predicted, at the loss of the class
    # frequencies or worse): a difference between two such trials is between constant guesses.
    not_learned: bool = False


def learned_nothing(findings: Sequence[Finding]) -> bool:
    """Whether a trial's findings say it learned nothing from the text."""
    return any(finding.not_learned for finding in findings)


class _Point(NamedTuple):
    index: int  # position in the stored curve, i.e. log order
    step: float  # NaN where not logged
    epoch: float
    value: float


# --------------------------------------------------------------------------- reading the curves


def _number(value: Any) -> float | None:
    """A float from a stored value, NaN and inf kept (they are the divergence signal); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, str):  # some JSON writers store non-finite floats as "NaN" / "Infinity"
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _curve(points: Any, key: str) -> list[_Point]:
    """The log points that carry ``key`` as a number, in log order; anything malformed is skipped."""
    if not isinstance(points, Sequence) or isinstance(points, (str, bytes)):
        return []
    curve = []
    for index, point in enumerate(points):
        if not isinstance(point, Mapping):
            continue
        value = _number(point.get(key))
        if value is None:
            continue
        step, epoch = _number(point.get("step")), _number(point.get("epoch"))
        curve.append(_Point(index, math.nan if step is None else step,
                            math.nan if epoch is None else epoch, value))
    return curve


def _finite(curve: list[_Point]) -> list[_Point]:
    return [p for p in curve if math.isfinite(p.value)]


def _at(point: _Point) -> str:
    """Where on the x-axis a point lies, as the charts show it: "step 300 (epoch 1.20)"."""
    step = f"step {int(point.step)}" if math.isfinite(point.step) else ""
    epoch = f"epoch {point.epoch:.2f}" if math.isfinite(point.epoch) else ""
    if step and epoch:
        return f"{step} ({epoch})"
    return step or epoch or f"log point {point.index + 1}"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.0f}%"


# --------------------------------------------------------------------------- the rules


def _divergence(history: Any) -> Finding | None:
    """NaN/inf in the train loss or grad norm, or a train loss that ends far above where it started."""
    losses, grads = _curve(history, "loss"), _curve(history, "grad_norm")
    if len(losses) < MIN_POINTS:
        return None
    bad = [(p.index, order, what, p) for order, (what, curve) in
           enumerate((("training loss", losses), ("gradient norm", grads)))
           for p in curve if not math.isfinite(p.value)]
    if bad:
        _, _, what, point = min(bad, key=lambda b: b[:2])  # the earliest; the loss first at a tie
        return Finding(
            "divergence",
            f"Training diverged: the {what} became {point.value} at {_at(point)}.",
            "Lower the learning rate, add warmup (warmup_ratio), or clip gradients (max_grad_norm).",
            {"step": point.step, "epoch": point.epoch, "value": point.value,
             "non_finite_loss": float(what == "training loss")})
    values = [p.value for p in losses]
    quarter = max(1, len(values) // 4)
    first, last = values[0], values[-1]
    head, tail = statistics.median(values[:quarter]), statistics.median(values[-quarter:])
    if first <= 0 or head <= 0:  # a loss of zero at the start: nothing to compare against
        return None
    end_ratio, quarter_ratio = last / first, tail / head
    if not (end_ratio > DIVERGENCE_END_RATIO or quarter_ratio > DIVERGENCE_QUARTER_RATIO):
        return None
    return Finding(
        "divergence",
        f"Training diverged: the training loss ended at {last:.3f}, {end_ratio:.1f}× its first value "
        f"({first:.3f}), and the median of the last quarter ({tail:.3f}) is {quarter_ratio:.1f}× "
        f"that of the first ({head:.3f}).",
        "Lower the learning rate, add warmup (warmup_ratio), or clip gradients (max_grad_norm).",
        {"first_loss": first, "last_loss": last, "end_ratio": end_ratio,
         "first_quarter_median": head, "last_quarter_median": tail, "quarter_ratio": quarter_ratio})


def _overfitting(history: Any, evals: Any) -> Finding | None:
    """Validation loss past its minimum and rising while the training loss keeps falling."""
    eval_losses = _finite(_curve(evals, "loss"))
    train = [p for p in _finite(_curve(history, "loss")) if math.isfinite(p.step)]
    if len(eval_losses) < MIN_POINTS or len(train) < MIN_POINTS:
        return None
    best = min(eval_losses, key=lambda p: p.value)  # the first minimum
    last = eval_losses[-1]
    if best is last or best.value <= 0 or not math.isfinite(best.step):
        return None
    rise = (last.value - best.value) / best.value
    before = [p for p in train if p.step <= best.step]
    train_at_best = (before[-1] if before else train[0]).value
    train_end = train[-1].value
    if rise <= OVERFIT_MIN_RISE or train_end >= train_at_best:
        return None
    step = int(best.step)
    return Finding(
        "overfitting",
        f"Validation loss bottomed out at {best.value:.3f} at {_at(best)} and rose {_pct(rise)} to "
        f"{last.value:.3f} by the end while training loss kept falling "
        f"({train_at_best:.3f} → {train_end:.3f}).",
        f"Use early stopping (early_stopping_patience) or stop near step {step}; more regularisation "
        "(dropout, weight_decay) also helps.",
        {"min_loss": best.value, "min_step": best.step, "min_epoch": best.epoch, "last_loss": last.value,
         "rise_pct": 100 * rise, "train_loss_at_min": train_at_best, "train_loss_end": train_end})


def _unstable_gradients(history: Any) -> Finding | None:
    """Grad norms that keep jumping late in training, when they should have settled."""
    grads = _finite(_curve(history, "grad_norm"))
    half = grads[len(grads) // 2:]
    if len(half) < MIN_POINTS:
        return None
    values = [p.value for p in half]
    mean = statistics.fmean(values)
    if mean <= 0:
        return None
    cv = statistics.pstdev(values) / mean
    median = statistics.median(values)
    spike = max(half, key=lambda p: p.value)
    ratio = spike.value / median if median > 0 else math.inf
    if cv <= UNSTABLE_MAX_CV and ratio <= UNSTABLE_SPIKE_RATIO:
        return None
    return Finding(
        "unstable_gradients",
        f"In the second half of training the gradient norm varied with a coefficient of variation of "
        f"{cv:.2f} (std/mean) and peaked at {spike.value:.3g} at {_at(spike)}, {ratio:.1f}× its median "
        f"of {median:.3g}.",
        "Lower the learning rate, use a larger batch (batch_size or gradient_accumulation_steps), or clip "
        "harder (a smaller max_grad_norm).",
        {"cv": cv, "spike": spike.value, "spike_step": spike.step, "median": median, "spike_ratio": ratio})


def _not_converged(history: Any, evals: Any) -> Finding | None:
    """Train loss still falling steeply at the end, or validation loss still improving."""
    parts: list[str] = []
    numbers: dict[str, float] = {}
    losses = [p.value for p in _finite(_curve(history, "loss"))]
    window = max(NOT_CONVERGED_MIN_WINDOW_POINTS, round(NOT_CONVERGED_WINDOW * len(losses)))
    if len(losses) >= max(MIN_POINTS, 2 * window):
        before = statistics.fmean(losses[-2 * window:-window])
        last = statistics.fmean(losses[-window:])
        drop = (before - last) / before if before > 0 else math.nan
        if drop > NOT_CONVERGED_TRAIN_DROP and before - last >= NOT_CONVERGED_MIN_DROP_OF_FIRST * losses[0]:
            parts.append(f"training loss was still falling at the end: the mean of the last {window} "
                         f"logged losses ({last:.3f}) is {_pct(drop)} below that of the {window} before "
                         f"them ({before:.3f})")
            numbers |= {"train_drop_pct": 100 * drop, "train_loss_before": before, "train_loss_last": last}
    eval_losses = [p.value for p in _finite(_curve(evals, "loss"))]
    if len(eval_losses) >= MIN_POINTS and eval_losses[-3] > eval_losses[-2] > 0:
        before, last = eval_losses[-2], eval_losses[-1]
        drop = (before - last) / before
        if drop > NOT_CONVERGED_EVAL_DROP:
            parts.append(f"validation loss fell {_pct(drop)} at the last evaluation "
                         f"({before:.3f} → {last:.3f}) after falling at the one before")
            numbers |= {"eval_drop_pct": 100 * drop, "eval_loss_before": before, "eval_loss_last": last}
    if not parts:
        return None
    sentence = "; ".join(parts)
    return Finding("not_converged", sentence[0].upper() + sentence[1:] + ".",
                   "Train longer (more epochs or max_steps) or raise the learning rate.", numbers)


def _matrix(confusion: Any) -> list[list[float]] | None:
    """A square confusion matrix of non-negative finite counts, or None."""
    if not isinstance(confusion, Sequence) or isinstance(confusion, (str, bytes)):
        return None
    rows = []
    for row in confusion:
        if not isinstance(row, Sequence) or isinstance(row, (str, bytes)) or len(row) != len(confusion):
            return None
        values = [_number(v) for v in row]
        if any(v is None or not math.isfinite(v) or v < 0 for v in values):
            return None
        rows.append([float(v) for v in values if v is not None])
    return rows


def _class_mix_entropy(matrix: list[list[float]]) -> float:
    """The cross-entropy of always predicting the validation class frequencies (nats)."""
    supports = [sum(row) for row in matrix]
    total = sum(supports)
    return -sum(n / total * math.log(n / total) for n in supports if n > 0) if total else math.nan


def _class_names(label_names: Sequence[str], size: int) -> list[str]:
    """The names of a confusion matrix's `size` classes ("class i" past the names known)."""
    return [str(label_names[i]) if i < len(label_names) else f"class {i}" for i in range(size)]


def _selected_checkpoint(best_step: Any) -> str:
    """The phrase "the selected checkpoint", with its step where the trial stored one."""
    step = _number(best_step)
    return (f"the selected checkpoint (step {int(step)})" if step is not None and math.isfinite(step)
            else "the selected checkpoint")


def _class_collapse(confusion: Any, label_names: Sequence[str], best_step: Any = None,
                    class_weighted: bool = False, eval_loss: Any = None,
                    loss_name: str = "validation loss") -> Finding | None:
    """Classes present in validation that the selected checkpoint never predicts. When it
    predicts a single class at the loss of the class frequencies (or a higher one: worse than
    that constant guess), it has learned nothing from the text: class weights are then the wrong
    advice."""
    matrix = _matrix(confusion)
    if matrix is None or len(matrix) < 2:
        return None
    size = len(matrix)
    names = _class_names(label_names, size)
    missing = [(names[i], sum(matrix[i])) for i in range(size)
               if sum(matrix[i]) > 0 and sum(row[i] for row in matrix) == 0]
    if not missing:
        return None
    total = sum(map(sum, matrix))
    checkpoint = _selected_checkpoint(best_step).capitalize()
    classes = " or ".join(f"'{name}' (support {support:.0f})" for name, support in missing)
    predicted = [j for j in range(size) if sum(row[j] for row in matrix) > 0]
    loss, prior = _number(eval_loss), _class_mix_entropy(matrix)
    if (len(predicted) == 1 and loss is not None and math.isfinite(loss) and prior > 0
            and loss >= (1 - NOT_LEARNED_LOSS_TOLERANCE) * prior):
        above = loss > (1 + NOT_LEARNED_LOSS_TOLERANCE) * prior
        return Finding(
            "class_collapse",
            f"{checkpoint} predicts '{names[predicted[0]]}' for all {total:.0f} validation examples, "
            f"at a {loss_name} of {loss:.4f}: {'worse than' if above else 'about'} the "
            f"{prior:.4f} of predicting the class frequencies. The model has not learned from the "
            "text.",
            "Train longer (more epochs or max_steps) or try another learning rate (one too high "
            "leaves a model here too); class weights do not help a model that has not learned.",
            {"classes": float(len(missing)), "validation_size": total, "eval_loss": loss,
             "class_mix_entropy": prior}, not_learned=True)
    return Finding(
        "class_collapse",
        f"{checkpoint} never predicts {classes} on validation, out of {total:.0f} examples.",
        ("The loss is already weighted by class (class_weight): give the missing "
         f"class{'es' if len(missing) > 1 else ''} larger weights or oversample "
         f"{'them' if len(missing) > 1 else 'it'} in the training data." if class_weighted else
         'Weight the loss by class (class_weight = "balanced") or oversample the missing '
         f"class{'es' if len(missing) > 1 else ''} in the training data."),
        {"classes": float(len(missing)), "validation_size": total}
        | {f"support_{name}": support for name, support in missing})


def _unseen_collapse(confusion: Any, test_confusion: Any, label_names: Sequence[str],
                     best_step: Any = None, class_weighted: bool = False) -> Finding | None:
    """Classes validation has no row of, that test has and the selected checkpoint never
    predicts there: a skewed class a validation carve left out (3 rows of 300 at 10 %) is
    invisible to selection and to _class_collapse, and test accuracy 0.99 hides it."""
    matrix, test = _matrix(confusion), _matrix(test_confusion)
    if matrix is None or test is None or len(matrix) != len(test) or len(test) < 2:
        return None
    size = len(test)
    names = _class_names(label_names, size)
    missing = [(names[i], sum(test[i])) for i in range(size)
               if sum(matrix[i]) == 0 and sum(test[i]) > 0 and sum(row[i] for row in test) == 0]
    if not missing:
        return None
    checkpoint = _selected_checkpoint(best_step)
    total = sum(map(sum, test))
    one = len(missing) == 1
    shown = " or ".join(f"'{name}'" for name, _ in missing)
    never = (f"never predicts it on test (support {missing[0][1]:.0f})" if one else
             "never predicts " + " or ".join(f"'{name}' (support {support:.0f})"
                                             for name, support in missing) + " on test")
    it = "it" if one else "them"
    return Finding(
        "class_collapse",
        f"Validation has no row of {shown}, so selection could not see {it}, and {checkpoint} "
        f"{never}, out of {total:.0f} examples.",
        f"Give validation rows of {it} (a validation_split that has {it}, or a larger "
        "validation_size) so that selection sees " + it + "; then "
        + (f"give {it} larger class weights (the loss is already weighted by class_weight) or "
           f"oversample {it}." if class_weighted else
           f'weight the loss by class (class_weight = "balanced") or oversample {it}.'),
        {"classes": float(len(missing)), "test_size": total}
        | {f"support_{name}": support for name, support in missing})


# --------------------------------------------------------------------------- composition


def _validation_loss(result: Mapping[str, Any]) -> tuple[Any, str]:
    """The selected checkpoint's validation cross-entropy and its name in a sentence: log_loss,
    the plain cross-entropy that the class mix's entropy is also, where the trial has it (a
    trial's eval_loss is the same plain cross-entropy, train.make_loss; were it ever the smoothed
    or weighted one, a model at 0.80 would read as 1.30, above a mix of 1.09: 'not learned')."""
    validation = result.get("validation")
    if not isinstance(validation, Mapping):
        return None, "validation loss"
    plain = _number(validation.get("log_loss"))
    if plain is not None and math.isfinite(plain):
        return plain, "validation log loss"
    return validation.get("eval_loss"), "validation loss"


def diagnose(result: Mapping[str, Any], label_names: Sequence[str],
             class_weighted: bool = False) -> list[Finding]:
    """All findings for one trial's stored result, most severe first; `class_weighted`: the trial
    already weighted its loss by class, so the advice for a collapsed class is not to do that.

    Divergence silences the other curve rules (on a diverged run they are noise), and overfitting
    silences not_converged (a train loss still falling while validation loss rises is its symptom, and
    "train longer" would be the wrong advice).
    """
    if not isinstance(result, Mapping):
        return []
    history, evals = result.get("history"), result.get("eval_history")
    findings = [_divergence(history),
                _class_collapse(result.get("validation_confusion"), label_names, result.get("best_step"),
                                class_weighted, *_validation_loss(result))]
    if not (findings[1] is not None and findings[1].not_learned):  # said already: nothing learned
        findings.append(_unseen_collapse(result.get("validation_confusion"),
                                         result.get("test_confusion"), label_names,
                                         result.get("best_step"), class_weighted))
    if findings[0] is None:
        overfitting = _overfitting(history, evals)
        findings += [overfitting, _unstable_gradients(history),
                     None if overfitting else _not_converged(history, evals)]
    return sorted((f for f in findings if f is not None), key=lambda f: KINDS.index(f.kind))


# --------------------------------------------------------------------------- one line per finding

# A finding that several trials share is one line naming this many of them, then counting them.
SHARED_NAMED = 10
# A number in a sentence ("step 300", "1.0948", "12%", "1.5×"); "nan" and "inf" are words, which
# keep a diverged trial's finding apart from one whose loss only grew.
_NUMBER = r"(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?!\w)"


@dataclass(frozen=True)
class SharedFinding:
    """One Diagnosis line: a finding and the trials (keys) that have it; where their numbers
    differ, each such number is the range of theirs ("step 40–120")."""

    keys: tuple[str, ...]
    kind: str
    sentence: str
    suggestion: str

    def named(self) -> str:
        """The trials, the first SHARED_NAMED of more then their count."""
        return some_of(self.keys, SHARED_NAMED)


def _slots(text: str, pattern: re.Pattern[str]) -> tuple[str, list[str]]:
    """The text with its numbers taken out (the template that says which finding it is) and
    those numbers in order; class names in quotes ('1', 'class 3') stay in the template."""
    numbers: list[str] = []

    def take(match: re.Match[str]) -> str:
        if match.group("number") is None:
            return match.group(0)
        numbers.append(match.group("number"))
        return "\0"

    return pattern.sub(take, text), numbers


def _filled(template: str, numbers: list[list[str]]) -> str:
    """The template with each number slot given the trials' value, or their range where they
    differ (as each was written: '1.0946–1.0965')."""
    parts = template.split("\0")
    out = [parts[0]]
    for slot, rest in zip(numbers, parts[1:], strict=True):
        low, high = min(slot, key=float), max(slot, key=float)
        out.append(low if float(low) == float(high) else f"{low}–{high}")
        out.append(rest)
    return "".join(out)


def shared_findings(findings: Mapping[str, Sequence[Finding]],
                    label_names: Sequence[str] = ()) -> list[SharedFinding]:
    """The findings of every trial (key: its findings, in report order), one line per finding
    however many trials share it: the same kind, sentence and suggestion but for their numbers
    (183 trials that each predict one class at about the loss of the class frequencies are one
    line, not 183). In order of each line's first trial; a finding of one trial reads as it did."""
    names = sorted({f"'{name}'" for name in label_names}, key=len, reverse=True)
    quoted = "|".join([*map(re.escape, names), r"'class \d+'"])
    pattern = re.compile(f"(?P<name>{quoted})|(?P<number>{_NUMBER})")
    groups: dict[tuple[str, str, str], list[tuple[str, list[str], list[str]]]] = {}
    for key, items in findings.items():
        for finding in items:
            sentence, said = _slots(finding.sentence, pattern)
            suggestion, advised = _slots(finding.suggestion, pattern)
            groups.setdefault((finding.kind, sentence, suggestion), []).append((key, said, advised))
    lines = []
    for (kind, sentence, suggestion), members in groups.items():
        keys = tuple(dict.fromkeys(key for key, _, _ in members))
        said = [list(slot) for slot in zip(*(m[1] for m in members), strict=True)]
        advised = [list(slot) for slot in zip(*(m[2] for m in members), strict=True)]
        lines.append(SharedFinding(keys, kind, _filled(sentence, said), _filled(suggestion, advised)))
    return lines
