"""A stand-in for `python -m prompt_tuning.train` in the shift command's retraining test: same flags, instant.

Reads --gin.MODEL_DIR and --gin.MIXTURE_OR_TASK_NAME and writes what a finished trainer leaves that
experiments/shift.py reads: MODEL_DIR/best/1/ and MODEL_DIR/test_predictions/test_<task>.jsonl, every
answer right on the test rows of $FAKE_EVAL_ROWS (what the shift tests' finished runs committed), or every
answer wrong when $FAKE_TRAIN_WRONG is set (another ladder build). Appends {"train": MODEL_DIR} to
$FAKE_EVAL_LOG.
"""
import ast
import json
import os
import sys


def main(argv):
    flags = dict(arg[len("--gin."):].split("=", 1) for arg in argv if arg.startswith("--gin.") and "=" in arg)
    model_dir, task = ast.literal_eval(flags["MODEL_DIR"]), ast.literal_eval(flags["MIXTURE_OR_TASK_NAME"])
    with open(os.environ["FAKE_EVAL_LOG"], "a") as f:
        f.write(json.dumps({"train": model_dir}) + "\n")
    os.makedirs(os.path.join(model_dir, "best", "1"))
    os.makedirs(os.path.join(model_dir, "test_predictions"))
    with open(os.path.join(os.environ["FAKE_EVAL_ROWS"], "test.jsonl")) as f:
        golds = [str(json.loads(line)["label"]) for line in f]
    wrong = bool(os.environ.get("FAKE_TRAIN_WRONG"))
    with open(os.path.join(model_dir, "test_predictions", f"test_{task}.jsonl"), "w") as f:
        for gold in golds:
            f.write(json.dumps({"prediction": str(gold != "True") if wrong else gold, "target": gold}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
