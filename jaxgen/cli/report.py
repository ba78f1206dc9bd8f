"""python -m jaxgen.report ROOT... [--metric=fid --x=model.beta] [--curve=recall] [--out=DIR]
    [--keys=family,model.decoder] [--metrics=fid,recall]

Collects every evaluation (metrics*.json beside a config.json) under the ROOTs into one
table, each with the config it was evaluated under:
one row per configuration, the config keys that differ between runs (or --keys) as columns, each
metric as mean and standard deviation over the seeds that ran it. Writes report.md
(Markdown), report.csv (every metric) and, with --metric and --x, a plot of the metric
against the key, one line per setting of the other swept keys. With --curve, a metric the
runs logged during training (metrics.jsonl; --split=train, or test for the eval steps and
eval.track_samples) against step, one line per setting (mean over seeds), and its table at
--at_steps (curve.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
from typing import Any

from jaxgen.core import config as config_lib
from jaxgen.training import workdir as workdir_lib
from jaxgen.training.writers import read_metrics

# Keys that say how often, where or in what chunks, not what is trained or measured: never
# table columns. (Sampler and evaluation settings such as sample.guidance_scale are.)
IGNORED_PREFIXES = ("seed", "data.data_dir", "train.log_every_steps", "checkpoint.",
                    "eval.every_steps", "eval.batch_size", "eval.sample_batch_size",
                    "eval.iwae_chunk", "eval.extractor_dir", "sample.every_steps", "sample.num")
# The Markdown table's metrics, in this order, where present (the CSV has them all).
HEADLINE = ("nll_bits_per_dim", "neg_elbo", "neg_elbo_bits_per_dim", "iwae_nll",
            "iwae_nll_bits_per_dim", "vlb_bits_per_dim",
            "pixel_histogram_bits_per_dim", "num_samples", "num_reference", "fid", "kid",
            "precision", "recall", "classes_covered", "class_kl_to_data", "conditional_accuracy",
            # Prompt following of text-to-image runs (eval/prompts.py).
            "seen_class_accuracy", "seen_brightness_accuracy", "seen_size_accuracy",
            "held_out_class_accuracy", "held_out_brightness_accuracy", "held_out_size_accuracy",
            # Perceptual path length of generators (eval/path_length.py).
            "ppl_z", "ppl_w", "sampling_seconds_per_1000")
SAMPLE_COUNTS = ("num_samples", "num_reference")  # generated and test images compared
SAMPLING_TIME = "sampling_seconds_per_1000"  # from the evaluation's "sampling" record


def find_runs(roots: list[str]) -> list[dict[str, Any]]:
    """[{"workdir", "config" (flattened), "metrics" (values)}], one per evaluation file, or
    per trained workdir that has no evaluation (its metrics empty)."""
    runs = []
    for root in roots:
        if not os.path.isdir(root):
            raise config_lib.ConfigError(f"no such directory: {root}")
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d not in ("checkpoints", "tensorboard",
                                                                "samples"))
            if "config.json" not in files:
                continue
            trained = workdir_lib.read_json_object(os.path.join(directory, "config.json"))
            evaluations = [n for n in sorted(files)
                           if n.startswith("metrics") and n.endswith(".json")]
            if not evaluations and "metrics.jsonl" in files:
                # Trained, not evaluated: only its training logs (--curve) have figures.
                runs.append({"workdir": os.path.join(directory, "metrics.jsonl"),
                             "config": config_lib.flatten(trained), "metrics": {}})
            for name in evaluations:
                path = os.path.join(directory, name)
                record = workdir_lib.read_json_object(path)
                if not isinstance(record.get("values"), dict) or not all(
                        isinstance(v, (int, float)) for v in record["values"].values()):
                    raise config_lib.ConfigError(f"{path} is not an evaluation record (no "
                                                 "numeric 'values')")
                # An evaluation records the config it ran under (sampler, guidance...).
                config = config_lib.flatten(record.get("config", trained))
                # Sample metrics are read beside the counts they were measured on.
                counts = {k: record[k] for k in SAMPLE_COUNTS if isinstance(record.get(k), int)}
                # The sampler's cost where this evaluation ran (the machine's load included).
                if isinstance(record.get("sampling"), dict):
                    counts[SAMPLING_TIME] = record["sampling"]["seconds_per_1000"]
                runs.append({"workdir": path, "config": config,
                             "metrics": {**record["values"], **counts}})
    return runs


def swept_keys(runs: list[dict[str, Any]]) -> list[str]:
    """Config keys with more than one value among the runs, seeds and schedules aside."""
    keys = sorted({k for run in runs for k in run["config"]})
    return [k for k in keys if not k.startswith(IGNORED_PREFIXES)
            and len({json.dumps(run["config"].get(k)) for run in runs}) > 1]


def check_keys_separate(runs: list[dict[str, Any]], keys: list[str], swept: list[str]) -> None:
    """Raises ConfigError where runs that differ in a swept key would share a row of keys
    (and be averaged as if they were seeds of one configuration)."""
    settings: dict[str, dict[str, Any]] = {}
    for run in runs:
        row = json.dumps([run["config"].get(k) for k in keys])
        first = settings.setdefault(row, run)
        for key in swept:
            if json.dumps(first["config"].get(key)) != json.dumps(run["config"].get(key)):
                raise config_lib.ConfigError(
                    f"--keys: {first['workdir']} and {run['workdir']} share a row but differ "
                    f"in {key}; add it to --keys")


def aggregate(runs: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """One row per setting of `keys`: {"setting": {...}, "seeds": n, metric: (mean, std)}."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(json.dumps([run["config"].get(k) for k in keys]), []).append(run)
    rows = []
    for members in groups.values():
        # Runs still training (no evaluation yet) do not count as seeds of the means.
        evaluated = sum(1 for run in members if run["metrics"]) or len(members)
        row: dict[str, Any] = {"setting": {k: members[0]["config"].get(k) for k in keys},
                               "seeds": evaluated, "metrics": {}}
        names = sorted({m for run in members for m in run["metrics"]})
        for name in names:
            values = [run["metrics"][name] for run in members if name in run["metrics"]]
            std = statistics.stdev(values) if len(values) > 1 else float("nan")
            row["metrics"][name] = (statistics.fmean(values), std)
        rows.append(row)
    rows.sort(key=lambda r: [json.dumps(r["setting"][k]) if not isinstance(
        r["setting"][k], (int, float)) else f"{r['setting'][k]:020.6f}" for k in keys])
    return rows


