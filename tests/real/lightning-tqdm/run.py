"""PyTorch Lightning Trainer.fit on CPU: a tiny classifier on synthetic data, validation each epoch,
train_loss on the progress bar (self.log(prog_bar=True)), val_loss and val_acc logged.
  lightning-tqdm / lightning-tqdm-pty:  TQDMProgressBar (the default), on a file / under a pty
  lightning-rich / lightning-rich-pty:  RichProgressBar, on a file / under a pty
  lightning-early-stop:                 TQDMProgressBar and EarlyStopping(val_loss, patience=2,
                                        verbose=True), max_epochs=40
  lightning-tqdm-no-max-epochs[-pty]:   TQDMProgressBar, Lightning's defaults (no max_epochs, no
                                        max_steps: it warns and sets max_epochs=1000), stopped by
                                        EarlyStopping(val_loss, patience=2, verbose=True)
  lightning-tqdm-max-steps:             TQDMProgressBar, max_steps=40 and no max_epochs (-1)
  lightning-rich-max-steps:             RichProgressBar, max_steps=40 and no max_epochs ("Epoch 0/-2")
  lightning-rich-80 / -100 / -120:      RichProgressBar on a file, COLUMNS 80, 100, 120, with more
                                        metrics on the bar (a long name among them), so that rich
                                        wraps the metrics column and splits names from values
Truth from Lightning's own objects: trainer.callback_metrics, trainer.logged_metrics, the values
each epoch logged (a callback's copy of callback_metrics at every validation end) and the
progress bar's metrics after each training step (trainer.progress_bar_metrics),
trainer.current_epoch, trainer.global_step, max_epochs, the early stopping callback's stopped_epoch."""
import json
import os

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, RichProgressBar, TQDMProgressBar

CASE = os.environ.get("RUNWATCH_CASE", "lightning-tqdm")
EARLY = CASE in ("lightning-early-stop", "lightning-tqdm-no-max-epochs", "lightning-tqdm-no-max-epochs-pty")
MAX_STEPS = 40 if CASE.endswith("-max-steps") else -1
DEFAULT_EPOCHS = "no-max-epochs" in CASE or MAX_STEPS > 0      # max_epochs left to Lightning
WIDE = CASE in ("lightning-rich-80", "lightning-rich-100", "lightning-rich-120")   # more metrics
pl.seed_everything(0, verbose=False)
rng = np.random.default_rng(0)
x = torch.tensor(rng.normal(size=(480, 8)), dtype=torch.float32)
y = ((x[:, 0] + 0.5 * x[:, 1] + torch.tensor(rng.normal(scale=0.9, size=480))) > 0).long()
train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:384], y[:384]), batch_size=32)
val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[384:], y[384:]), batch_size=32)


class Net(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))

    def training_step(self, batch, i):
        xb, yb = batch
        loss = torch.nn.functional.cross_entropy(self.net(xb), yb)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, i):
        xb, yb = batch
        out = self.net(xb)
        self.log("val_loss", torch.nn.functional.cross_entropy(out, yb), prog_bar=True)
        self.log("val_acc", (out.argmax(-1) == yb).float().mean(), prog_bar=True)
        if WIDE:
            pred = out.argmax(-1)
            recall = [((pred == c) & (yb == c)).float().sum() / max(1, int((yb == c).sum())) for c in (0, 1)]
            self.log("val_balanced_multiclass_accuracy", sum(recall) / 2, prog_bar=True)
            self.log("val_error", (pred != yb).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3 if EARLY else 0.05)


class Record(pl.Callback):
    """What Lightning itself holds after each validation (not what the bar shows)."""
    def __init__(self):
        self.epochs, self.steps = [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, i):
        self.steps.append({k: float(v) for k, v in trainer.progress_bar_metrics.items()})

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self.epochs.append({k: float(v) for k, v in trainer.callback_metrics.items()})

    def on_train_epoch_end(self, trainer, module):
        """WIDE: which metric names rich's own layout shows whole at this width (a name wider than
        the metrics column is cut with an ellipsis): the training bar's row, rendered by rich
        itself as the bar draws it, to a console of the bar's width."""
        if WIDE:
            import io

            from rich.console import Console
            bar = trainer.progress_bar_callback
            out = Console(file=io.StringIO(), width=bar._console.width)
            task = [t for t in bar.progress.tasks if t.id == bar.train_progress_bar_id]
            out.print(bar.progress.make_tasks_table(task))
            text = " ".join(out.file.getvalue().split())
            self.rich_width = bar._console.width
            self.rich_shown = sorted(k for k in trainer.progress_bar_metrics if f" {k}: " in f" {text} ")


rec = Record()
callbacks = [rec, RichProgressBar() if "rich" in CASE else TQDMProgressBar()]
if EARLY:
    stopper = EarlyStopping(monitor="val_loss", patience=2, verbose=True)
    callbacks.append(stopper)
limits = {} if DEFAULT_EPOCHS else {"max_epochs": 40 if EARLY else 4}
trainer = pl.Trainer(**limits, max_steps=MAX_STEPS, accelerator="cpu", devices=1, callbacks=callbacks,
                     logger=pl.loggers.CSVLogger("logs"), enable_checkpointing=False,
                     enable_model_summary=True, log_every_n_steps=4)
trainer.fit(Net(), train, val)
with open("truth.json", "w") as f:
    json.dump({"callback_metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
               "logged_metrics": {k: float(v) for k, v in trainer.logged_metrics.items()},
               "epochs": rec.epochs, "steps": rec.steps, "current_epoch": trainer.current_epoch,
               "global_step": trainer.global_step, "max_steps": trainer.max_steps,
               "max_epochs": trainer.max_epochs, "train_batches": len(train), "val_batches": len(val),
               "early_stopping": EARLY, "stopped_epoch": stopper.stopped_epoch if EARLY else None,
               "finished": trainer.state.finished, "uncaught_exceptions": 0,
               **({"rich_width": rec.rich_width, "rich_shown": rec.rich_shown} if WIDE else {})}, f)
