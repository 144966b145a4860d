"""Training metrics: `metric` events become runwatch_run_metric{name}, and with a direction their
best value runwatch_best_score{name}; names are bounded per run; the packs read the values as each
training tool prints them; the training view shows them."""
import pytest

from runwatch.events import Event, make
from runwatch.model.state import MAX_LABEL_VALUES, OTHER, RunState, direction_of
from runwatch.parse.packs import Matcher, load_packs
from support.stack import iter_panels, load_dashboards


def ev(etype, **fields):
    return Event(etype, fields, 0.0)


@pytest.mark.parametrize("name", ["loss", "val_loss", "eval_loss", "train_loss", "valid-logloss",
                                  "valid_1-binary_logloss", "train-rmse", "error", "val_mae", "perplexity",
                                  "eval_nll"])
def test_losses_and_errors_improve_downwards(name):
    assert direction_of(name) == "min"


@pytest.mark.parametrize("name", ["accuracy", "val_acc", "eval_accuracy", "valid-auc", "eval_f1", "cv_score",
                                  "precision", "val_recall", "eval_bleu", "rouge1"])
def test_accuracies_and_scores_improve_upwards(name):
    assert direction_of(name) == "max"


@pytest.mark.parametrize("name", ["learning_rate", "grad_norm", "epoch", "eval_runtime", "train_samples_per_second",
                                  "eval_steps_per_second", "v_num", "x"])
def test_other_values_have_no_direction(name):
    assert direction_of(name) is None


def test_a_metric_with_a_direction_keeps_its_best():
    st = RunState()
    for v in (0.9, 0.5, 0.7):
        st.apply(ev("metric", name="val_loss", value=v, direction="auto"))
    for v in (0.6, 0.8, 0.7):
        st.apply(ev("metric", name="val_acc", value=v, direction="auto"))
    st.apply(ev("metric", name="learning_rate", value=1e-4, direction="auto"))   # no direction: no best
    st.apply(ev("metric", name="throughput", value=3.0, direction="max"))
    st.apply(ev("metric", name="plain", value=1.0))                              # no direction asked
    snap = st.snapshot(0.0)
    assert snap["metrics"] == {"val_loss": 0.7, "val_acc": 0.7, "learning_rate": 1e-4, "throughput": 3.0, "plain": 1.0}
    assert snap["best_scores"] == {"val_loss": 0.5, "val_acc": 0.8, "throughput": 3.0}


def test_a_running_mean_counts_for_the_best_only_at_the_end_of_its_unit():
    # Keras' bar shows the epoch's mean so far: 0.30 after a few batches is not an epoch's loss
    st = RunState()
    st.apply(ev("progress", done=2, total=13))
    st.apply(ev("metric", name="loss", value=0.30, direction="auto", running=True))
    assert "loss" not in st.best_scores and st.metrics["loss"] == 0.30
    st.apply(ev("progress", done=13, total=13))
    st.apply(ev("metric", name="loss", value=0.61, direction="auto", running=True))
    assert st.best_scores["loss"] == 0.61


def test_metric_names_are_bounded_per_run_and_best_values_with_them():
    st = RunState()
    for i in range(MAX_LABEL_VALUES + 20):
        st.apply(ev("metric", name=f"loss_{i}", value=float(i), direction="auto"))
    assert len(st.metrics) == MAX_LABEL_VALUES + 1 and OTHER in st.metrics
    assert OTHER not in st.best_scores and len(st.best_scores) == MAX_LABEL_VALUES
    assert st.labels_folded == 20


def test_the_events_api_takes_a_direction_and_refuses_a_bad_one():
    assert make("metric", {"name": "loss", "value": "0.5", "direction": "auto"}, 0.0).fields["direction"] == "auto"
    with pytest.raises(ValueError):
        make("metric", {"name": "loss", "value": 0.5, "direction": "down"}, 0.0)


def lines(packs, *text):
    m = Matcher(load_packs(packs, []))
    st = RunState()
    for line in text:
        out: list = []
        m.match_line(line, 0.0, out)
        for e in out:
            st.apply(e)
    return st


def test_hf_dicts_with_values_as_strings_and_as_floats():
    st = lines(["hf"], "{'loss': '0.6907', 'grad_norm': '0.447', 'learning_rate': '4.5e-05', 'epoch': '0.3333'}",
               "{'loss': 0.5012, 'learning_rate': 4e-05, 'epoch': 0.67}",       # older transformers
               "\x1b[A{'eval_loss': '0.512', 'eval_accuracy': '0.85', 'eval_runtime': '0.3869', 'epoch': '2'}")
    assert st.metrics == {"loss": 0.5012, "grad_norm": 0.447, "learning_rate": 4e-05, "epoch": 2.0,
                          "eval_loss": 0.512, "eval_accuracy": 0.85, "eval_runtime": 0.3869}
    assert st.best_scores == {"loss": 0.5012, "eval_loss": 0.512, "eval_accuracy": 0.85}


