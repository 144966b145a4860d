"""Keras 3 Model.fit (backend torch) with validation data: a tiny MLP on synthetic data, 6 epochs
of 13 batches, accuracy as a metric. Case keras-verbose1: verbose=1 (the progress bar; on a file
each update is a new line), keras-verbose2: verbose=2 (one line an epoch), keras-pty: verbose=1
under a pseudo-terminal (the bar redrawn in place). Truth: History.history, History.params."""
import json
import os

os.environ["KERAS_BACKEND"] = "torch"
import keras
import numpy as np

CASE = os.environ.get("RUNWATCH_CASE", "keras-verbose1")
VERBOSE = 2 if CASE == "keras-verbose2" else 1
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(400, 8)).astype("float32")
y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.7, size=400) > 0).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
h = model.fit(x[:320], y[:320], validation_data=(x[320:], y[320:]), epochs=6, batch_size=25,
              verbose=VERBOSE)
with open("truth.json", "w") as f:
    json.dump({"history": {k: [float(v) for v in vs] for k, vs in h.history.items()},
               "params": {k: v for k, v in h.params.items() if isinstance(v, (int, float, str))},
               "epochs_run": len(h.epoch), "verbose": VERBOSE, "uncaught_exceptions": 0}, f)
