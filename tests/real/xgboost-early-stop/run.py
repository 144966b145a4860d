"""xgboost.train with a train and a validation set, two metrics each (logloss, auc) and early
stopping on the last one (valid-auc), on noisy synthetic data. Truth: evals_result() and the
booster's best_iteration / best_score."""
import json

import numpy as np
import xgboost as xgb

rng = np.random.default_rng(0)
X = rng.normal(size=(600, 10))
y = (X[:, 0] + 0.8 * X[:, 1] + rng.normal(scale=1.5, size=600) > 0).astype(int)
dtrain = xgb.DMatrix(X[:400], label=y[:400])
dvalid = xgb.DMatrix(X[400:], label=y[400:])
evals_result = {}
bst = xgb.train({"objective": "binary:logistic", "eval_metric": ["logloss", "auc"], "max_depth": 4,
                 "eta": 0.3, "seed": 0},
                dtrain, num_boost_round=200, evals=[(dtrain, "train"), (dvalid, "valid")],
                early_stopping_rounds=5, evals_result=evals_result, verbose_eval=True)
with open("truth.json", "w") as f:
    json.dump({"evals_result": evals_result, "best_iteration": bst.best_iteration,
               "best_score": bst.best_score, "num_boost_round": 200,
               "rounds": len(evals_result["valid"]["auc"])}, f)
