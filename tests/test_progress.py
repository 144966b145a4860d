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


def series(case: str, packs: list[str] | None = None) -> list[float]:
    """The progress ratio after each line of the case's log, every built-in pack (or `packs`)."""
    matcher = Matcher(load_packs(packs or builtin_names(), []))
    st = RunState()
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


@pytest.mark.parametrize("case", ["lightning-tqdm", "lightning-tqdm-pty", "lightning-early-stop"])
def test_lightning_tqdm_epochs_restart_the_bar_only(case):
    # Lightning's tqdm bar says "Epoch 3" without max_epochs: each epoch's bar runs 0 -> 1, the
    # validation and sanity-check bars in between change nothing, and the end of fit completes it
    values = series(case)
    t = corpus.truth(case)
    epochs = t["current_epoch"]
    restarts = drops(values)
    assert len(restarts) == epochs - 1, restarts
    assert all(a == 1.0 for _, a, _ in restarts), "an epoch's bar went back before it was complete"
    assert values[-1] == 1.0


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


@pytest.mark.parametrize("case", ["keras-verbose1", "keras-verbose2", "hf-tqdm", "lightning-rich-pty"])
def test_the_eta_follows_the_composed_progress(case):
    # one line a second: once progress moves, an ETA is there, and it is 0 when training is done
    matcher = Matcher(load_packs(builtin_names(), []))
    st = RunState()
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
