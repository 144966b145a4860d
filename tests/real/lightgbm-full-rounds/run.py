"""lightgbm.train for 25 rounds with early_stopping(100), which never triggers: LightGBM ends with
"Did not meet early stopping. Best iteration is:" and the best round's line. A train and a
validation set, two metrics (binary_logloss, auc), log_evaluation(1). Truth: the
record_evaluation dict, the booster's best_iteration and the rounds run."""
import json

import lightgbm as lgb
import numpy as np

rng = np.random.default_rng(3)
X = rng.normal(size=(600, 10))
y = (X[:, 0] - 0.6 * X[:, 4] + rng.normal(scale=1.0, size=600) > 0).astype(int)
train = lgb.Dataset(X[:400], label=y[:400])
valid = lgb.Dataset(X[400:], label=y[400:], reference=train)
record = {}
bst = lgb.train({"objective": "binary", "metric": ["binary_logloss", "auc"], "learning_rate": 0.05,
                 "num_leaves": 7, "seed": 0, "deterministic": True, "num_threads": 1, "verbosity": -1},
                train, num_boost_round=25, valid_sets=[train, valid], valid_names=["training", "valid_1"],
                callbacks=[lgb.log_evaluation(1), lgb.early_stopping(100), lgb.record_evaluation(record)])
with open("truth.json", "w") as f:
    json.dump({"evals_result": record, "best_iteration": bst.best_iteration,
               "best_score": {k: dict(v) for k, v in bst.best_score.items()}, "num_boost_round": 25,
               "rounds": len(record["valid_1"]["auc"])}, f)
