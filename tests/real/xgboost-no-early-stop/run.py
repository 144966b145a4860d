"""xgboost.train for a fixed number of rounds (num_boost_round=30, no early stopping) with a train
and a validation set, two metrics each (logloss, error), printed every round. Truth:
evals_result() and the number of rounds asked for and run."""
import json

import numpy as np
import xgboost as xgb

rng = np.random.default_rng(1)
X = rng.normal(size=(600, 10))
y = (X[:, 0] - 0.7 * X[:, 2] + rng.normal(scale=1.2, size=600) > 0).astype(int)
dtrain = xgb.DMatrix(X[:400], label=y[:400])
dvalid = xgb.DMatrix(X[400:], label=y[400:])
evals_result = {}
bst = xgb.train({"objective": "binary:logistic", "eval_metric": ["logloss", "error"], "max_depth": 3,
                 "eta": 0.2, "seed": 0},
                dtrain, num_boost_round=30, evals=[(dtrain, "train"), (dvalid, "valid")],
                evals_result=evals_result, verbose_eval=True)
with open("truth.json", "w") as f:
    json.dump({"evals_result": evals_result, "num_boost_round": 30, "period": 1, "early_stopping": False,
               "rounds": bst.num_boosted_rounds()}, f)