def test_a_dict_inside_other_text_is_no_trainer_log():
    st = lines(["hf"], "[I 2026-11-30] Trial 3 finished with value: 2.1 and parameters: {'x': 3.58}. Best is trial 3",
               "config = {'lr': 0.1, 'dropout': 0.2} # comment")
    assert st.metrics == {}


def test_xgboost_eval_lines_are_metrics_too():
    st = lines(["gbm"], "[3]\ttrain-logloss:0.46936\tvalid-logloss:0.61626\tvalid-auc:0.72682")
    assert st.metrics == {"train-logloss": 0.46936, "valid-logloss": 0.61626, "valid-auc": 0.72682}
    assert st.best_scores["valid-auc"] == 0.72682


def test_sklearn_fold_scores_are_metrics_too():
    st = lines(["sklearn"], "[CV 2/3] END ...max_depth=2, min_samples_leaf=1;, score=0.920 total time=   0.0s",
               "[CV 3/3] END ...max_depth=2, min_samples_leaf=1;, score=0.880 total time=   0.0s")
    assert st.metrics == {"cv_score": 0.88}
    assert st.best_scores == {"cv_score": 0.92}


def test_tqdm_postfix_values_are_metrics_lightning_v_num_is_not():
    st = lines(["tqdm"], "Epoch 0:  42%|████▏     | 5/12 [00:00<00:00, 13.90it/s, v_num=0, train_loss=0.753, "
                         "val_acc=0.625, lr=1e-05, note=warmup]")
    assert st.metrics == {"train_loss": 0.753, "val_acc": 0.625, "lr": 1e-05}


def test_the_training_view_shows_loss_curves_and_best_values():
    view = next(d for d in load_dashboards().values() if d["uid"] == "runwatch-training")
    panels = {p["title"]: p for p in iter_panels(view)}
    exprs = {t["refId"]: t["expr"] for t in panels["Loss curves"]["targets"]}
    assert "runwatch_run_metric" in exprs["A"] and "loss" in exprs["A"]
    assert "runwatch_best_score" in exprs["B"]
    assert "runwatch_best_score" in panels["Best values"]["targets"][0]["expr"]
    assert "runwatch_run_metric" in panels["Training metrics"]["targets"][0]["expr"]


# ------------------------------------------------------------------ other configurations of the same tools

def test_hf_a_nan_value_is_skipped_and_the_rest_of_the_dict_read():
    st = lines(["hf"], "{'loss': '0.6931', 'grad_norm': 'nan', 'learning_rate': '5e-05', 'epoch': '0.5'}")
    assert st.metrics == {"loss": 0.6931, "learning_rate": 5e-05, "epoch": 0.5}


def test_hf_an_evaluation_with_many_metrics():
    keys = ["eval_loss", "eval_accuracy", "eval_f1", "eval_precision", "eval_recall", "eval_runtime",
            "eval_samples_per_second", "eval_steps_per_second", "epoch"]
    line = "{" + ", ".join(f"'{k}': '0.{i + 1}'" for i, k in enumerate(keys)) + "}"
    st = lines(["hf"], line)
    assert set(st.metrics) == set(keys)
    assert set(st.best_scores) == {"eval_loss", "eval_accuracy", "eval_f1", "eval_precision", "eval_recall"}


def test_keras_names_of_compiled_metrics_and_a_dataset_of_unknown_length():
    st = lines(["keras"], "Epoch 1/3",
               "\x1b[1m     27/Unknown\x1b[0m \x1b[1m1s\x1b[0m 20ms/step - loss: 0.6169 - mean_absolute_error: 0.4012",
               "\x1b[1m32/32\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m2s\x1b[0m 1s/step"
               " - loss: 0.5102 - mean_absolute_error: 0.3550 - val_loss: 0.5501 - val_mean_absolute_error: 0.3912")
    assert st.metrics == {"loss": 0.5102, "mean_absolute_error": 0.355, "val_loss": 0.5501,
                          "val_mean_absolute_error": 0.3912}
    assert st.best_scores == {"loss": 0.5102, "mean_absolute_error": 0.355, "val_loss": 0.5501,
                              "val_mean_absolute_error": 0.3912}
    assert st.progress_ratio() == pytest.approx(1 / 3)


def test_keras_evaluate_has_a_bar_without_epochs():
    st = lines(["keras"], "\x1b[1m 4/13\x1b[0m \x1b[32m━━━━━━\x1b[0m\x1b[37m━━━━━━━━━━━━━━\x1b[0m \x1b[1m0s\x1b[0m"
                          " 3ms/step - accuracy: 0.8125 - loss: 0.4102")
    assert st.progress_ratio() == pytest.approx(4 / 13)
    assert st.metrics == {"accuracy": 0.8125, "loss": 0.4102} and st.best_scores == {}


