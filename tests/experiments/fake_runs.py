"""A finished recall ReCoRD run as the trainer leaves it, written by hand for table and bootstrap tests."""
import json
import os

import numpy as np


def write_record_run(model_dir: str, golds, preds, early_stop: bool = True) -> float:
    """Writes test_predictions and a metrics.jsonl whose test exact match (= F1) is that of `preds`
    against `golds`; returns that exact match (%)."""
    os.makedirs(os.path.join(model_dir, "test_predictions"))
    with open(os.path.join(model_dir, "test_predictions", "test_recall_world_record.jsonl"), "w") as f:
        f.writelines(json.dumps({"target": g, "prediction": p}) + "\n" for g, p in zip(golds, preds))
    em = 100 * float(np.mean([p == g for p, g in zip(preds, golds)]))
    with open(os.path.join(model_dir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 300, "kind": "train", "loss": 1.0}) + "\n")
        f.write(json.dumps({"step": 200, "kind": "test", "test/recall_world_record/em": em,
                            "test/recall_world_record/f1": em}) + "\n")
        if early_stop:
            f.write(json.dumps({"step": 300, "kind": "early_stop", "best_step": 200, "patience": 1}) + "\n")
    return em


def finish_search_run(results_dir: str, name: str, value: float, task: str = "boolq") -> None:
    """A finished run as a search reads it (the runner's DONE, the trainer's best.json at step 100)."""
    from experiments import spec as S

    rd = S.run_dir(results_dir, name)
    os.makedirs(os.path.join(rd, "model", "best"), exist_ok=True)
    with open(os.path.join(rd, "DONE"), "w") as f:
        json.dump({"rc": 0}, f)
    with open(os.path.join(rd, "model", "best", "best.json"), "w") as f:
        json.dump({"step": 100, "value": value, "metrics": {f"recall_world_{task}/accuracy": value}}, f)
