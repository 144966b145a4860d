"""Registry's public methods the sources and persistence use instead of its privates."""
from runwatch.model.runs import Registry, RunSpec, spec_cost_event


def test_set_url_fills_an_empty_url_once_and_never_overrides_the_configs():
    reg = Registry()
    mine = reg.add(RunSpec(id="mine", url="https://config.example/run"), now=0.0)
    theirs = reg.add(RunSpec(id="theirs"), now=0.0)
    v = reg.version
    reg.set_url(mine, "https://studio.example/job")
    reg.set_url(theirs, None)
    assert reg.version == v and mine.spec.url == "https://config.example/run" and theirs.spec.url == ""
    reg.set_url(theirs, "https://studio.example/job")
    assert reg.version == v + 1 and theirs.spec.url == "https://studio.example/job"
    reg.set_url(theirs, "https://studio.example/other")
    assert reg.version == v + 1 and theirs.spec.url == "https://studio.example/job"


def test_spec_cost_event_carries_only_what_was_configured():
    assert spec_cost_event(RunSpec(id="a"), 1.0) is None
    e = spec_cost_event(RunSpec(id="a", budget=0.0), 1.0)
    assert (e.type, e.fields, e.ts) == ("cost", {"budget_usd": 0.0}, 1.0)
    e = spec_cost_event(RunSpec(id="a", cost_rate=3.6, budget=5.0), 2.0)
    assert e.fields == {"rate_usd_per_hour": 3.6, "budget_usd": 5.0}
    reg = Registry()
    run = reg.add(RunSpec(id="b", cost_rate=3.6, budget=5.0), now=0.0)
    assert (run.state.cost_rate, run.state.budget) == (3.6, 5.0)


def test_remove_forgets_a_run_and_wakes_waiters_only_if_it_was_there():
    reg = Registry()
    reg.add(RunSpec(id="a"), now=0.0)
    v = reg.version
    reg.remove("nope")
    assert reg.version == v
    reg.remove("a")
    assert reg.version == v + 1 and reg.get("a") is None and reg.snapshot(1.0) == []
