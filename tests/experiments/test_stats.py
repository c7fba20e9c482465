"""experiments/stats.py on constructed cases whose answers are known."""
import math

import numpy as np
import pytest

from experiments import stats


def test_identical_runs_give_zero_and_an_interval_that_is_zero():
    rng = np.random.default_rng(0)
    a = 100.0 * (rng.random(300) < 0.6)
    r = stats.paired_bootstrap(a, a.copy(), clusters=np.arange(300) // 3, resamples=2000)
    assert r.difference == 0 and r.low == 0 == r.high and r.p_value == 1.0 and not r.excludes_zero()


def test_a_constant_shift_is_recovered_exactly():
    rng = np.random.default_rng(1)
    b = rng.random(200) * 50
    r = stats.paired_bootstrap(b + 7.5, b, clusters=np.arange(200) % 17, resamples=2000)
    assert r.difference == pytest.approx(7.5) and r.low == pytest.approx(7.5) and r.high == pytest.approx(7.5)
    assert r.p_value == 0.0 and r.excludes_zero()


def test_a_known_difference_is_inside_the_interval_and_zero_outside():
    # Independent Bernoulli(0.7) vs Bernoulli(0.5) per example, 2,000 examples: true difference 20 points.
    rng = np.random.default_rng(2)
    a, b = 100.0 * (rng.random(2000) < 0.7), 100.0 * (rng.random(2000) < 0.5)
    r = stats.paired_bootstrap(a, b, resamples=4000)
    assert r.low < 20 < r.high and r.low > 10 and r.p_value < 0.001
    # The interval's width is the normal theory's: 2 x 1.96 x sd(a - b) / sqrt(N).
    want = 2 * 1.96 * np.std(a - b, ddof=1) / math.sqrt(2000)
    assert r.high - r.low == pytest.approx(want, rel=0.1)


def test_clusters_widen_the_interval_when_examples_in_a_cluster_agree():
    # 20 clusters of 30 identical examples: the information is 20 values, not 600.
    rng = np.random.default_rng(3)
    per_cluster = rng.normal(0, 10, 20)
    d = np.repeat(per_cluster, 30)
    keys = np.repeat(np.arange(20), 30)
    clustered = stats.paired_bootstrap(d, np.zeros_like(d), clusters=keys, resamples=4000)
    naive = stats.paired_bootstrap(d, np.zeros_like(d), resamples=4000)
    width = lambda r: r.high - r.low
    assert width(clustered) / width(naive) == pytest.approx(math.sqrt(30), rel=0.2)
    assert clustered.clusters == 20 and naive.clusters == 600


def test_coverage_under_the_null_with_cluster_effects_is_near_the_level():
    # 200 simulated comparisons with no true difference but shared cluster effects: the 95% interval
    # should contain 0 about 95% of the time (a per-example bootstrap would cover far less).
    rng = np.random.default_rng(4)
    keys = np.repeat(np.arange(40), 10)
    hits = 0
    for i in range(200):
        d = np.repeat(rng.normal(0, 5, 40), 10) + rng.normal(0, 1, 400)
        hits += not stats.paired_bootstrap(d, np.zeros(400), clusters=keys, resamples=1000, seed=i).excludes_zero()
    assert 0.89 <= hits / 200 <= 0.99, hits


def test_seeds_are_averaged_per_example_before_the_test():
    a = np.array([[100.0, 0, 100, 0], [100, 100, 0, 0]])  # two seeds
    b = np.zeros(4)
    r = stats.paired_bootstrap(a, b, resamples=500)
    assert r.difference == pytest.approx(50.0) and r.examples == 4


def test_deterministic_for_a_seed_and_errors_are_one_line():
    rng = np.random.default_rng(5)
    a, b = rng.random(50), rng.random(50)
    assert stats.paired_bootstrap(a, b, seed=3, resamples=500) == stats.paired_bootstrap(a, b, seed=3, resamples=500)
    with pytest.raises(stats.StatsError, match="same examples"):
        stats.paired_bootstrap(a, b[:-1])
    with pytest.raises(stats.StatsError, match="cluster keys"):
        stats.paired_bootstrap(a, b, clusters=[0] * 49)
    with pytest.raises(stats.StatsError, match="level"):
        stats.paired_bootstrap(a, b, level=95)


def test_mean_sd_is_the_sample_sd():
    assert stats.mean_sd([1.0, 2.0, 3.0, 4.0]) == (2.5, pytest.approx(np.std([1, 2, 3, 4], ddof=1)))
    m, sd = stats.mean_sd([5.0])
    assert m == 5.0 and math.isnan(sd)
    assert stats.format_mean_sd([70.0, 72.0, 74.0]) == "72.0 +- 2.0 (n=3)"
    assert stats.format_mean_sd([70.0]) == "70.0 (n=1)"


def test_example_scores_match_the_trainers_corpus_metrics():
    from prompt_tuning.data import metrics as data_metrics

    rows = [{"prediction": "Hesper", "target": "Hesper"}, {"prediction": "the Hesper.", "target": "Hesper"},
            {"prediction": "old baker", "target": "baker"}, {"prediction": "nurse", "target": "doctor"}]
    s = stats.example_scores(rows, ["em", "f1", "accuracy"])
    assert s["em"].tolist() == [100, 100, 0, 0] and s["accuracy"].tolist() == [100, 0, 0, 0]
    assert s["f1"][2] == pytest.approx(100 * 2 / 3)
    corpus = data_metrics.squad([[r["target"]] for r in rows], [r["prediction"] for r in rows])
    assert s["em"].mean() == pytest.approx(corpus["em"]) and s["f1"].mean() == pytest.approx(corpus["f1"])
    with pytest.raises(stats.StatsError, match="unknown"):
        stats.example_scores(rows, ["bleu"])


def test_a_p_value_no_resample_reaches_is_reported_as_a_bound():
    all_right = stats.paired_bootstrap([1.0] * 8, [0.0] * 8, resamples=2000)
    assert all_right.p_value == 0 and "p<0.0005" in all_right.format()
    mixed = stats.paired_bootstrap([1, 0, 1, 0, 1], [0, 1, 0, 0, 1], resamples=1000)
    assert f"p={mixed.p_value:.3g}" in mixed.format()
