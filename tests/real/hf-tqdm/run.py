"""transformers Trainer, its default tqdm bar on a file (case hf-tqdm) or with disable_tqdm=True (case
hf-no-tqdm: Trainer prints its logs with PrinterCallback, one dict a line): a tiny BERT built from a config (random
weights, no hub), synthetic token data, 3 epochs, a log every 4 steps, an evaluation each epoch
(eval_loss and eval_accuracy). Truth: Trainer.state (log_history, global_step, max_steps, epoch)."""
import json
import os

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

DISABLE_TQDM = os.environ.get("RUNWATCH_CASE") == "hf-no-tqdm"   # TrainingArguments(disable_tqdm=True)
torch.manual_seed(0)
rng = np.random.default_rng(0)


class Data(torch.utils.data.Dataset):
    def __init__(self, n):
        self.x = rng.integers(5, 60, size=(n, 16))
        self.y = (self.x[:, 0] > 32).astype(int)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": torch.tensor(self.x[i]), "labels": torch.tensor(int(self.y[i]))}


def accuracy(p):
    return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}


cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=32, num_labels=2)
model = BertForSequenceClassification(cfg)
args = TrainingArguments(output_dir="out", num_train_epochs=3, per_device_train_batch_size=8,
                         per_device_eval_batch_size=8, logging_steps=4, eval_strategy="epoch",
                         save_strategy="no", report_to="none", learning_rate=5e-3, seed=0,
                         disable_tqdm=DISABLE_TQDM, use_cpu=True, dataloader_num_workers=0)
trainer = Trainer(model=model, args=args, train_dataset=Data(96), eval_dataset=Data(40),
                  compute_metrics=accuracy)
trainer.train()
s = trainer.state
with open("truth.json", "w") as f:
    json.dump({"log_history": s.log_history, "global_step": s.global_step, "max_steps": s.max_steps,
               "epoch": s.epoch, "num_train_epochs": s.num_train_epochs, "uncaught_exceptions": 0,
               "disable_tqdm": DISABLE_TQDM}, f)
