"""transformers Trainer with its tqdm bar, crashing mid-training: a callback raises as step 14 of 36
begins (an uncaught exception whose traceback follows the bar's last redraw). Truth: Trainer.state
(log_history, global_step, max_steps) as it was when the callback raised."""
import json

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

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


class Diverge(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 13:          # 13 steps done and shown on the bar; the 14th never starts
            with open("truth.json", "w") as f:
                json.dump({"log_history": state.log_history, "global_step": state.global_step,
                           "max_steps": state.max_steps, "epoch": state.epoch, "uncaught_exceptions": 1,
                           "disable_tqdm": False, "crashed": True}, f)
            raise FloatingPointError(f"loss is NaN at step {state.global_step}")


cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=32, num_labels=2)
model = BertForSequenceClassification(cfg)
args = TrainingArguments(output_dir="out", num_train_epochs=3, per_device_train_batch_size=8,
                         logging_steps=4, eval_strategy="no", save_strategy="no", report_to="none",
                         learning_rate=5e-3, seed=0, use_cpu=True, dataloader_num_workers=0)
trainer = Trainer(model=model, args=args, train_dataset=Data(96), callbacks=[Diverge()])
trainer.train()
