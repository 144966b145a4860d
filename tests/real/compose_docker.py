#!/usr/bin/env python3
"""Write the docker cases of the corpus: tests/real/docker-<builder>-<ok|fail>/log and truth.json.

Docker cannot run where the corpus is recorded (no daemon), so these logs are composed, byte for
byte in the formats docker's own printers define:
  - classic:  the daemon's builder (builder/dockerfile: "Step %d/%d : %s", " ---> %s",
              "Successfully built %s", "The command '%s' returned a non-zero code: %d") and the
              CLI's deprecation notice for DOCKER_BUILDKIT=0 (docker 28.2);
  - plain:    BuildKit's util/progress/progressui/printer.go (textMux.printVtx: "#%d %s",
              "#%d %s%s%s" statuses, "#%d <seconds> <log>", "#%d DONE %.1fs", "#%d CACHED",
              "#%d ERROR: %s", "#%d CANCELED", "#%d ..." when it switches vertices, a blank line
              between vertices, "#0 building with ..." first) and the CLI's error summary;
  - tty:      progressui/display.go (ttyDisplay.print): each frame moves the cursor up over the
              last one (ESC[1A per line, ESC[0G), hides it (ESC[?25l), prints the header
              "[+] Building %.1fs (%d/%d) FINISHED" aligned to the width with the builder's name
              on the right, one line per vertex " => <name>" with its time right-aligned
              (" %3.1fs"), coloured blue when complete, red on error, yellow when canceled
              (aec.Apply: the reset lands after the newline), status lines " => => <id>", the
              step's last output lines " => => # <line>" (faint) under a running step, and shows
              the cursor again (ESC[?25h).
The build is one Dockerfile (a two-stage Python image: 6 steps in stage "builder", 4 in the final
stage) at 100 columns; the failing builds fail at the builder's `RUN pip wheel` (a requirement pip
cannot find). What the steps print is modelled on public build transcripts (named in each case's
README). The truth is read from each transcript's own closing lines, as a user would read them:
the last "Step k/N" and "Successfully built" (classic); the steps' DONE / CACHED lines and
"failed to solve" (plain); the last frame's header (tty).

    python3 tests/real/compose_docker.py      # rewrites the six docker-* cases
"""
from __future__ import annotations

import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
WIDTH = 100

STEPS = [  # (stage, instruction) in Dockerfile order
    ("builder", "FROM docker.io/library/python:3.12@sha256:"
                "1f3b2c0e9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"),
    ("builder", "WORKDIR /src"),
    ("builder", "COPY requirements.txt ."),
    ("builder", "RUN pip wheel --wheel-dir /wheels -r requirements.txt"),
    ("builder", "COPY . ."),
    ("builder", "RUN python -m compileall -q app"),
    ("stage-1", "FROM docker.io/library/python:3.12-slim@sha256:"
                "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"),
    ("stage-1", "COPY --from=builder /wheels /wheels"),
    ("stage-1", "RUN pip install --no-cache-dir /wheels/*.whl"),
    ("stage-1", "COPY --from=builder /src/app /app"),
]
CLASSIC = ["FROM python:3.12 AS builder", "WORKDIR /src", "COPY requirements.txt .",
           "RUN pip wheel --wheel-dir /wheels -r requirements.txt", "COPY . .", "RUN python -m compileall -q app",
           "FROM python:3.12-slim", "COPY --from=builder /wheels /wheels",
           "RUN pip install --no-cache-dir /wheels/*.whl", "COPY --from=builder /src/app /app",
           'CMD ["python", "-m", "app"]']
WHEEL_OK = ["Collecting requests==2.32.3 (from -r requirements.txt (line 1))",
            "  Downloading requests-2.32.3-py3-none-any.whl.metadata (4.6 kB)",
            "Collecting numpy==2.1.3 (from -r requirements.txt (line 2))",
            "  Downloading numpy-2.1.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl.metadata (62 kB)",
            "Saved /wheels/requests-2.32.3-py3-none-any.whl",
            "Saved /wheels/numpy-2.1.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "Saved /wheels/idna-3.10-py3-none-any.whl",
            "Saved /wheels/urllib3-2.2.3-py3-none-any.whl"]
