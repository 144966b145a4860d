"""Helpers for the test suite, one concern per module.

    paths        where the repository, tests/ and exporter/ are
    ports        a free loopback port
    bytecode     compiled bytecode outside the checkout when none may be written in it
    waits        wait_for (poll a condition) and wait_http (poll a URL)
    procs        runwatch as a subprocess: runwatch_cmd, Proc, child_env,
                 processes in their own group with a log file
    prom_text    reading samples out of Prometheus text exposition
    cli          runwatch's command line inside the test process (exit code and
                 exact output of scan, check, --help)
    events       hand-built events for the pure reducer and its neighbours
    tools        the system tools the stack tests run, what installs them,
                 the stack marker read, and whether this is CI
    stack        the project's Prometheus config and rules run for real,
                 the dashboards' JSON read as data
    loki_double  a local Loki push API that validates like Loki
    fakes/       the cloud doubles (ARM, Azure ML, Retail Prices, W&B)

Tests import them as ``from support.waits import wait_for``: pyproject.toml's
``[tool.pytest.ini_options] pythonpath`` puts tests/ on the path. Fixtures and
pytest hooks stay in tests/conftest.py.
"""
