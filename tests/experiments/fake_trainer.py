"""A stand-in for `python -m prompt_tuning.train` in runner tests: same flags, instant, scriptable.

    --gin.MODEL_DIR='dir' --gin.TRAIN_STEPS=N --gin.FAKE_MODE='ok'|'fail'|'preempt_once'|'wait_for_term'|'early_stop'

Writes MODEL_DIR/metrics.jsonl as the trainer does (one eval record per step, resuming after the
last logged step). 'preempt_once' stops at step 1 with status 0 the first time (as the trainer
does on SIGTERM), 'wait_for_term' sleeps until SIGTERM, then logs step 1 and exits 0, 'early_stop'
logs step 1 and an early_stop record (the trainer's patience) and exits 0; a run that reaches
TRAIN_STEPS writes test_predictions/test_fake.jsonl (3 rows with inputs, as TEST_SPLITS does). With
--gin.learning_rate_schedule.base_learning_rate=R it writes best/best.json with a validation score
that peaks at R = 10^-1.5 (the model-tuning search's tests).
"""
import ast
import json
import os
import signal
import sys
import time


def main(argv):
    flags = {}
    for arg in argv:
        if arg.startswith("--gin.") and "=" in arg:
            k, v = arg[len("--gin."):].split("=", 1)
            flags[k] = ast.literal_eval(v)
    model_dir, steps, mode = flags["MODEL_DIR"], int(flags["TRAIN_STEPS"]), flags.get("FAKE_MODE", "ok")
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, "metrics.jsonl")
    done = 0
    if os.path.exists(path):
        with open(path) as f:
            done = max([json.loads(line)["step"] for line in f if line.strip()] + [0])

    def log(step):
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, "kind": "eval", "fake/accuracy": 10.0 * step,
                                "fake/loss": 1.0 / (step + 1)}) + "\n")

    print(f"fake trainer: mode {mode}, resuming after step {done}", flush=True)
    if mode == "fail":
        print("error: something is wrong", flush=True)
        return 2
    if mode == "wait_for_term":
        signal.signal(signal.SIGTERM, lambda *a: (log(1), sys.exit(0)))
        time.sleep(30)
        return 5
    rate = flags.get("learning_rate_schedule.base_learning_rate")
    if rate is not None:  # a model-tuning search point: a validation score that peaks at rate 10^-1.5
        import math

        value = 90.0 - 10 * abs(math.log10(rate) + 1.5) - float(flags.get("DROPOUT_RATE", 0.0))
        os.makedirs(os.path.join(model_dir, "best"), exist_ok=True)
        with open(os.path.join(model_dir, "best", "best.json"), "w") as f:
            json.dump({"step": 1, "value": value, "metrics": {"fake/accuracy": value}}, f)
    if mode == "early_stop":  # stops at step 1 for want of improvement, as the trainer's patience does
        log(1)
        with open(path, "a") as f:
            f.write(json.dumps({"step": 1, "kind": "early_stop", "best_step": 0, "patience": 1}) + "\n")
        return 0
    marker = os.path.join(model_dir, "preempted_once")
    for step in range(done + 1, steps + 1):
        log(step)
        if mode == "preempt_once" and step == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            return 0
    pred_dir = os.path.join(model_dir, "test_predictions")  # as TEST_SPLITS writes them: with the inputs
    os.makedirs(pred_dir, exist_ok=True)
    with open(os.path.join(pred_dir, "test_fake.jsonl"), "w") as f:
        for i in range(3):
            f.write(json.dumps({"inputs": f"question {i}", "prediction": "yes", "target": "yes" if i else "no"}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