WHEEL_FAIL = ["Collecting requests==2.32.3 (from -r requirements.txt (line 1))",
              "  Downloading requests-2.32.3-py3-none-any.whl.metadata (4.6 kB)",
              "ERROR: Could not find a version that satisfies the requirement numpy==9.9.9 "
              "(from versions: 2.0.0, 2.1.3)",
              "ERROR: No matching distribution found for numpy==9.9.9"]
INSTALL = ["Processing /wheels/idna-3.10-py3-none-any.whl",
           "Processing /wheels/numpy-2.1.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
           "Installing collected packages: urllib3, numpy, idna, requests",
           "Successfully installed idna-3.10 numpy-2.1.3 requests-2.32.3 urllib3-2.2.3",
           "WARNING: Running pip as the 'root' user can result in broken permissions and conflicting behaviour "
           "with the system package manager."]
FAILED_CMD = "/bin/sh -c pip wheel --wheel-dir /wheels -r requirements.txt"
SOLVE_ERROR = f'process "{FAILED_CMD}" did not complete successfully: exit code: 1'
ERROR_SUMMARY = ["------",
                 " > [builder 4/6] RUN pip wheel --wheel-dir /wheels -r requirements.txt:",
                 *[f"1.{204 + 3 * i} {t}" for i, t in enumerate(WHEEL_FAIL)],
                 "------",
                 "Dockerfile:4",
                 "--------------------",
                 "   2 |     WORKDIR /src",
                 "   3 |     COPY requirements.txt .",
                 "   4 | >>> RUN pip wheel --wheel-dir /wheels -r requirements.txt",
                 "   5 |     COPY . .",
                 "   6 |     RUN python -m compileall -q app",
                 "--------------------",
                 f"ERROR: failed to build: failed to solve: {SOLVE_ERROR}"]


