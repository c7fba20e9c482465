"""A stand-in for `python -m experiments.shift_eval` in the shift command's tests: same flags, instant.

Reads --splits, --out-root, --gin.MIXTURE_OR_TASK_NAME, --gin.CHECKPOINT_PATH (or, for a prompt read
from a file, --gin.PROMPT_FILE) and writes, per split, OUT_ROOT/<split>/predictions_<task>.jsonl and
metrics.jsonl as the evaluation does, with the targets of the split's rows in $FAKE_EVAL_ROWS (a boolq
task directory). On a shifted split a model-tuning run (mt- in the path) is right on every 4th example,
any other run on 3 of 4; on the in-domain split 'test' every run is right (what the shift tests' finished
runs committed), unless $FAKE_EVAL_WRONG_TEST is set. Appends one line per split to $FAKE_EVAL_LOG; exits
3 without output when $FAKE_EVAL_FAIL is set.
"""
import ast
import json
import os
import sys


def main(argv):
    flags = {}
    splits, root = argv[argv.index("--splits") + 1].split(","), argv[argv.index("--out-root") + 1]
    for arg in argv:
        if arg.startswith("--gin.") and "=" in arg:
            k, v = arg[len("--gin."):].split("=", 1)
            flags[k] = ast.literal_eval(v)
    for split in splits:
        with open(os.environ["FAKE_EVAL_LOG"], "a") as f:
            f.write(json.dumps({"split": split, "checkpoint": params(flags)}) + "\n")
        if os.environ.get("FAKE_EVAL_FAIL"):
            print("error: the fake evaluation fails", flush=True)
            return 3
        write(split, os.path.join(root, split), flags)
    return 0


def params(flags):
    """Where the evaluated parameters come from: CHECKPOINT_PATH, else the prompt file."""
    return flags.get("CHECKPOINT_PATH") or flags["PROMPT_FILE"]


def write(split, out, flags):
    task = flags["MIXTURE_OR_TASK_NAME"]
    with open(os.path.join(os.environ["FAKE_EVAL_ROWS"], f"{split}.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    model = "/mt-" in params(flags)
    in_domain = split == "test" and not os.environ.get("FAKE_EVAL_WRONG_TEST")
    os.makedirs(out, exist_ok=True)
    right = 0
    with open(os.path.join(out, f"predictions_{task}.jsonl"), "w") as f:
        for i, r in enumerate(rows):
            ok = in_domain or ((i % 4 == 0) if model else (i % 4 != 3))
            right += ok
            gold = str(r["label"])
            f.write(json.dumps({"prediction": gold if ok else str(gold != "True"), "target": gold}) + "\n")
    with open(os.path.join(out, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 0, "kind": "eval", f"{task}/accuracy": 100 * right / len(rows)}) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
