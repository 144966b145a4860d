"""optuna, one objective (minimise), 12 trials with optuna's progress bar, a median pruner
(trials report intermediate values) and a trial that raises (caught: the study goes on).
Truth: study.trials (states, values) and study.best_trial."""
import json

import optuna


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    if trial.number == 5:
        raise ValueError("simulated failure in the objective")
    for step in range(5):
        value = (x - 2) ** 2 + (5 - step) * 0.1
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return (x - 2) ** 2


study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=7),
                            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
study.optimize(objective, n_trials=12, catch=(ValueError,), show_progress_bar=True)
states = [t.state.name for t in study.trials]
with open("truth.json", "w") as f:
    json.dump({"n_trials": 12, "states": states, "values": [t.value for t in study.trials],
               "best_value": study.best_value, "best_number": study.best_trial.number,
               "direction": "minimize"}, f)