def step_names() -> list[str]:
    counts: dict[str, int] = {}
    for stage, _ in STEPS:
        counts[stage] = counts.get(stage, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for stage, ins in STEPS:
        seen[stage] = seen.get(stage, 0) + 1
        out.append(f"[{stage} {seen[stage]}/{counts[stage]}] {ins}")
    return out


# ------------------------------------------------------------------ classic

def classic(fail: bool) -> str:
    out = ["DEPRECATED: The legacy builder is deprecated and will be removed in a future release.",
           "            BuildKit is currently disabled; enable it by removing the DOCKER_BUILDKIT=0",
           "            environment-variable.", "", "Sending build context to Docker daemon  14.85kB"]
    layer = iter(f"{0x3a1f20c4b7e9 + 0x1111 * i:012x}" for i in range(100))
    n = len(CLASSIC)
    for i, ins in enumerate(CLASSIC, 1):
        out.append(f"Step {i}/{n} : {ins}")
        if ins.startswith("FROM"):
            out.append(f" ---> {next(layer)}")
            continue
        container = next(layer)
        if ins.startswith(("RUN", "WORKDIR", "CMD")):
            out.append(f" ---> Running in {container}")
        if ins.startswith("RUN pip wheel"):
            out += WHEEL_FAIL if fail else WHEEL_OK
            if fail:
                out.append(f"The command '{FAILED_CMD}' returned a non-zero code: 1")
                return "\n".join(out) + "\n"
        elif ins.startswith("RUN pip install"):
            out += INSTALL
        if ins.startswith(("RUN", "WORKDIR", "CMD")):
            out.append(f" ---> Removed intermediate container {container}")
        out.append(f" ---> {next(layer)}")
    out += [f"Successfully built {next(layer)}", "Successfully tagged app:latest"]
    return "\n".join(out) + "\n"


def classic_truth(log: str) -> dict:
    steps = re.findall(r"^Step (\d+)/(\d+) : ", log, re.M)
    last, total = map(int, steps[-1])
    built = re.search(r"^Successfully built ", log, re.M) is not None
    return {"builder": "classic", "steps": total, "succeeded": built,
            "steps_done": total if built else last - 1}


# ------------------------------------------------------------------ plain

def plain(fail: bool) -> str:
    names = step_names()
    out = ['#0 building with "default" instance using docker driver', ""]
    vertex = [0]

    def v(name, lines, end):
        vertex[0] += 1
        out.append(f"#{vertex[0]} {name}")
        out.extend(f"#{vertex[0]} {x}" for x in lines)
        if end:
            out.append(f"#{vertex[0]} {end}")
        out.append("")
        return vertex[0]

    v("[internal] load build definition from Dockerfile", ["transferring dockerfile: 412B done"], "DONE 0.0s")
    v("[internal] load metadata for docker.io/library/python:3.12-slim", [], "DONE 0.9s")
    v("[internal] load metadata for docker.io/library/python:3.12", [], "DONE 0.9s")
    v("[internal] load .dockerignore", ["transferring context: 2B done"], "DONE 0.0s")
    v(names[0], ["resolve docker.io/library/python:3.12@sha256:1f3b2c0e9a8d 0.0s done"], "CACHED")
    v("[internal] load build context", ["transferring context: 14.85kB done"], "DONE 0.0s")
    v(names[1], [], "CACHED")
    v(names[2], [], "DONE 0.1s")
    if fail:
        n = v(names[3], [f"1.{204 + 3 * i} {t}" for i, t in enumerate(WHEEL_FAIL)], f"ERROR: {SOLVE_ERROR}")
        v(names[6], ["resolve docker.io/library/python:3.12-slim@sha256:9e8d7c6b5a4f 0.0s done",
                     "sha256:a1b2c3d4e5f6 29.13MB / 29.13MB 1.1s"], "CANCELED")
        out.extend(ERROR_SUMMARY)
        del n
        return "\n".join(out) + "\n"
    v(names[3], [f"1.{204 + 3 * i} {t}" for i, t in enumerate(WHEEL_OK)], "DONE 6.4s")
    v(names[6], ["resolve docker.io/library/python:3.12-slim@sha256:9e8d7c6b5a4f 0.0s done",
                 "sha256:a1b2c3d4e5f6 29.13MB / 29.13MB 1.1s done",
                 "extracting sha256:a1b2c3d4e5f6 0.8s done"], "DONE 2.0s")
    v(names[4], [], "DONE 0.1s")
    v(names[5], [], "DONE 0.4s")
    v(names[7], [], "DONE 0.2s")
    v(names[8], [f"0.{412 + 5 * i} {t}" for i, t in enumerate(INSTALL)], "DONE 3.1s")
    v(names[9], [], "DONE 0.1s")
    v("exporting to image", ["exporting layers 0.6s done",
                             "writing image sha256:"
                             "5c0f4e2d9b8a7c6e5f4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f done",
                             "naming to docker.io/library/app:latest done"], "DONE 0.6s")
    return "\n".join(out).rstrip("\n") + "\n"


def plain_truth(log: str) -> dict:
    steps: dict[str, tuple[str, int]] = {}
    totals: dict[str, int] = {}
    for vtx, stage, _k, n in re.findall(r"^#(\d+) \[(\S+) (\d+)/(\d+)\] ", log, re.M):
        steps[vtx] = stage
        totals[stage] = int(n)
    done = {vtx for vtx in re.findall(r"^#(\d+) (?:DONE|CACHED)\b", log, re.M) if vtx in steps}
    failed = re.search(r"^ERROR: (?:failed to build: )?failed to solve: ", log, re.M) is not None
    return {"builder": "plain", "steps": sum(totals.values()), "succeeded": not failed, "steps_done": len(done)}


# ------------------------------------------------------------------ tty

class Vertex:
    def __init__(self, name, known, start, end, cached=False, error=False, canceled=False, statuses=(), logs=()):
        self.name, self.known, self.start, self.end = name, known, start, end
        self.cached, self.error, self.canceled = cached, error, canceled
        self.statuses, self.logs = list(statuses), list(logs)   # (id, start, end); (time, text)


def timeline(fail: bool) -> list[Vertex]:
    n = step_names()
    vs = [Vertex("[internal] load build definition from Dockerfile", 0.0, 0.0, 0.04,
                 statuses=[("transferring dockerfile: 412B", 0.0, 0.03)]),
          Vertex("[internal] load metadata for docker.io/library/python:3.12-slim", 0.05, 0.05, 0.95),
          Vertex("[internal] load metadata for docker.io/library/python:3.12", 0.05, 0.05, 0.92),
          Vertex("[internal] load .dockerignore", 0.05, 0.06, 0.08,
                 statuses=[("transferring context: 2B", 0.06, 0.07)])]
    k = 0.96                                                     # the whole graph is known from here
    vs += [Vertex(n[0], k, 0.97, 0.98, cached=True,
                  statuses=[("resolve docker.io/library/python:3.12@sha256:1f3b2c0e9a8d", 0.97, 0.98)]),
           Vertex("[internal] load build context", k, 0.97, 1.01,
                  statuses=[("transferring context: 14.85kB", 0.97, 1.0)]),
           Vertex(n[1], k, 0.98, 0.98, cached=True),
           Vertex(n[2], k, 1.02, 1.1)]
    if fail:
        vs += [Vertex(n[3], k, 1.1, 3.3, error=True, logs=[(2.3 + 0.3 * i, t) for i, t in enumerate(WHEEL_FAIL)]),
               Vertex(n[6], k, 0.97, 3.3, canceled=True,
                      statuses=[("resolve docker.io/library/python:3.12-slim@sha256:9e8d7c6b5a4f", 0.97, 0.99),
                                ("sha256:a1b2c3d4e5f6 29.13MB / 29.13MB", 1.0, None)]),
               Vertex(n[4], k, None, None), Vertex(n[5], k, None, None), Vertex(n[7], k, None, None),
               Vertex(n[8], k, None, None), Vertex(n[9], k, None, None), Vertex("exporting to image", k, None, None)]
        return vs
    vs += [Vertex(n[3], k, 1.1, 7.5, logs=[(2.3 + 0.6 * i, t) for i, t in enumerate(WHEEL_OK)]),
           Vertex(n[6], k, 0.97, 2.9,
                  statuses=[("resolve docker.io/library/python:3.12-slim@sha256:9e8d7c6b5a4f", 0.97, 0.99),
                            ("sha256:a1b2c3d4e5f6 29.13MB / 29.13MB", 1.0, 2.1),
                            ("extracting sha256:a1b2c3d4e5f6", 2.1, 2.9)]),
           Vertex(n[4], k, 7.5, 7.6), Vertex(n[5], k, 7.6, 8.0), Vertex(n[7], k, 8.0, 8.2),
           Vertex(n[8], k, 8.2, 11.3, logs=[(8.6 + 0.5 * i, t) for i, t in enumerate(INSTALL)]),
           Vertex(n[9], k, 11.3, 11.4),
           Vertex("exporting to image", k, 11.4, 12.0, statuses=[("exporting layers", 11.4, 11.9),
                                                               ("naming to docker.io/library/app:latest", 11.9, 12.0)])]
    return vs


ESC = "\x1b["
BLUE, RED, YELLOW, FAINT, RESET = ESC + "34m", ESC + "31m", ESC + "33m", ESC + "2m", ESC + "0m"


def align(left: str, right: str, w: int) -> str:
    return f"{left:<{w - len(right) - 1}} {right}"


def tty_frame(vs, t, prev_lines, first, all_done) -> tuple[str, int]:
    out = [ESC + "1A"] * (prev_lines + 1)
    if first:
        out.append(ESC + "1B")
    out.append(ESC + "0G" + ESC + "?25l")
    known = [v for v in vs if v.known <= t]
    done = sum(1 for v in known if v.end is not None and v.end <= t)       # errors and cancels complete too
    status = "FINISHED" if all_done and done == len(known) else ""
    header = align(f"[+] Building {t:.1f}s ({done}/{len(known)}) {status}", "docker:default", WIDTH - 1)
    out.append(header[:WIDTH] + "\n")
    lines = 0
    for v in known:
        if v.start is None or v.start > t:
            continue
        complete = v.end is not None and v.end <= t
        name = ("CANCELED " if v.canceled and complete else "") + ("ERROR " if v.error and complete else "") + \
               ("CACHED " if v.cached else "") + v.name
        jobs = [(name, v.start, v.end, complete, v)]
        jobs += [("=> " + sid, s0, s1, s1 is not None and s1 <= t, None) for sid, s0, s1 in v.statuses if s0 <= t]
        for jname, s0, s1, comp, owner in jobs:
            dt = (min(s1, t) if s1 is not None else t) - s0
            dt = 0 if dt < 0.05 else dt
            timer = f" {dt:3.1f}s\n"
            left = WIDTH - 4 - len(timer) - 1
            line = align(" => " + jname[:left], timer, WIDTH)
            if comp:
                color = BLUE
                if owner is not None and (owner.canceled or owner.error):
                    color = YELLOW if owner.canceled else RED
                line = color + line + RESET
            out.append(line)
            lines += 1
            if owner is not None and not comp and owner.logs:
                for _, text in [x for x in owner.logs if x[0] <= t][-6:]:
                    out.append(FAINT + f" => => # {text[:WIDTH - 12]}\n" + RESET)
                    lines += 1
    if prev_lines > lines:                   # blank what the last frame had below, go back up
        out += [" " * WIDTH + "\n"] * (prev_lines - lines) + [f"{ESC}{prev_lines - lines}A{ESC}0G"]
    out.append(ESC + "?25h")
    return "".join(out), lines


def tty(fail: bool) -> str:
    vs = timeline(fail)
    end = 3.3 if fail else 12.0
    times = [round(0.1 + 0.7 * i, 1) for i in range(int(end / 0.7) + 1) if 0.1 + 0.7 * i < end] + [end]
    out, lines = [], 0
    for i, t in enumerate(times):
        frame, lines = tty_frame(vs, t, lines, i == 0, i == len(times) - 1)
        out.append(frame)
    text = "".join(out)
    if fail:
        text += "\n".join(ERROR_SUMMARY) + "\n"
    return text


def tty_truth(log: str) -> dict:
    heads = re.findall(r"\[\+\] Building [\d.]+s \((\d+)/(\d+)\) (FINISHED)?", log)
    done, total, finished = heads[-1]
    failed = re.search(r"^ERROR: (?:failed to build: )?failed to solve: ", log, re.M) is not None
    return {"builder": "tty", "vertices_done": int(done), "vertices": int(total), "finished": bool(finished),
            "succeeded": bool(finished) and not failed}


SOURCES = {  # GitHub repository: title of the public thread whose pasted build output was consulted
    "classic": ["moby/moby: \"Nicer output for 'docker build'\" (Step / ---> lines of a classic build)",
                "balena-io/balena-cli: \"Inconsistent output when building\" (Step k/N, Using cache, "
                "Successfully built / tagged)"],
    "plain": ["docker/build-push-action: \"GHA Cache Not Caching for Pre-Stages (multi-stage builds)\" "
              "(plain progress: statuses, DONE, a CI runner's timestamps)",
              "moby/buildkit: \"output file is required for docker exporter\" (internal loads, exporting)"],
    "tty": ["moby/buildkit: \"output file is required for docker exporter\" (a final frame: "
            "[+] Building 3.1s (12/12) FINISHED, => => statuses)",
            "docker/buildx: \"Bake --load not working in certain context\" (=> exporting ... lines)"],
}
PRINTERS = {
    "classic": "docker 28.2's CLI (DOCKER_BUILDKIT=0 notice) and the daemon's classic builder (builder/dockerfile)",
    "plain": "BuildKit util/progress/progressui/printer.go (textMux) and the CLI's error summary",
    "tty": "BuildKit util/progress/progressui/display.go (ttyDisplay.print), 100 columns, colours on",
}


def main() -> None:
    for builder, make, truth_of in (("classic", classic, classic_truth), ("plain", plain, plain_truth),
                                    ("tty", tty, tty_truth)):
        for fail in (False, True):
            case = f"docker-{builder}-{'fail' if fail else 'ok'}"
            d = os.path.join(HERE, case)
            os.makedirs(d, exist_ok=True)
            log = make(fail)
            with open(os.path.join(d, "log"), "w", newline="") as f:
                f.write(log)
            with open(os.path.join(d, "truth.json"), "w") as f:
                json.dump(truth_of(log), f, indent=1, sort_keys=True)
                f.write("\n")
            with open(os.path.join(d, "README"), "w") as f:
                f.write(f"{case}: composed by tests/real/compose_docker.py "
                        "(docker cannot run where the corpus is recorded)\n"
                        f"format: {PRINTERS[builder]}, read in their source\n"
                        f"a two-stage Python image; {'fails at the builder RUN pip wheel' if fail else 'builds'}\n"
                        "what the steps print is modelled on these public transcripts (not copied from them):\n"
                        + "".join(f"  {s}\n" for s in SOURCES[builder])
                        + "truth.json: read from the transcript's own closing lines\n")
            print(f"{case}: {len(log)} bytes")


if __name__ == "__main__":
    main()
