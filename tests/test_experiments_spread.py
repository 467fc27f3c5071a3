"""Every experiments script reports a spread over seeds alike: the sample standard deviation
(ddof=1), what a reader of "mean ± std over 3 seeds" takes it for, and no spread for one seed
alone (bench.mean_pm). designs.py and text_only_analysis.py printed the population one."""
import statistics

import numpy as np

from conftest import experiment_script
from hateful_memes.data.annotations import gold_matrix, read_annotations
from hateful_memes.labels import LABELS

VALUES = [0.71, 0.74, 0.80]


def sample(values, spec=".3f") -> str:
    return f"{statistics.mean(values):{spec}} ± {statistics.stdev(values):{spec}}"


def test_mean_pm_is_the_mean_and_the_sample_std():
    with experiment_script("bench") as bench:
        assert bench.mean_pm(VALUES) == sample(VALUES)
        assert bench.mean_pm([0.5]) == "0.500"
        assert bench.mean_pm([-0.01, 0.02, 0.05], sign=True) == (
            f"{statistics.mean([-0.01, 0.02, 0.05]):+.3f} ± "
            f"{statistics.stdev([-0.01, 0.02, 0.05]):.3f}")
        assert bench.mean_pm([1000.0, 1500.0, 2600.0], ",.0f") == sample(
            [1000.0, 1500.0, 2600.0], ",.0f")


def test_designs_tables_show_the_sample_std():
    with experiment_script("designs") as designs:
        summaries = [{"dev": {"thresholds_off": {
            "pc": {"roc_auc_micro": v, "f1_micro": v, "f1_macro": v}, "hate_auroc_binary": v}}}
            for v in VALUES]
        table = designs._table({"gate": summaries}, ("pc",), "thresholds_off")
    row = table.splitlines()[-1]
    assert row == "| gate | " + " | ".join([sample(VALUES)] * 4) + " |"


def test_text_only_analysis_tables_show_the_sample_std(demo_data):
    train_memes = read_annotations(demo_data / "annotations" / "train.json")
    # memes whose caption train holds and memes whose caption it does not, as dev_seen has
    dev = train_memes[:20] + read_annotations(demo_data / "annotations" / "dev.json")
    rng = np.random.default_rng(0)

    def scores():
        return {t: rng.random((len(dev), len(LABELS[t]))) for t in ("hate", "pc", "attack")}

    ours = {seed: scores() for seed in (0, 1, 2)}
    with experiment_script("text_only_analysis") as ta:
        seen = ta.seen_captions_table(train_memes, dev, ours, scores())
        y = gold_matrix(dev, "hate")[:, ta.HATEFUL]
        auc = [ta.roc_auc_score(y, s["hate"][:, ta.HATEFUL]) for s in ours.values()]
        assert [line for line in seen if line.startswith("| all |")][0].split(" | ")[3] == (
            sample(auc))
        table = ta.ensemble_table(dev, ours, scores())
        rows = np.array([ta._row(dev, s, seed) for seed, s in ours.items()])
    alone = [line for line in table if line.startswith("| 0 |")][0]
    assert alone.strip(" |").split(" | ")[1:] == [sample(list(col)) for col in rows.T]
