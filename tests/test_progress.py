"""Progress composed across levels, on the recorded output of real training tools
(tests/real/<case>/): the series of runwatch_run_progress_ratio values a run shows, line by line,
goes through evaluation, validation and sanity-check bars without going back, and ends at 1.0 when
training finished. Plus the reducer's rules for each level, on events."""
import os

import pytest

from runwatch.events import Event
from runwatch.model.state import RunState
from runwatch.parse.framing import LineFramer
from runwatch.parse.packs import Matcher, builtin_names, load_packs
from support import real_facts as corpus


def series(case: str, packs: list[str] | None = None, total: int | None = None) -> list[float]:
    """The progress ratio after each line of the case's log, every built-in pack (or `packs`);
    `total`: the run's configured planned units of the outermost level (--total)."""
    matcher = Matcher(load_packs(packs or builtin_names(), []))
    st = RunState()
    st.set_plan(total)
    with open(os.path.join(corpus.HERE, case, "log"), "rb") as f:
        data = f.read()
    framer = LineFramer()
    block = framer.push(data) + framer.flush()
    out = []
    for i, raw in enumerate(block.split(b"\n")[:-1]):
        events: list = []
        matcher.match_line(raw.decode("utf-8", "replace"), float(i), events)
        for e in events:
            st.apply(e)
        r = st.progress_ratio()
        if r is not None:
            out.append(r)
    return out


def drops(values: list[float]) -> list[tuple[int, float, float]]:
    return [(i, a, b) for i, (a, b) in enumerate(zip(values, values[1:], strict=False)) if b < a - 1e-12]


# Cases whose tool prints the planned total of the outermost level (steps, epochs k/N): one
# monotone series from start to end.
MONOTONE = ["hf-tqdm", "hf-crash", "keras-verbose1", "keras-verbose2", "keras-pty", "lightning-rich",
            "lightning-rich-pty", "tqdm-nested", "tqdm-nested-pty"]


@pytest.mark.parametrize("case", MONOTONE)
@pytest.mark.parametrize("packs", ["all", "user"])
def test_progress_never_goes_back(case, packs):
    values = series(case, None if packs == "all" else corpus.user_packs(case))
    assert values, "no progress at all"
    assert not drops(values), drops(values)[:5]
    t = corpus.truth(case)
    if not t.get("crashed"):
        assert values[-1] == 1.0


# Lightning's TQDMProgressBar says "Epoch 3" and never how many epochs (with or without
# max_epochs); max_steps without max_epochs leaves rich's "Epoch 3/-2" without a total too.
NO_EPOCH_TOTAL = ["lightning-tqdm", "lightning-tqdm-pty", "lightning-early-stop", "lightning-tqdm-max-steps",
                  "lightning-rich-max-steps"]


@pytest.mark.parametrize("case", NO_EPOCH_TOTAL)
@pytest.mark.parametrize("packs", ["all", "user"])
def test_lightning_without_an_epoch_total_claims_no_progress_until_fit_ends(case, packs):
    # one epoch's bar is no fraction of the run: the progress stays unknown (no sample) until the
    # end of fit, which completes it
    values = series(case, None if packs == "all" else corpus.user_packs(case))
    assert values and set(values) == {1.0}, sorted(set(values))[:5]


@pytest.mark.parametrize("case", ["lightning-tqdm-no-max-epochs", "lightning-tqdm-no-max-epochs-pty"])
def test_lightning_default_max_epochs_is_the_plan_it_printed(case):
    # without max_epochs and max_steps Lightning warns that it sets max_epochs=1000: the epochs
    # count of those, early stopping completes the run
    t = corpus.truth(case)
    assert t["max_epochs"] == 1000 and t["early_stopping"]
    values = series(case)
    assert not drops(values), drops(values)[:5]
    before_end = [v for v in values if v < 1.0]
    assert before_end and max(before_end) <= (t["current_epoch"] + 1) / t["max_epochs"]
    assert values[-1] == 1.0


