"""A crash with chained exceptions: an explicit cause (raise ... from) and an implicit
context (an exception while handling another). Truth: the exceptions that reached the
interpreter's excepthook, and each one's chain, from the exception objects."""
import json
import sys

_hook = sys.excepthook


def _record(etype, value, tb):
    chain, e = [], value
    while e is not None:
        chain.append(type(e).__name__)
        e = e.__cause__ or e.__context__
    with open("truth.json", "w") as f:
        json.dump({"uncaught_exceptions": 1, "chain": chain, "tracebacks_printed": len(chain)}, f)
    _hook(etype, value, tb)


sys.excepthook = _record


def load_config(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError as e:
        raise RuntimeError(f"cannot load the config {path}") from e


def main():
    print("starting job")
    try:
        load_config("missing-config.yaml")
    except RuntimeError:
        settings = {}
        return settings["fallback"]         # KeyError while handling the RuntimeError


main()
