"""The scikit-learn API: XGBClassifier(n_estimators=200, early_stopping_rounds=10) fitted with
eval_set=[train, validation] and verbose=5 (every 5th round is printed, and the last one), two
metrics (logloss, auc; early stopping on the last, validation_1-auc). Truth: evals_result(),
best_iteration, best_score, n_estimators and the rounds run (num_boosted_rounds)."""
import json

import numpy as np
from xgboost import XGBClassifier

rng = np.random.default_rng(2)
X = rng.normal(size=(800, 12))
y = (X[:, 0] + 0.6 * X[:, 3] - 0.4 * X[:, 5] + rng.normal(scale=1.4, size=800) > 0).astype(int)
clf = XGBClassifier(n_estimators=200, max_depth=3, learning_rate=0.1, early_stopping_rounds=10,
                    eval_metric=["logloss", "auc"], random_state=0)
clf.fit(X[:560], y[:560], eval_set=[(X[:560], y[:560]), (X[560:], y[560:])], verbose=5)
booster = clf.get_booster()
with open("truth.json", "w") as f:
    json.dump({"evals_result": clf.evals_result(), "best_iteration": clf.best_iteration,
               "best_score": clf.best_score, "num_boost_round": clf.n_estimators, "period": 5,
               "early_stopping": True, "rounds": booster.num_boosted_rounds()}, f)