@pytest.mark.parametrize("case", ["lightning-tqdm", "lightning-tqdm-pty"])
def test_lightning_tqdm_with_the_configured_epochs_composes_epoch_and_bar(case):
    # --total 4 (its max_epochs): epoch k of 4 plus the epoch bar's fraction, never going back
    # through validation bars, one value per quarter at each epoch's end, 1.0 at the end of fit
    t = corpus.truth(case)
    values = series(case, total=t["max_epochs"])
    assert not drops(values), drops(values)[:5]
    assert any(0.3 < v < 0.7 for v in values)
    for k in range(1, t["max_epochs"]):
        assert k / t["max_epochs"] in values
    assert values[-1] == 1.0


@pytest.mark.parametrize("case", ["xgboost-early-stop", "xgboost-no-early-stop", "xgboost-sklearn"])
def test_xgboost_rounds_without_a_planned_total_are_no_progress(case):
    assert series(case) == []


@pytest.mark.parametrize("case", ["xgboost-early-stop", "xgboost-no-early-stop", "xgboost-sklearn"])
def test_xgboost_rounds_of_the_configured_total(case):
    # --total num_boost_round (n_estimators): rounds done / total, round "[r]" being the (r+1)-th;
    # without early stopping the last round is the whole run
    t = corpus.truth(case)
    values = series(case, ["gbm", "python"], total=t["num_boost_round"])
    assert not drops(values)
    assert values[-1] == pytest.approx(t["rounds"] / t["num_boost_round"])
    if not t.get("early_stopping", True):
        assert values[-1] == 1.0


@pytest.mark.parametrize("case", ["lightgbm-early-stop", "lightgbm-full-rounds"])
def test_lightgbm_rounds_of_the_configured_total_and_its_end_marker(case):
    # unknown until "Early stopping, best iteration is:" / "Did not meet early stopping. ...";
    # with --total: rounds done / total, the best round's line repeated after the marker changes nothing
    t = corpus.truth(case)
    assert set(series(case)) == {1.0}
    values = series(case, total=t["num_boost_round"])
    assert not drops(values) and values[0] == pytest.approx(1 / t["num_boost_round"]) and values[-1] == 1.0
    n = t["num_boost_round"]
    assert sorted(set(values)) == pytest.approx(sorted({r / n for r in range(1, t["rounds"] + 1)} | {1.0}))


def test_scan_run_and_a_config_take_the_planned_total(tmp_path, monkeypatch):
    # the --total flag (scan, run; RUNWATCH_TOTAL) and a config's `total:` are the same plan
    from runwatch.cli import build_parser
    assert build_parser().parse_args(["run", "--total", "5", "--", "true"]).total == 5
    monkeypatch.setenv("RUNWATCH_TOTAL", "7")
    assert build_parser().parse_args(["scan", "x.log"]).total == 7
    monkeypatch.delenv("RUNWATCH_TOTAL")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["scan", "--total", "0", "x.log"])
    from support.cli import scan as scan_cli
    from support.prom_text import sample
    d = os.path.join(corpus.HERE, "xgboost-no-early-stop")
    assert sample(scan_cli("log", cwd=d), "runwatch_run_progress_ratio") is None
    assert sample(scan_cli("--total", "30", "log", cwd=d), "runwatch_run_progress_ratio") == 1.0
    assert sample(scan_cli("--total", "60", "log", cwd=d), "runwatch_run_progress_ratio") == 0.5
    from runwatch.config import load_config
    from runwatch.yamlfile import ConfigError
    cfg = tmp_path / "runwatch.yaml"
    cfg.write_text("runs:\n  - id: xgb\n    file: /tmp/x.log\n    total: 200\n")
    assert load_config(str(cfg)).runs[0].spec.total == 200
    cfg.write_text("runs:\n  - id: xgb\n    file: /tmp/x.log\n    total: 0\n")
    with pytest.raises(ConfigError, match=r"runwatch\.yaml.*:4.*total must be at least 1"):
        load_config(str(cfg))


