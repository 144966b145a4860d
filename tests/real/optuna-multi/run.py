"""optuna, two objectives (minimise both), 10 trials, one of which raises (caught) and one
that returns NaN (optuna marks it failed). Truth: study.trials and the Pareto front (best_trials)."""
import json
import math

import optuna


def objective(trial):
    x = trial.suggest_float("x", 0, 5)
    y = trial.suggest_float("y", 0, 3)
    if trial.number == 3:
        raise ValueError("simulated failure in the objective")
    if trial.number == 6:
        return math.nan, 1.0
    return 4 * x ** 2 + 4 * y ** 2, (x - 5) ** 2 + (y - 5) ** 2


study = optuna.create_study(directions=["minimize", "minimize"],
                            sampler=optuna.samplers.NSGAIISampler(seed=7))
study.optimize(objective, n_trials=10, catch=(ValueError,))
with open("truth.json", "w") as f:
    json.dump({"n_trials": 10, "states": [t.state.name for t in study.trials],
               "pareto_front": sorted(t.number for t in study.best_trials)}, f)
