"""lightgbm.train with a train and a validation set, two metrics (binary_logloss, auc), the
log_evaluation and early_stopping callbacks, LightGBM's default verbosity (its [LightGBM] [Info]
and [Warning] lines), noisy synthetic data. Truth: the record_evaluation dict and the booster's
best_iteration / best_score."""
import json

import lightgbm as lgb
import numpy as np

rng = np.random.default_rng(0)
X = rng.normal(size=(600, 10))
y = (X[:, 0] + 0.8 * X[:, 1] + rng.normal(scale=1.5, size=600) > 0).astype(int)
train = lgb.Dataset(X[:400], label=y[:400])
valid = lgb.Dataset(X[400:], label=y[400:], reference=train)
record = {}
bst = lgb.train({"objective": "binary", "metric": ["binary_logloss", "auc"], "learning_rate": 0.2,
                 "num_leaves": 15, "seed": 0, "deterministic": True, "num_threads": 1},
                train, num_boost_round=200, valid_sets=[train, valid], valid_names=["training", "valid_1"],
                callbacks=[lgb.log_evaluation(1), lgb.early_stopping(5), lgb.record_evaluation(record)])
with open("truth.json", "w") as f:
    json.dump({"evals_result": record, "best_iteration": bst.best_iteration,
               "best_score": {k: dict(v) for k, v in bst.best_score.items()}, "num_boost_round": 200,
               "rounds": len(record["valid_1"]["auc"])}, f)