def test_hf_without_bars_is_complete_at_the_training_summary():
    values = series("hf-no-tqdm")
    assert values == [1.0]


def test_hf_crash_stops_where_the_trainer_stopped():
    t = corpus.truth("hf-crash")
    assert series("hf-crash")[-1] == t["global_step"] / t["max_steps"]


# ------------------------------------------------------------------ the reducer's levels

def ev(etype, ts=0.0, **fields):
    return Event(etype, fields, ts)


def test_a_nested_bar_refines_the_current_unit_of_the_bar_above():
    st = RunState()
    st.apply(ev("progress", done=1, total=4))
    st.apply(ev("progress", level="nested", done=20, total=40, ratio=0.5))
    assert st.progress_ratio() == pytest.approx((1 + 0.5) / 4)
    st.apply(ev("progress", done=1, total=4))            # the bar redrawn: the same unit
    assert st.progress_ratio() == pytest.approx((1 + 0.5) / 4)
    st.apply(ev("progress", level="nested", ratio=0.2))  # a second nested bar in the same unit
    assert st.progress_ratio() == pytest.approx((1 + 0.5) / 4)
    st.apply(ev("progress", done=2, total=4))            # the next unit: nothing nested yet
    assert st.progress_ratio() == pytest.approx(2 / 4)


def test_eval_bars_count_only_without_a_training_bar_and_the_prelude_never():
    st = RunState()
    st.apply(ev("progress", level="prelude", done=2, total=2))
    assert st.progress_ratio() is None
    st.apply(ev("progress", level="eval", done=1, total=3))
    assert st.progress_ratio() == pytest.approx(1 / 3)   # a test-only run: its bar is the progress
    st.apply(ev("progress", done=3, total=12))
    st.apply(ev("progress", level="eval", done=3, total=3))
    assert st.progress_ratio() == pytest.approx(3 / 12)


def test_a_new_outer_unit_starts_its_bar_over():
    st = RunState()
    st.apply(ev("progress", level="outer", current=1, total=5))
    st.apply(ev("progress", done=13, total=13))
    assert st.progress_ratio() == pytest.approx(1 / 5)
    st.apply(ev("progress", level="outer", current=2, total=5))   # Epoch 2/5; the old bar is done
    assert st.progress_ratio() == pytest.approx(1 / 5)
    st.apply(ev("progress", done=1, total=13))
    assert st.progress_ratio() == pytest.approx(1 / 5 + 1 / 65)


def test_a_zero_based_count_with_its_last_index():
    st = RunState()
    st.apply(ev("progress", level="outer", done=2, last=3))        # Lightning's rich "Epoch 2/3"
    st.apply(ev("progress", done=6, total=12))
    assert st.progress_ratio() == pytest.approx(2 / 4 + 0.5 / 4)


def test_an_end_marker_completes_the_composed_progress():
    st = RunState()
    st.apply(ev("progress", level="outer", current=3, total=40))
    st.apply(ev("progress", done=12, total=12))
    st.apply(ev("progress", level="outer", ratio=1))               # early stopping
    assert st.progress_ratio() == 1.0


def test_counts_win_over_a_rounded_percentage():
    st = RunState()
    st.apply(ev("progress", percent=36, done=13, total=36))
    assert st.progress_ratio() == 13 / 36


@pytest.mark.parametrize("case, total", [("keras-verbose1", None), ("keras-verbose2", None), ("hf-tqdm", None),
                                         ("lightning-rich-pty", None), ("lightning-tqdm", 4),
                                         ("xgboost-no-early-stop", 30)])
