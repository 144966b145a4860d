"""yamlfile.number: the one validator for numbers in runwatch.yaml, the cloud sources' sections and demo samples."""
import pytest

from runwatch.yamlfile import ConfigError, load_text, number

DOC = """\
ok: 2.5
int: 7
neg: -1
nan: .nan
inf: .inf
minf: -.inf
on_: true
off_: false
text: "3"
big: 1.0e+400
frac: 1.5
"""


@pytest.fixture
def m():
    return load_text(DOC, "cfg.yaml")


def test_a_number_within_bounds_comes_back_as_it_is(m):
    assert number(m, "ok", minimum=0, maximum=3) == 2.5
    assert number(m, "int", integer=True, minimum=7, maximum=7) == 7
    assert number(m, "neg") == -1                      # no bounds: any finite number
    assert number(m, "absent", 60.0, minimum=5) == 60.0 # the default is not checked
    assert number(m, "absent") is None


@pytest.mark.parametrize("key,kw,reason,line", [
    ("on_", {}, "on_ must be a number, got bool True", 7),
    ("off_", {"integer": True}, "off_ must be an integer, got bool False", 8),
    ("text", {}, "text must be a number, got str '3'", 9),
    ("nan", {}, "nan must be a finite number, got nan", 4),
    ("inf", {"minimum": 0}, "inf must be a finite number, got inf", 5),
    ("minf", {"maximum": 0}, "minf must be a finite number, got -inf", 6),
    ("big", {}, "big must be a finite number, got inf", 10),
    ("neg", {"minimum": 0}, "neg must be at least 0, got -1", 3),
    ("ok", {"maximum": 2}, "ok must be at most 2, got 2.5", 1),
    ("frac", {"integer": True}, "frac must be an integer, got float 1.5", 11),
])
def test_bad_values_name_file_line_key_and_reason(m, key, kw, reason, line):
    with pytest.raises(ConfigError) as e:
        number(m, key, **kw)
    assert (e.value.file, e.value.line, e.value.reason) == ("cfg.yaml", line, reason)
    assert str(e.value) == f"cfg.yaml:{line}: {reason}"


def test_what_names_the_value_in_its_context(m):
    with pytest.raises(ConfigError, match=r"^cfg.yaml:3: run 'x': poll_seconds must be at least 5, got -1$"):
        number(m, "neg", what="run 'x': poll_seconds", minimum=5)


@pytest.mark.parametrize("snippet,reason,line", [
    ("grace_seconds: .nan\nruns:\n  - {id: a, file: x}\n", "grace_seconds must be a finite number", 1),
    ("max_line_bytes: true\nruns:\n  - {id: a, file: x}\n", "max_line_bytes must be an integer, got bool", 1),
    ("runs:\n  - id: a\n    file: x\n    cost_per_hour: -2\n", "cost_per_hour must be at least 0, got -2", 4),
    ("runs:\n  - id: a\n    azure_vm: {subscription_id: s, resource_group: r, name: v, price_per_hour: .inf}\n",
     "run 'a': price_per_hour must be a finite number", 3),
    ("runs:\n  - id: a\n    azureml_job: {name: j, poll_seconds: yes}\n", "run 'a': poll_seconds must be a number", 3),
    ("runs:\n  - id: a\n    wandb: {entity: e, project: p, run_id: r, artifact_deadline_minutes: -1}\n",
     "run 'a': artifact_deadline_minutes must be at least 0, got -1", 3),
])
def test_every_config_number_goes_through_it(tmp_path, snippet, reason, line):
    from runwatch.config import load_config
    p = tmp_path / "runwatch.yaml"
    p.write_text(snippet)
    with pytest.raises(ConfigError) as e:
        load_config(str(p))
    assert e.value.file == str(p) and e.value.line == line and reason in e.value.reason, str(e.value)


# ------------------------------------------------------------ fast=True: libyaml, the same result

def _same(a, b):
    """Equal values of equal types, with the same file and lines at every level."""
    assert type(a) is type(b) and (a == b or a != a and b != b)      # nan is nan
    for attr in ("file", "line", "key_lines", "item_lines"):
        assert getattr(a, attr, None) == getattr(b, attr, None), attr
    if isinstance(a, dict):
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list):
        for x, y in zip(a, b, strict=True):
            _same(x, y)


def test_fast_loading_gives_the_values_and_lines_of_the_usual_way():
    import glob
    import os

    import runwatch
    from runwatch.yamlfile import load_file
    root = os.path.dirname(runwatch.__file__)
    files = sorted(glob.glob(os.path.join(root, "packs", "*.yaml")) + glob.glob(os.path.join(root, "demo", "*.yaml")))
    assert len(files) > 10
    for f in files:
        _same(load_file(f), load_file(f, fast=True))
    _same(load_text(DOC, "cfg.yaml"), load_text(DOC, "cfg.yaml", fast=True))


def _nested(depth: int) -> str:
    return "x: " + "[" * depth + "1" + "]" * depth + "\n"


@pytest.mark.parametrize("text,refused", [
    ("a: 1\nb: [1, 2\n", True),                                    # a syntax error
    ("a: 1\na: 2\n", True),                                        # a duplicate key
    ('a: "x\\udcff"\n', True),                                     # a lone surrogate
    ("x: &x 1\nmany: [" + ", ".join(["*x"] * 1001) + "]\n", True), # too many aliases
    ("x: &x 1\nmany: [" + ", ".join(["*x"] * 1000) + "]\n", False),
    ("loop: &l [*l]\n", True),                                      # a recursive alias
    (_nested(62), False), (_nested(63), True), (_nested(64), True), (_nested(5000), True),   # the depth limit
], ids=["syntax", "duplicate", "surrogate", "aliases1001", "aliases1000", "recursive",
        "depth62", "depth63", "depth64", "depth5000"])
def test_fast_loading_refuses_what_the_usual_way_refuses_in_its_words(text, refused):
    def outcome(**kw):
        try:
            return "ok", load_text(text, "f.yaml", **kw)
        except ConfigError as e:
            return "error", str(e)
    slow, fast = outcome(), outcome(fast=True)
    assert fast[0] == slow[0] == ("error" if refused else "ok")
    if refused:
        assert fast[1] == slow[1] and slow[1].startswith("f.yaml:"), slow[1]
    else:
        _same(slow[1], fast[1])


def test_fast_loading_reads_a_valid_text_with_libyaml_alone(monkeypatch):
    import yaml

    from runwatch import yamlfile
    if not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("PyYAML built without libyaml: fast=True is the usual way")
    bases = []
    real = yamlfile._loader_for
    monkeypatch.setattr(yamlfile, "_loader_for",
                        lambda file, base=yaml.SafeLoader: bases.append(base) or real(file, base))
    load_text(DOC, "cfg.yaml", fast=True)
    assert bases == [yaml.CSafeLoader]
    with pytest.raises(ConfigError):
        load_text("a: 1\na: 2\n", "cfg.yaml", fast=True)
    assert bases == [yaml.CSafeLoader, yaml.CSafeLoader, yaml.SafeLoader]     # refused: read again the usual way