def test_lightning_rich_without_max_epochs_and_metric_names_with_slashes():
    # max_steps without max_epochs (-1): rich draws "Epoch 7/-2"; the epochs have no total, so
    # the run's fraction is unknown (the batches' 6/12 is one epoch's), the metrics are read
    for desc in ("Epoch 7/-2", "Epoch 7   "):
        st = lines(["lightning"], f"{desc} ━━━━━━━━━━━━━━╸━━━━━━━━━━━ 6/12 0:00:01 • 0:00:01 9.80it/s v_num: 3.000 "
                                  "train/loss: 0.412")
        assert st.progress_ratio() is None, desc
        assert st.metrics == {"train/loss": 0.412}
    st = lines(["tqdm"], "Epoch 7:  50%|█████     | 6/12 [00:01<00:01,  9.80it/s, v_num=3, train/loss=0.412]")
    assert st.metrics == {"train/loss": 0.412} and st.progress_ratio() == 0.5


def test_lightning_a_metric_with_a_nan_value_leaves_the_others():
    st = lines(["tqdm"], "Epoch 1: 100%|██████████| 12/12 [00:00<00:00, 34.9it/s, v_num=0, train_loss=nan, "
                         "val_loss=0.609]")
    assert st.metrics == {"val_loss": 0.609}


def test_hostile_lines_do_not_stall_the_training_packs(tmp_path):
    # long lines built from the pieces the training rules repeat (dict pairs, " - k: v", postfix
    # pairs, bar glyphs, cursor-up codes, rich's indentation): a rule that backtracks takes hours
    # on them, a linear one milliseconds; the timeout only catches a hang
    import subprocess

    from support.procs import runwatch_cmd
    from support.prom_text import sample
    n = 1 << 18
    units = ["{'a': '1', ", "'a': 'nan', ", " - a: 1", " - a: 1.5e-3 -", ", a=1", ", a=", "━", "\x1b[A", "\x1b[1m",
             "v_num: 0 ", " ", "0.5 a: ", "/Unknown "]
    prefixes = ["{'", "{'train_runtime': '1', ", "\x1b[1m 1/13\x1b[0m ", " 13/13 - 0s - 8ms/step",
                "Epoch 1/3  ━━ 1/2 0:00:00 • 0:00:00 1.00it/s ", " " * 60,
                "Epoch 0:  50%|█████     | 6/12 [00:00<00:00, 1it/s",
                "Validation:  50%|█| 1/2 [00:00<00:00, 1it/s", ""]
    log = tmp_path / "hostile.log"
    with open(log, "w") as f:
        for pre in prefixes:
            for u in units:
                f.write(pre + u * (n // len(u)) + "\n")
    args = ["scan", "--max-line-bytes", str(2 * n)]
    for p in ("tqdm", "hf", "keras", "lightning"):
        args += ["--pack", p]
    p = subprocess.run(runwatch_cmd(*args, str(log)), capture_output=True, text=True, check=True, timeout=600)
    assert sample(p.stdout, "runwatch_lines_total") == len(prefixes) * len(units)


def test_lightning_rich_metrics_wrapped_across_lines_keep_their_names():
    # rich word-wraps the metrics column: "train_loss:" ends the bar's line, its value opens the
    # next; a name wider than the column is cut with "…" and its value belongs to no name
    pad = " " * 63
    st = lines(["lightning"],
               "Epoch 3/3  ━━━━━━━━━━━━━━━━━ 12/12 0:00:00 • 0:00:00 25.05it/s v_num: 0.000 train_loss:   ",
               pad + "0.647 val_loss: 0.609",
               pad + "val_balanced_mul…",
               pad + "0.687 val_error: ",
               pad + "0.323            ")
    assert st.metrics == {"train_loss": 0.647, "val_loss": 0.609, "val_error": 0.323}
    assert st.best_scores == {"train_loss": 0.647, "val_loss": 0.609, "val_error": 0.323}
    # on a terminal each line is in italics; a dangling v_num (Lightning's logger version) is no metric
    st = lines(["lightning"],
               "Epoch 3/3  \x1b[35m━━━━━━━━━━\x1b[0m 12/12 \x1b[2m0:00:00 • 0:00:00\x1b[0m \x1b[2;4m206.41it/s\x1b[0m "
               "\x1b[3mv_num:   \x1b[0m",
               pad + "\x1b[3m0.000 train_loss:   \x1b[0m",
               pad + "\x1b[3m0.647 val_acc: 0.677      \x1b[0m")
    assert st.metrics == {"train_loss": 0.647, "val_acc": 0.677}