def _cell(mean: float, std: float) -> str:
    text = f"{mean:.4g}"
    return text if math.isnan(std) else f"{text} ± {std:.2g}"


BASELINE = "pixel_histogram_bits_per_dim"


def _worse_than_baseline(row: dict[str, Any], metric: str) -> bool:
    values = row["metrics"]
    return (metric.endswith("_bits_per_dim") and metric != BASELINE and BASELINE in values
            and metric in values and values[metric][0] > values[BASELINE][0])


def markdown(rows: list[dict[str, Any]], keys: list[str], metrics: list[str]) -> str:
    """The table; a bits/dim worse than the data's per-pixel histogram (evaluate records it
    as pixel_histogram_bits_per_dim) is marked with a dagger and a footnote."""
    header = [*keys, "seeds", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    flagged = False
    for row in rows:
        cells = [str(row["setting"][k]) for k in keys] + [str(row["seeds"])]
        for m in metrics:
            cell = _cell(*row["metrics"][m]) if m in row["metrics"] else ""
            if _worse_than_baseline(row, m):
                cell, flagged = cell + " †", True
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    if flagged:
        lines.append("\n† worse than an independent per-pixel histogram of the same data "
                     f"(`{BASELINE}`)")
    return "\n".join(lines) + "\n"


def write_csv(path: str, rows: list[dict[str, Any]], keys: list[str]) -> None:
    metrics = sorted({m for row in rows for m in row["metrics"]})
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow([*keys, "seeds", *[f"{m}{s}" for m in metrics for s in ("", "_std")]])
        for row in rows:
            values = [row["metrics"].get(m, (float("nan"), float("nan"))) for m in metrics]
            out.writerow([row["setting"][k] for k in keys] + [row["seeds"]]
                         + [v for pair in values for v in pair])


def plot(path: str, rows: list[dict[str, Any]], keys: list[str], metric: str, x: str) -> None:
    """metric against x, one line (error bars: std over seeds) per setting of the other keys."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    others = [k for k in keys if k != x]
    lines: dict[str, list] = {}
    for row in rows:
        if metric not in row["metrics"]:
            continue
        label = ", ".join(f"{k.split('.')[-1]}={row['setting'][k]}" for k in others) or metric
        lines.setdefault(label, []).append((row["setting"][x], *row["metrics"][metric]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in sorted(lines.items()):
        points.sort()
        xs, means, stds = zip(*points)
        ax.errorbar(xs, means, yerr=[0 if math.isnan(s) else s for s in stds], marker="o",
                    capsize=3, label=label)
    if all(isinstance(v, (int, float)) and v > 0 for pts in lines.values() for v, *_ in pts):
        ax.set_xscale("log", base=2)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def logged_curves(runs: list[dict[str, Any]], keys: list[str], metric: str,
                  split: str) -> dict[str, dict[str, Any]]:
    """{setting label: {"setting", "curves": [{step: value}, one per training run]}}."""
    groups: dict[str, dict[str, Any]] = {}
    seen = set()
    for run in runs:
        directory = os.path.dirname(run["workdir"])
        if directory in seen:  # evaluation-only points share their training run
            continue
        seen.add(directory)
        curve = {r["step"]: r[metric] for r in read_metrics(directory, split) if metric in r}
        if not curve:
            continue
        setting = {k: run["config"].get(k) for k in keys}
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in setting.items()) or metric
        groups.setdefault(label, {"setting": setting, "curves": []})["curves"].append(curve)
    return dict(sorted(groups.items()))


def _value_at(curve: dict[int, float], step: int) -> float:
    """The value logged at `step`, else at the first logged step after it."""
    later = [s for s in curve if s >= step]
    return curve[min(later)] if later else float("nan")


def curve_markdown(groups: dict[str, dict[str, Any]], keys: list[str],
                   steps: list[int]) -> str:
    header = [*keys, "seeds", *[f"step {s}" for s in steps]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups.values():
        cells = [str(group["setting"][k]) for k in keys] + [str(len(group["curves"]))]
        for step in steps:
            values = [v for v in (_value_at(c, step) for c in group["curves"]) if math.isfinite(v)]
            std = statistics.stdev(values) if len(values) > 1 else float("nan")
            cells.append(_cell(statistics.fmean(values), std) if values else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(path: str, groups: dict[str, dict[str, Any]], metric: str, split: str) -> None:
    """Mean over seeds against step, a shaded band of +- one std, one line per setting."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(7, 4))
    low, high = math.inf, -math.inf
    for label, group in groups.items():
        steps = sorted(set.intersection(*(set(c) for c in group["curves"])))
        values = np.array([[c[s] for s in steps] for c in group["curves"]])
        mean, std = values.mean(0), values.std(0)
        ax.plot(steps, mean, label=label)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    if low > 0 and high / low > 100:  # gradient norms, probabilities near 0: orders of magnitude
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{metric} ({split})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("roots", nargs="+", help="directories holding evaluated workdirs")
    p.add_argument("--out", default="", help="output directory; default: the first ROOT")
    p.add_argument("--metric", default="", help="metric to plot (with --x)")
    p.add_argument("--x", default="", help="config key on the plot's x axis")
    p.add_argument("--metrics", default="",
                   help="comma-separated metrics of the Markdown table; default: the headline")
    p.add_argument("--keys", default="", help="comma-separated config keys, the table's "
                   "columns and rows (default: every key that differs between the runs)")
    p.add_argument("--curve", default="", help="a metric logged during training to plot "
                   "against step")
    p.add_argument("--split", default="test", choices=("train", "test"),
                   help="the metrics.jsonl rows of --curve")
    p.add_argument("--at_steps", default="", help="comma-separated steps of the --curve table")
    flags = p.parse_args(argv)
    try:
        at_steps = [int(s) for s in flags.at_steps.split(",")] if flags.at_steps else []
    except ValueError:
        raise config_lib.ConfigError(f"--at_steps must be comma-separated integers, got "
                                     f"'{flags.at_steps}'") from None
    if at_steps and not flags.curve:
        raise config_lib.ConfigError("--at_steps needs --curve")
    if bool(flags.metric) != bool(flags.x):
        raise config_lib.ConfigError("--metric and --x go together")
    runs = find_runs(flags.roots)
    if not runs:
        raise config_lib.ConfigError(f"no workdir with config.json and metrics.json under "
                                     f"{', '.join(flags.roots)}")
    keys = swept_keys(runs)
    if flags.keys:
        chosen_keys = flags.keys.split(",")
        known = {k for run in runs for k in run["config"]}
        unknown_keys = [k for k in chosen_keys if k not in known]
        if unknown_keys:
            raise config_lib.ConfigError(f"--keys: '{unknown_keys[0]}' is in no run's config")
        check_keys_separate(runs, chosen_keys, swept_keys(runs))
        keys = chosen_keys
    if flags.x and flags.x not in keys:
        raise config_lib.ConfigError(f"--x={flags.x} is not a swept key (swept: "
                                     f"{', '.join(keys) or 'none'})")
    rows = aggregate(runs, keys)
    present = {m for row in rows for m in row["metrics"]}
    chosen = flags.metrics.split(",") if flags.metrics else [m for m in HEADLINE if m in present]
    unknown = [m for m in chosen + ([flags.metric] if flags.metric else []) if m not in present]
    if unknown:
        raise config_lib.ConfigError(f"metric '{unknown[0]}' is in no metrics.json (found: "
                                     f"{', '.join(sorted(present))})")
    out = flags.out or flags.roots[0]
    workdir_lib.check_usable(out, write=True, what="--out directory")
    table = markdown(rows, keys, chosen)
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(f"{len(runs)} runs under {', '.join(flags.roots)}; mean ± std over seeds\n\n")
        f.write(table)
    write_csv(os.path.join(out, "report.csv"), rows, keys)
    print(table, end="")
    if flags.metric and flags.x:
        path = os.path.join(out, f"{flags.metric}_vs_{flags.x.split('.')[-1]}.png")
        plot(path, rows, keys, flags.metric, flags.x)
        print(path)
    if flags.curve:
        groups = logged_curves(runs, keys, flags.curve, flags.split)
        if not groups:
            raise config_lib.ConfigError(f"no run logged '{flags.curve}' in its {flags.split} "
                                         "rows of metrics.jsonl")
        path = os.path.join(out, f"{flags.curve}_{flags.split}_over_training.png")
        plot_curves(path, groups, flags.curve, flags.split)
        print(path)
        if at_steps:
            table = curve_markdown(groups, keys, at_steps)
            with open(os.path.join(out, f"{flags.curve}_{flags.split}_curve.md"), "w",
                      encoding="utf-8") as f:
                f.write(f"{flags.curve} ({flags.split}) during training; mean ± std over "
                        f"seeds\n\n{table}")
            print(table, end="")