def test_the_eta_follows_the_composed_progress(case, total):
    # one line a second: once progress moves, an ETA is there, and it is 0 when training is done
    # (with the configured total where the tool prints none)
    matcher = Matcher(load_packs(builtin_names(), []))
    st = RunState()
    st.set_plan(total)
    st.lines_seen(1, 0.0)
    with open(os.path.join(corpus.HERE, case, "log"), "rb") as f:
        framer = LineFramer()
        block = framer.push(f.read()) + framer.flush()
    etas = []
    for i, raw in enumerate(block.split(b"\n")[:-1]):
        events: list = []
        matcher.match_line(raw.decode("utf-8", "replace"), float(i), events)
        for e in events:
            st.apply(e)
        r = st.progress_ratio()
        if r is not None and 0.2 < r < 0.8:
            etas.append(st.eta_seconds(float(i)))
    assert etas and all(e is not None and e > 0 for e in etas)
    assert st.progress_ratio() == 1.0 and st.eta_seconds(float(i)) == 0.0


def test_a_percent_only_bar_moving_on_ends_what_was_nested_under_it():
    st = RunState()
    st.apply(ev("progress", percent=40, total=5))
    st.apply(ev("progress", level="nested", ratio=0.9))
    assert st.progress_ratio() == pytest.approx(0.4 + 0.9 / 5)
    st.apply(ev("progress", percent=60, total=5))
    assert st.progress_ratio() == pytest.approx(0.6)


def test_an_outer_position_without_a_total_is_unknown_until_a_plan_or_the_end():
    st = RunState()
    st.apply(ev("progress", level="outer", done=0))              # Lightning's tqdm "Epoch 0"
    st.apply(ev("progress", done=6, total=12))
    assert st.progress_ratio() is None                           # not 0.5: half of one epoch of how many?
    st.apply(ev("progress", level="eval", done=3, total=3))
    assert st.progress_ratio() is None
    st.apply(ev("progress", level="outer", ratio=1))             # `Trainer.fit` stopped
    assert st.progress_ratio() == 1.0
    st.apply(ev("progress", level="outer", done=3))              # rich's final draw after it: no reopening
    st.apply(ev("progress", done=4, total=4))
    assert st.progress_ratio() == 1.0


def test_a_planned_total_counts_positions_and_a_printed_total_wins():
    st = RunState()
    st.set_plan(10)                                              # --total 10
    st.apply(ev("progress", level="outer", done_index=0))        # XGBoost's "[0]": one round done
    assert st.progress_ratio() == pytest.approx(0.1)
    st.apply(ev("progress", level="outer", done=3))
    st.apply(ev("progress", done=6, total=12))
    assert st.progress_ratio() == pytest.approx(0.3 + 0.5 / 10)
    st.apply(ev("progress", level="outer", total=1000))          # a plan the tool printed
    st.apply(ev("progress", level="outer", done=3))
    assert st.progress_ratio() == pytest.approx(3 / 1000)
    st.apply(ev("progress", level="outer", done=2, last=3))      # a total in the position itself
    assert st.progress_ratio() == pytest.approx(2 / 4)
    fresh = RunState()
    fresh.set_plan(None)
    fresh.apply(ev("progress", level="outer", total=5))          # a plan alone shows nothing yet
    assert fresh.progress_ratio() is None


def test_a_metric_wrapped_across_lines_is_joined_and_never_misattributed():
    st = RunState()
    st.apply(ev("metric", name="val_acc", value=0.6))
    st.apply(ev("metric_part", name="train_loss", direction="auto"))   # "... train_loss:" ends a line
    st.apply(ev("metric_part", value=0.647))                          # "0.647 val_loss: ..." opens the next
    assert st.metrics["train_loss"] == 0.647 and st.best_scores["train_loss"] == 0.647
    st.apply(ev("metric_part", value=0.5))                            # no name waiting: no metric
    st.apply(ev("metric_part", name="", direction="auto"))            # a cut name: nothing waits
    st.apply(ev("metric_part", value=0.9))
    st.apply(ev("metric_part", name="val_loss"))
    st.apply(ev("metric_part"))                                       # a line that does not open with a value
    st.apply(ev("metric_part", value=0.1))
    assert st.metrics == {"val_acc": 0.6, "train_loss": 0.647}
