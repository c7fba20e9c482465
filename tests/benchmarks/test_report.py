"""Ratios, goals and the RESULTS.md format from hand-made worker results."""
import re

from benchmarks import report
from benchmarks.spec import QUICK


def _step(seconds, flops, mem, rss_peak, rss_start=100.0):
    return {"median_step_s": seconds, "examples_per_s": 8 / seconds, "achieved_flops": flops / seconds,
            "flops_analytic": {"total": flops}, "flops_xla": flops * 1.1, "flops_hlo_dots": flops,
            "xla_memory": {"total": mem}, "rss_mb": {"start": rss_start, "peak_steps": rss_peak},
            "host_s_median": 1e-4, "hlo": {"weight_gradient_matmuls": 0 if flops == 2 else 37}}


RESULTS = {
    "peak": {"n": 4096, "peak_flops": 4.0, "median_flops": 3.9},
    "prompt": _step(1.0, 2, 600, 700),
    "prompt_remat": _step(1.4, 2, 480, 560),
    "model": _step(1.2, 3, 1000, 1100),
    "model_pt": _step(1.5, 3, 1200, 1300),
    "eval": {"eval_batch": 8, "labels": 2, "prompts": 5, "decode_len": 4,
             "rank_single": {"examples_per_s": 10.0}, "rank_mixed": {"examples_per_s": 9.5},
             "decode_single": {"examples_per_s": 20.0}, "decode_mixed": {"examples_per_s": 16.0},
             "rank_mixed_over_single": 0.95, "decode_mixed_over_single": 0.8},
    "peft": {"median_step_s": 2.5, "examples_per_s": 8 / 2.5, "achieved_flops": 2 / 2.5,
             "flops_analytic": {"total": 2}, "rss_mb": {"peak": 900}},
}


def test_summary_ratios_and_goals():
    s = report.summarize(RESULTS)
    assert s["ours_over_peft_examples_per_s"] == 2.5
    assert abs(s["pt_over_mt_pt_time"] - 1 / 1.5) < 1e-12
    assert s["pt_over_mt_pt_xla_memory"] == 0.5
    assert s["pt_over_mt_rss_growth"] == 600 / 1000
    assert s["pt_fraction_of_peak"] == 0.5
    assert s["pt_remat_over_mt_pt_xla_memory"] == 0.4 and abs(s["pt_remat_over_pt_time"] - 1.4) < 1e-12
    met = {g["goal"]: g["met"] for g in s["goals"]}
    assert met["PT with remat / MT peak memory (XLA, same P+T shapes)"] is True
    assert met["PT achieved FLOP/s / matmul peak"] is False  # 0.5 against the 0.6
    assert met["ours/PEFT prompt-tuning examples/s"] is True
    assert met["PT/MT step time (same P+T shapes)"] is True
    assert met["5-prompt / 1-prompt rank throughput"] is True
    assert met["5-prompt / 1-prompt decode throughput"] is False
    assert met["weight-gradient matmuls in the PT step"] is True


def test_missing_peft_is_shown_not_fatal():
    results = dict(RESULTS, peft={"skipped": "PEFT comparison skipped: peft not installed"})
    s = report.summarize(results)
    assert s["ours_over_peft_examples_per_s"] is None
    assert {g["goal"]: g["met"] for g in s["goals"]}["ours/PEFT prompt-tuning examples/s"] is None
    text = report.text_report(QUICK, {"cpu": "x"}, results, s)
    assert "ours/PEFT prompt-tuning examples/s: -x" in text
    assert "(PEFT comparison skipped: peft not installed)" in text


def test_markdown_has_the_required_line_and_machine():
    payload = {"command": "python -m benchmarks.run", "date": "today", "wall_s": 1.0, "results": RESULTS,
               "summary": report.summarize(RESULTS),
               "machine": {"cpu": "Some CPU", "cpus_usable": 2, "cpu_count": 2, "load_before": (0.5, 0.4, 0.3),
                           "versions": {"jax": "0.10.2"}}}
    md = report.markdown_report(payload, QUICK)
    assert re.search(r"^- ours/PEFT prompt-tuning examples/s: \d+\.\d\dx$", md, re.M)
    assert "Some CPU" in md and "(0.5, 0.4, 0.3)" in md
    assert "| prompt tuning (ours) | 1.000 | 8.00 |" in md
