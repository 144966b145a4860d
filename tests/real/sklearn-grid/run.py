"""GridSearchCV, verbose=3, on synthetic data, with a candidate whose fits fail
(max_depth=-1 is refused by the estimator at fit time; error_score=nan keeps the search going).
Truth: from the fitted search object (n_splits_, cv_results_, best_score_)."""
import json
import math
import sys
import warnings

from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.tree import DecisionTreeClassifier

VERBOSE = int(sys.argv[1]) if len(sys.argv) > 1 else 3
warnings.simplefilter("default")          # the FitFailedWarning is printed, as by default once

X, y = make_classification(n_samples=300, n_features=8, random_state=0)
search = GridSearchCV(DecisionTreeClassifier(random_state=0),
                      {"max_depth": [2, 4, -1], "min_samples_leaf": [1, 5]},
                      cv=3, verbose=VERBOSE, error_score=math.nan)
search.fit(X, y)

r, k = search.cv_results_, search.n_splits_
fold_scores = [float(r[f"split{i}_test_score"][c]) for c in range(len(r["params"])) for i in range(k)]
ok = [s for s in fold_scores if not math.isnan(s)]
with open("truth.json", "w") as f:
    json.dump({"n_splits": k, "n_candidates": len(r["params"]), "fits": len(fold_scores),
               "failed_fits": len(fold_scores) - len(ok), "best_fold_score": max(ok),
               "last_fold_score": fold_scores[-1] if not math.isnan(fold_scores[-1]) else None,
               "best_score": float(search.best_score_), "best_params": search.best_params_,
               "verbose": VERBOSE}, f)
