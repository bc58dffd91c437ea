#!/usr/bin/python3
"""The paper's stability claims at small scale (docs/RESULTS.md).

Drives the two trainers (no PyTorch, only Python's standard library and
gnuplot): learning-rate sweeps of four ViT-lite arms and three char-LM
arms, a depth sweep of the LM, then from every run's metrics file the final
metric, divergence and loss spikes, each layer's lowest head entropy with
Theorem 3.1's bound beside it, the gammas, and the entropy-collapse
warnings with their lead time, precision and recall. Writes
docs/RESULTS.md and its figures in docs/results/.

Run it through experiments/stability.sh, which installs and
builds first. --quick runs the same path on tiny runs (about a minute;
its report goes to runs/stability-quick/RESULTS.md, not docs/).
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIT = os.path.join(ROOT, "build", "examples", "vit_lite", "vit-lite-train")
# The study ran on the ViT-lite as it was before its convolutional stem,
# separate q, k, v sigmas, random erasing, weight average, test-time flips
# and the cosine's floor became the defaults.
VIT_PLAIN_RECIPE = ["--stem", "0", "--qkv-sigma", "fused", "--erase", "0", "--ema", "0",
                    "--no-tta-flip", "--min-lr", "0"]
LM = os.path.join(ROOT, "build", "examples", "char_lm", "char-lm-train")
MULTS = [1, 2, 4, 8, 16]
EXIT_NONFINITE = 3
SPIKE_FACTOR = 2.0  # a loss above this many times its running median
SPIKE_WINDOW = 50  # steps in that running median
SPIKE_AFTER = 20  # steps before spikes count (the first losses fall fast)
RUN_SECONDS = {}  # every run's own wall time, by name (reused runs included)

# ViT-lite arms: flags, and the grid the base learning rate is chosen from
# (on the validation split). Plain linears start at the usual std 0.02
# (gain 1); with SGD or AdamW biases and LayerNorms take the full lr.
VIT_ARMS = [
    ("a", "plain + LayerNorm, AdamW, warmup",
     ["--no-sn", "--layernorm", "--optimizer", "adamw", "--weight-decay", "0.05",
      "--wd-mode", "decoupled", "--init-gain", "1", "--bias-lr-mult", "1", "--warmup", "WARMUP"],
     [3e-4, 1e-3, 3e-3]),
    ("b", "plain, no LayerNorm, SGD momentum, no warmup",
     ["--no-sn", "--optimizer", "sgd", "--init-gain", "1", "--bias-lr-mult", "1"],
     [0.01, 0.03, 0.1, 0.3]),
    ("c", "sigmaReparam, no LayerNorm, LARS (SGD family), no warmup (ours)",
     [], [0.5, 1.0, 2.0, 4.0]),
    ("d", "sigmaReparam + LayerNorm, LARS, no warmup",
     ["--layernorm"], [0.5, 1.0, 2.0, 4.0]),
]
# Char-LM arms with the base lr its own search found (docs/char-lm-recipe.md).
LM_ARMS = [
    ("sigma", "sigmaReparam, no LayerNorm", [], 1.6e-2),
    ("preln", "pre-LN, plain linears", ["--arch", "preln", "--embed-std", "0.02",
                                        "--init-gain", "1"], 8e-3),
    ("postln", "post-LN, plain linears", ["--arch", "postln", "--embed-std", "0.02",
                                          "--init-gain", "1"], 4e-3),
]
LM_DEPTHS = [2, 4, 8, 16]
# experiments/mt_depth.py's section of the report, between these lines,
# placed before MT_DEPTH_BEFORE: a rewrite of the report keeps it.
MT_DEPTH_BEGIN = "<!-- experiments/mt_depth.py writes from here -->"
MT_DEPTH_END = "<!-- to here -->"
MT_DEPTH_BEFORE = "## Entropy collapse as it happens"


def settings(quick):
    """Run lengths: the full study, or --quick's tiny runs on the same path."""
    if quick:
        return dict(
            vit_common=["--dataset", "synthetic", "--synthetic-train", "1536",
                        "--synthetic-test", "512", "--val", "512", "--epochs", "1",
                        "--batch", "64", "--dim", "64", "--depth", "2", "--heads", "2",
                        "--mlp-dim", "128", "--no-augment"] + VIT_PLAIN_RECIPE,
            vit_seeds=[1], vit_search=False, mults=[1, 16], vit_warmup="2",
            lm_common=["--steps", "60", "--warmup", "10", "--context", "32", "--dim", "64",
                       "--heads", "4", "--mlp-dim", "128", "--eval-every", "60",
                       "--eval-windows", "64"],
            lm_seeds=[1], depths=[2, 4], lm_depth_common=["--dim", "32", "--heads", "2",
                                                          "--mlp-dim", "64"],
            out=os.path.join(ROOT, "runs", "stability-quick"),
            report=os.path.join(ROOT, "runs", "stability-quick", "RESULTS.md"),
            figures=os.path.join(ROOT, "runs", "stability-quick", "results"))
    return dict(
        vit_common=["--val", "5000", "--epochs", "1"] + VIT_PLAIN_RECIPE,
        vit_seeds=[1, 2], vit_search=True, mults=MULTS, vit_warmup="40",
        lm_common=["--steps", "400", "--context", "64", "--eval-every", "200",
                   "--eval-windows", "256"],
        lm_seeds=[1, 2], depths=LM_DEPTHS,
        lm_depth_common=["--dim", "64", "--heads", "4", "--mlp-dim", "128"],
        out=os.path.join(ROOT, "runs", "stability"),
        report=os.path.join(ROOT, "docs", "RESULTS.md"),
        figures=os.path.join(ROOT, "docs", "results"))


# ---------------------------------------------------------------------------
# Running and reading one run
# ---------------------------------------------------------------------------

def run(exe, flags, name, out, threads=2):
    """Runs a trainer once (or reuses a finished run's files); its record."""
    metrics = os.path.join(out, name + ".jsonl")
    log = os.path.join(out, name + ".log")
    done = os.path.join(out, name + ".exit")
    if not os.path.exists(done):
        cmd = [exe, "--threads", str(threads), "--log-every", "1", "--bound-every", "10",
               "--metrics", metrics] + flags
        t0 = time.time()
        with open(log, "w") as f:
            f.write(" ".join(cmd[:1] + cmd[1:]) + "\n")
            f.flush()
            code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
        with open(done, "w") as f:
            f.write("%d %.1f\n" % (code, time.time() - t0))
    code, seconds = open(done).read().split()
    RUN_SECONDS[name] = float(seconds)
    record = read_metrics(metrics)
    record.update(name=name, exit=int(code), seconds=float(seconds),
                  command=os.path.basename(exe) + " " + " ".join(flags))
    return analyse(record)


def finite(x):
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def finite_min(values):
    """The smallest finite value, or None when there is none."""
    return min((v for v in values if finite(v)), default=None)


def read_metrics(path):
    """The lines of a metrics file, by type."""
    r = dict(train=[], evals=[], warnings=[], header={})
    if not os.path.exists(path):
        return r
    with open(path) as f:
        for line in f:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            t = m.get("type")
            if t == "train":
                r["train"].append(m)
            elif t == "eval":
                r["evals"].append(m)
            elif t == "collapse":  # collapse.h's one schema, in both trainers
                r["warnings"].append(m)
            elif t == "header":
                r["header"] = m
    return r


def analyse(r):
    """Final metric, divergence, spikes, entropies, bound, gammas, warnings."""
    train = r["train"]
    losses = [(m["step"], m.get("loss")) for m in train]
    r["diverged"] = r["exit"] == EXIT_NONFINITE or any(not finite(l) for _, l in losses)
    # The blow-up: the first non-finite loss (or, when the trainer stopped on
    # one, the step after the last line), else the first spike.
    blowup = None
    for s, l in losses:
        if not finite(l):
            blowup = s
            break
    if r["diverged"] and blowup is None:
        blowup = (losses[-1][0] + 1) if losses else 1
    spike = None
    history = []
    for s, l in losses:
        if not finite(l):
            break
        if s > SPIKE_AFTER and len(history) >= 10:
            med = statistics.median(history[-SPIKE_WINDOW:])
            if l > SPIKE_FACTOR * med:
                spike = s
                break
        history.append(l)
    r["spike_step"] = spike
    r["spiked"] = spike is not None
    r["blowup_step"] = blowup if blowup is not None else spike
    r["unhealthy"] = r["diverged"] or r["spiked"]
    # Any other exit code is a failure of the run itself (bad flags, files).
    r["failed"] = r["exit"] not in (0, EXIT_NONFINITE)
    # Final metric: the test accuracy (ViT) or the final validation bpc (LM).
    test = [e for e in r["evals"] if e.get("set") == "test" and finite(e.get("acc"))]
    val = [e for e in r["evals"] if e.get("set") == "val"]
    r["test_acc"] = test[-1]["acc"] if test else None
    r["val_acc"] = val[-1].get("acc") if val and "acc" in val[-1] else None
    r["val_bpc"] = val[-1].get("bpc") if val and finite(val[-1].get("bpc")) else None
    # Per layer: the lowest head mean entropy over training, and the bound
    # at the nearest step where it was computed.
    layers = len(train[0]["entropy_mean"]) if train and train[0].get("entropy_mean") else 0
    lowest, bound_at = [], []
    bound_lines = [m for m in train if m.get("entropy_bound")]
    for l in range(layers):
        best, best_step, best_head = math.inf, None, None
        for m in train:
            for h, e in enumerate(m["entropy_mean"][l]):
                if finite(e) and e < best:
                    best, best_step, best_head = e, m["step"], h
        lowest.append(best if best_step is not None else None)
        if best_step is not None and bound_lines:
            # The bound of that head, at the nearest step where it was computed.
            near = min(bound_lines, key=lambda m: abs(m["step"] - best_step))
            b = near["entropy_bound"][l][best_head]
            bound_at.append(b if finite(b) else None)
        else:
            bound_at.append(None)
    r["layer_lowest"], r["layer_bound"] = lowest, bound_at
    # Theorem 3.1 at the steps where the bound was computed: it must stay at
    # or below each head's lowest row entropy of that same step (ViT); the
    # causal LM's bound is the mean of its rows' bounds (attention.h), so
    # there it must stay at or below the head's mean entropy (its first row
    # sees one key: its entropy, the minimum, is always 0).
    causal = r["header"].get("model") == "char-lm"
    checks = violations = informative = 0
    for m in bound_lines:
        measured = m.get("entropy_mean" if causal else "entropy_min")
        for l, row in enumerate(m["entropy_bound"]):
            for h, b in enumerate(row):
                e = measured[l][h] if measured else None
                if finite(b) and finite(e):
                    checks += 1
                    violations += b > e + 1e-6
                    informative += b > 0.01
    r["bound_checks"], r["bound_violations"], r["bound_informative"] = (checks, violations,
                                                                       informative)
    r["log_tokens"] = r["header"].get("log_tokens")
    # Gammas: the median over linears, at the start and the end.
    def gamma_median(m):
        g = [v for v in (m.get("gamma") or {}).values() if finite(v)]
        return statistics.median(g) if g else None
    r["gamma_start"] = gamma_median(train[0]) if train else None
    r["gamma_end"] = gamma_median(train[-1]) if train else None
    r["gamma_max_end"] = max((v for v in (train[-1].get("gamma") or {}).values() if finite(v)),
                             default=None) if train else None
    r["gamma_trajectory"] = [(m["step"], gamma_median(m)) for m in train[:: max(1, len(train) // 50)]]
    # Warnings, and the lead time before a blow-up.
    steps = [w.get("step") for w in r["warnings"]]
    r["warnings_count"] = len(steps)
    r["first_warning"] = min(steps) if steps else None
    if r["unhealthy"] and r["first_warning"] is not None and r["first_warning"] <= r["blowup_step"]:
        r["lead"] = r["blowup_step"] - r["first_warning"]
    else:
        r["lead"] = None
    r["curves"] = [(m["step"], [finite_min(layer) for layer in m["entropy_mean"]],
                    [finite_min(layer) for layer in m["entropy_bound"]]
                    if m.get("entropy_bound") else None)
                   for m in train]
    del r["train"], r["evals"]
    return r


# ---------------------------------------------------------------------------
# The sweeps
# ---------------------------------------------------------------------------

def vit_sweep(cfg, log):
    results = {}
    for key, label, flags, grid in VIT_ARMS:
        flags = [cfg["vit_warmup"] if f == "WARMUP" else f for f in flags]
        if cfg["vit_search"]:
            # The base lr: the best validation accuracy over the grid (seed 0).
            scores = []
            for lr in grid:
                r = run(VIT, cfg["vit_common"] + flags + ["--lr", repr(lr), "--seed", "0"],
                        "vit-%s-search-lr%g" % (key, lr), cfg["out"])
                acc = r["val_acc"] if finite(r["val_acc"]) and not r["diverged"] else -1.0
                scores.append((acc, lr))
                log("vit %s search lr %g: val acc %s" % (key, lr, fmt(r["val_acc"], 4)))
            base = max(scores)[1]
        else:
            base = grid[len(grid) // 2]
        results[key] = lr_sweep(cfg, log, "vit", VIT, cfg["vit_common"] + flags, key, label,
                                base, cfg["vit_seeds"], "test acc", "test_acc")
    return results


def lm_sweep(cfg, log):
    return {key: lr_sweep(cfg, log, "lm", LM, cfg["lm_common"] + flags, key, label, base,
                          cfg["lm_seeds"], "val bpc", "val_bpc")
            for key, label, flags, base in LM_ARMS}


def lr_sweep(cfg, log, job, exe, flags, key, label, base, seeds, metric_name, metric):
    """One arm at every lr multiple of its base lr and every seed."""
    arm = dict(label=label, base=base, runs={})
    for mult in cfg["mults"]:
        for seed in seeds:
            r = run(exe, flags + ["--lr", repr(base * mult), "--seed", str(seed)],
                    "%s-%s-x%d-seed%d" % (job, key, mult, seed), cfg["out"])
            arm["runs"][(mult, seed)] = r
            log("%s %s x%d seed %d: %s %s%s%s, %d warnings" % (
                job, key, mult, seed, metric_name, fmt(r[metric], 4),
                " diverged" if r["diverged"] else "", " spiked" if r["spiked"] else "",
                r["warnings_count"]))
    return arm


def depth_sweep(cfg, log):
    results = {}
    for key, label, flags, base in LM_ARMS:
        if key == "preln":
            continue  # the claim is about post-LN against sigmaReparam
        results[key] = dict(label=label, base=base, runs={})
        for depth in cfg["depths"]:
            for seed in cfg["lm_seeds"]:
                r = run(LM, cfg["lm_common"] + cfg["lm_depth_common"] + flags +
                        ["--depth", str(depth), "--lr", repr(base), "--seed", str(seed)],
                        "lmdepth-%s-d%d-seed%d" % (key, depth, seed), cfg["out"])
                results[key]["runs"][(depth, seed)] = r
                log("lm depth %s %d seed %d: val bpc %s%s" % (
                    key, depth, seed, fmt(r["val_bpc"], 4), " diverged" if r["diverged"] else ""))
    return results


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def fmt(x, digits=3):
    return ("%%.%df" % digits) % x if finite(x) else "-"


def mean_std(values):
    v = [x for x in values if finite(x)]
    if not v:
        return "-"
    if len(v) == 1:
        return fmt(v[0], 4)
    return "%s ± %s" % (fmt(statistics.mean(v), 4), fmt(statistics.stdev(v), 4))


def status_word(r):
    if r["failed"]:
        return "FAILED (exit %d)" % r["exit"]
    return "diverged" if r["diverged"] else ("spiked" if r["spiked"] else "ok")


def gnuplot(script, figures):
    os.makedirs(figures, exist_ok=True)
    subprocess.run(["gnuplot"], input=script.encode(), check=True, cwd=figures)


def write_dat(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(" ".join("NaN" if not finite(x) else repr(x) for x in row) + "\n")


def figure_entropy(vit, figures):
    """The paper's Figure 1 view: per-layer lowest head entropy with the bound,
    for the most collapsed unhealthy run and the sigmaReparam run at its lr
    multiplier."""
    # The collapsing run: the lowest entropy among the unhealthy runs of the
    # arms without sigmaReparam (any of their runs when none went bad).
    plain = [r for k in ("a", "b") for r in vit[k]["runs"].values()]
    pool = [r for r in plain if r["unhealthy"]] or plain
    collapsing = min(pool, key=lambda r: min((x for x in r["layer_lowest"] if finite(x)),
                                             default=math.inf))
    mult_seed = collapsing["name"].split("-")[2:]
    stable = vit["c"]["runs"].get((int(mult_seed[0][1:]), int(mult_seed[1][4:])))
    if stable is None:
        stable = next(iter(vit["c"]["runs"].values()))
    panels = []
    for tag, r in (("collapsing", collapsing), ("stable", stable)):
        layers = len(r["layer_lowest"])
        write_dat(os.path.join(figures, "entropy_%s.dat" % tag),
                  [[s] + [e[l] for l in range(layers)] for s, e, _ in r["curves"]])
        write_dat(os.path.join(figures, "bound_%s.dat" % tag),
                  [[s] + [b[l] for l in range(layers)] for s, _, b in r["curves"] if b])
        plots = ", ".join(
            "'entropy_%s.dat' using 1:%d with lines lc %d title 'layer %d'" % (tag, l + 2, l + 1, l)
            for l in range(layers)) + ", " + ", ".join(
            "'bound_%s.dat' using 1:%d with lines dt 2 lc %d notitle" % (tag, l + 2, l + 1)
            for l in range(layers))
        panels.append("set title '%s (%s)'\nplot %s\n" % (r["name"], status_word(r), plots))
    gnuplot("set terminal pngcairo size 1400,520\nset output 'entropy.png'\n"
            "set multiplot layout 1,2\nset xlabel 'step'\n"
            "set ylabel 'lowest head mean entropy (nats); dashed: Theorem 3.1 bound'\n"
            "set key bottom left\nset yrange [0:*]\n" + "".join(panels) + "unset multiplot\n",
            figures)
    return collapsing, stable


def figure_lr(results, figures, name, ylabel, metric, failed_value):
    rows = []
    keys = list(results)
    mults = sorted({m for arm in results.values() for (m, _) in arm["runs"]})
    for mult in mults:
        row = [mult]
        for k in keys:
            v = [results[k]["runs"][(m, s)][metric] if not results[k]["runs"][(m, s)]["diverged"]
                 else failed_value for (m, s) in results[k]["runs"] if m == mult]
            v = [x for x in v if finite(x)]
            row.append(statistics.mean(v) if v else failed_value)
        rows.append(row)
    write_dat(os.path.join(figures, name + ".dat"), rows)
    plots = ", ".join("'%s.dat' using 1:%d with linespoints title '%s'" % (
        name, i + 2, results[k]["label"].replace("'", "")) for i, k in enumerate(keys))
    gnuplot("set terminal pngcairo size 900,560\nset output '%s.png'\nset logscale x 2\n"
            "set xlabel 'learning rate / the arm''s base lr'\nset ylabel '%s'\n"
            "set key outside bottom center\nplot %s\n" % (name, ylabel, plots), figures)


def figure_depth(depth, figures):
    keys = list(depth)
    depths = sorted({d for arm in depth.values() for (d, _) in arm["runs"]})
    rows = []
    for d in depths:
        row = [d]
        for k in keys:
            v = [r["val_bpc"] for (dd, _), r in depth[k]["runs"].items()
                 if dd == d and not r["diverged"] and finite(r["val_bpc"])]
            row.append(statistics.mean(v) if v else None)
        rows.append(row)
    write_dat(os.path.join(figures, "lm_depth.dat"), rows)
    plots = ", ".join("'lm_depth.dat' using 1:%d with linespoints title '%s'" % (
        i + 2, depth[k]["label"]) for i, k in enumerate(keys))
    gnuplot("set terminal pngcairo size 800,500\nset output 'lm_depth.png'\nset logscale x 2\n"
            "set xlabel 'blocks'\nset ylabel 'validation bits per character'\n"
            "set key top left\nplot %s\n" % plots, figures)


def figure_gammas(vit, figures):
    """The median gamma over the linears against the step, for sigmaReparam
    without LayerNorm (arm c, first seed) at each lr multiple."""
    runs = sorted(((m, r) for (m, seed), r in vit["c"]["runs"].items()
                   if seed == min(s for (_, s) in vit["c"]["runs"])), key=lambda x: x[0])
    with open(os.path.join(figures, "gammas.dat"), "w") as f:
        for mult, r in runs:
            for step, g in r["gamma_trajectory"]:
                f.write("%d %s\n" % (step, repr(g) if finite(g) else "NaN"))
            f.write("\n\n")
    plots = ", ".join("'gammas.dat' index %d using 1:2 with lines title 'x%d'" % (i, m)
                      for i, (m, _) in enumerate(runs))
    gnuplot("set terminal pngcairo size 800,500\nset output 'gammas.png'\n"
            "set xlabel 'step'\nset ylabel 'median gamma over the linears'\n"
            "set key top right\nplot %s\n" % plots, figures)


def warning_stats(all_runs):
    all_runs = [r for r in all_runs if not r["failed"]]
    tp = sum(1 for r in all_runs if r["unhealthy"] and r["lead"] is not None)
    fn = sum(1 for r in all_runs if r["unhealthy"] and r["lead"] is None)
    fp = sum(1 for r in all_runs if not r["unhealthy"] and r["warnings_count"] > 0)
    tn = sum(1 for r in all_runs if not r["unhealthy"] and r["warnings_count"] == 0)
    leads = [r["lead"] for r in all_runs if r["lead"] is not None]
    return dict(tp=tp, fn=fn, fp=fp, tn=tn, leads=leads,
                precision=tp / (tp + fp) if tp + fp else None,
                recall=tp / (tp + fn) if tp + fn else None,
                false_alarms=sum(r["warnings_count"] for r in all_runs if not r["unhealthy"]))


def run_table(results, metric, metric_name, key_name):
    lines = ["| arm | %s | seed | %s | status | warnings (first step) | lowest head mean entropy "
             "per layer (that head's bound) | median gamma start → end |" % (key_name, metric_name),
             "|---|---|---|---|---|---|---|---|"]
    for k, arm in results.items():
        for (x, seed), r in sorted(arm["runs"].items()):
            ent = " ".join("%s (%s)" % (fmt(e, 2), fmt(b, 2))
                           for e, b in zip(r["layer_lowest"], r["layer_bound"]))
            lines.append("| %s | %s | %d | %s | %s%s | %d%s | %s | %s → %s |" % (
                k, x, seed, fmt(r[metric], 4), status_word(r),
                " at step %d" % r["blowup_step"] if r["blowup_step"] is not None else "",
                r["warnings_count"],
                " (%d)" % r["first_warning"] if r["first_warning"] is not None else "",
                ent, fmt(r["gamma_start"], 2), fmt(r["gamma_end"], 2)))
    return "\n".join(lines)


def summary_table(results, metric, metric_name, key_name, failed):
    keys = sorted({x for arm in results.values() for (x, _) in arm["runs"]})
    head = "| arm | base lr | " + " | ".join("%s %s" % (key_name, x) for x in keys) + " |"
    lines = [head, "|---|---|" + "---|" * len(keys)]
    for k, arm in results.items():
        cells = []
        for x in keys:
            runs = [r for (xx, _), r in arm["runs"].items() if xx == x]
            bad = sum(1 for r in runs if r["diverged"])
            spiked = sum(1 for r in runs if r["spiked"] and not r["diverged"])
            cell = mean_std([r[metric] for r in runs if not r["diverged"]])
            if bad:
                cell += " (%d/%d diverged)" % (bad, len(runs))
            if spiked:
                cell += " (%d spiked)" % spiked
            cells.append(cell)
        lines.append("| %s: %s | %g | %s |" % (k, arm["label"], arm["base"], " | ".join(cells)))
    return "\n".join(lines)


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores, %s; OPENBLAS_CORETYPE=%s" % (
        cpu, os.cpu_count() or 0, platform.platform(), os.environ.get("OPENBLAS_CORETYPE", "unset"))


def report(cfg, vit, lm, depth, args):
    figures = cfg["figures"]
    os.makedirs(figures, exist_ok=True)
    collapsing, stable = figure_entropy(vit, figures)
    figure_lr(vit, figures, "vit_lr", "test accuracy (diverged: 0.1, chance)", "test_acc", 0.1)
    figure_lr(lm, figures, "lm_lr", "validation bits per character (diverged: 8)", "val_bpc", 8.0)
    figure_depth(depth, figures)
    figure_gammas(vit, figures)
    all_runs = [r for res in (vit, lm, depth) for arm in res.values() for r in arm["runs"].values()]
    w = warning_stats(all_runs)
    vit_w = warning_stats([r for arm in vit.values() for r in arm["runs"].values()])
    lm_w = warning_stats([r for res in (lm, depth) for arm in res.values()
                          for r in arm["runs"].values()])
    rel = os.path.relpath(figures, os.path.dirname(cfg["report"]))
    # The trainer's first line: library version, GEMM backend, kernels, threads.
    any_log = os.path.join(cfg["out"], next(iter(RUN_SECONDS)) + ".log")
    lines = open(any_log).read().splitlines()
    build = lines[1] if len(lines) > 1 else ""
    trained = lambda res, arm: sum(1 for r in res[arm]["runs"].values()
                                   if not r["unhealthy"] and not r["failed"])
    total = lambda res, arm: len(res[arm]["runs"])

    def lead_text(s):
        if not s["leads"]:
            return "no unhealthy run was warned before its blow-up"
        return "median %d steps (range %d-%d)" % (statistics.median(s["leads"]), min(s["leads"]),
                                                  max(s["leads"]))

    def pr(s):
        return "precision %s (%d of %d warned runs went bad), recall %s (%d of %d bad runs " \
               "warned in time)" % (fmt(s["precision"], 2), s["tp"], s["tp"] + s["fp"],
                                    fmt(s["recall"], 2), s["tp"], s["tp"] + s["fn"])

    vit_cfg = " ".join(cfg["vit_common"])
    lm_cfg = " ".join(cfg["lm_common"])
    text = """# Stability results: the paper's claims at small scale

Produced by `bash experiments/stability.sh%s`: %d runs, %.0f
minutes of training in all (the sum of the runs' wall times), on this
machine (%s). The trainers' first line: `%s`.
Every number below comes from that run; the runs' logs and metrics are in
`%s/` (rerunning reuses finished runs; delete the folder to start over).

## How it was run

**ViT-lite on Fashion-MNIST** (the full study: one epoch of the 55,000
training images left after a 5,000-image validation split, 429 steps of
128), with the trainer's defaults but for these flags: `%s`. They pin
the recipe the ViT-lite had before its convolutional stem, separate q, k, v
sigmas, random erasing, weight average, test-time flips and the cosine's
floor became its defaults: 6 blocks of dim 128 with 4 heads over 17 tokens
of 7x7 patches, one fused qkv sigma, 802k parameters. Four arms:

| arm | what | flags |
|---|---|---|
%s

The base learning rate of each arm is the best validation accuracy over a
small grid (seed 0, one run each: %s). The sweep then runs ×%s that base,
seeds %s. The test set is only reported.

LayerNorm parameters under LARS (arm d) take `--bias-lr-mult` (0.01) like
biases: LARS steps these vectors without its trust ratio, so at its lr of
about 2 a full plain step on a scale of 1 would be far too large. With SGD
and AdamW (arms a, b) they and the biases take the full lr
(`--bias-lr-mult 1`).

**Char LM** (fortunes and the Jargon File, repeated documents dropped;
validation: every 10th document),
the trainer's defaults (4 blocks of dim 128, 4 heads, AdamW, 100 warmup
steps) but for `%s`, each arm from its own best lr of the 2-minute search in
`docs/char-lm-recipe.md`, ×%s, seeds %s. Depth sweep: %s blocks at
`%s`, post-LN against sigmaReparam at their base lr.

**Recorded for every run:**
- the final metric: test accuracy, or validation bits per character;
- diverged: the loss or a gradient became non-finite, and the trainer stopped;
- spiked: the training loss exceeded %g× its running median over the last %d
  steps, after step %d;
- per layer, the lowest head mean entropy over training, with the Theorem 3.1
  bound at the nearest step where it was computed (every 10 steps);
- the median gamma over the linears at the start and at the end;
- the collapse warnings at the trainers' default thresholds. ViT: a head's
  mean entropy below 10%% of log T, or a drop of 80%% within 200 steps. LM:
  the same on the entropy normalized by log(keys).

## ViT-lite: final test accuracy against the learning rate

![test accuracy against learning rate](%s/vit_lr.png)

%s

## Char LM: validation bits per character against the learning rate

![bits per character against learning rate](%s/lm_lr.png)

%s

## Char LM: depth, post-LN against sigmaReparam

![bits per character against depth](%s/lm_depth.png)

%s

## Entropy collapse as it happens

![entropy curves](%s/entropy.png)

Left: `%s`, the run with the lowest head entropy among the unhealthy
runs without sigmaReparam (arms a and b). Right: `%s`, sigmaReparam at the same learning-rate multiple and
seed. Solid: each layer's lowest head mean entropy; dashed: the Theorem 3.1
lower bound of that layer.

## The gammas

![median gamma against step](%s/gammas.png)

The median gamma over the linears of sigmaReparam without LayerNorm (arm
c, first seed) at each learning-rate multiple. Each run's start and end
medians are in the tables below.

## The collapse warning as an early warning

| runs | bad runs (diverged or spiked) | warned in time | lead time | false alarms (healthy runs warned) | precision, recall |
|---|---|---|---|---|---|
| ViT-lite | %d | %d | %s | %d of %d (%d warnings) | %s, %s |
| char LM (both sweeps) | %d | %d | %s | %d of %d (%d warnings) | %s, %s |
| all | %d | %d | %s | %d of %d (%d warnings) | %s, %s |

In words: %s.

## Every run

### ViT-lite
%s

### Char LM, learning rate
%s

### Char LM, depth
%s

## Reading

%s
""" % (
        " --quick" if args.quick else "", len(RUN_SECONDS), sum(RUN_SECONDS.values()) / 60.0,
        machine(), build,
        os.path.relpath(cfg["out"], ROOT), vit_cfg,
        "\n".join("| %s | %s | `%s` |" % (k, label, " ".join(flags).replace(
            "WARMUP", cfg["vit_warmup"]) or "(defaults)") for k, label, flags, _ in VIT_ARMS),
        "; ".join("%s: %s" % (k, ", ".join("%g" % g for g in grid)) for k, _, _, grid in VIT_ARMS)
        if cfg["vit_search"] else "skipped in --quick: the grid's middle",
        ", ".join(str(m) for m in cfg["mults"]), ", ".join(str(s) for s in cfg["vit_seeds"]),
        lm_cfg, ", ".join(str(m) for m in cfg["mults"]), ", ".join(str(s) for s in cfg["lm_seeds"]),
        ", ".join(str(d) for d in cfg["depths"]), " ".join(cfg["lm_depth_common"]),
        SPIKE_FACTOR, SPIKE_WINDOW, SPIKE_AFTER,
        rel, summary_table(vit, "test_acc", "test acc", "×", 0.1),
        rel, summary_table(lm, "val_bpc", "bpc", "×", 8.0),
        rel, summary_table(depth, "val_bpc", "bpc", "depth", 8.0),
        rel, collapsing["name"], stable["name"], rel,
        vit_w["tp"] + vit_w["fn"], vit_w["tp"], lead_text(vit_w), vit_w["fp"],
        vit_w["fp"] + vit_w["tn"], vit_w["false_alarms"], fmt(vit_w["precision"], 2),
        fmt(vit_w["recall"], 2),
        lm_w["tp"] + lm_w["fn"], lm_w["tp"], lead_text(lm_w), lm_w["fp"], lm_w["fp"] + lm_w["tn"],
        lm_w["false_alarms"], fmt(lm_w["precision"], 2), fmt(lm_w["recall"], 2),
        w["tp"] + w["fn"], w["tp"], lead_text(w), w["fp"], w["fp"] + w["tn"], w["false_alarms"],
        fmt(w["precision"], 2), fmt(w["recall"], 2), pr(w),
        run_table(vit, "test_acc", "test acc", "×"),
        run_table(lm, "val_bpc", "val bpc", "×"),
        run_table(depth, "val_bpc", "val bpc", "depth"),
        reading(vit, lm, depth, trained, total))
    with open(cfg["report"], "w") as f:
        f.write(with_kept_section(text, cfg["report"]))


def with_kept_section(text, path):
    """text with the translation depth section of the report at path, if any."""
    old = open(path).read() if os.path.exists(path) else ""
    if MT_DEPTH_BEGIN not in old or MT_DEPTH_END not in old:
        return text
    kept = old[old.index(MT_DEPTH_BEGIN):old.index(MT_DEPTH_END) + len(MT_DEPTH_END)]
    at = text.index(MT_DEPTH_BEFORE)
    return text[:at] + kept + "\n\n" + text[at:]


def reading(vit, lm, depth, trained, total):
    """The claims, each with what the numbers above say about it."""
    path = os.path.join(ROOT, "experiments", "reading.md")
    lines = ["Counted from the tables above (a run is healthy when it neither diverged nor "
             "spiked):", ""]
    failed = [r["name"] for res in (vit, lm, depth) for arm in res.values()
              for r in arm["runs"].values() if r["failed"]]
    if failed:
        lines.append("- **%d runs failed** (see their logs): %s." % (len(failed), ", ".join(failed)))
    for k in vit:
        lines.append("- ViT arm %s (%s): %d of %d runs healthy over ×1-×16." % (
            k, vit[k]["label"], trained(vit, k), total(vit, k)))
    for k in lm:
        lines.append("- LM arm %s (%s): %d of %d runs healthy over ×1-×16." % (
            k, lm[k]["label"], trained(lm, k), total(lm, k)))
    for k in depth:
        lines.append("- LM depth sweep, %s: %d of %d runs healthy." % (
            depth[k]["label"], trained(depth, k), total(depth, k)))
    runs = [r for res in (vit, lm, depth) for arm in res.values() for r in arm["runs"].values()]
    checks = sum(r["bound_checks"] for r in runs)
    lines.append("- Theorem 3.1: at the %d (step, layer, head) points where the bound was "
                 "computed, it sat above the measured entropy (the head's lowest row's; the "
                 "mean for the causal LM) %d times; it was above "
                 "0.01 nats at %d of them (%.1f%%)." % (
                     checks, sum(r["bound_violations"] for r in runs),
                     sum(r["bound_informative"] for r in runs),
                     100.0 * sum(r["bound_informative"] for r in runs) / max(checks, 1)))
    if os.path.exists(path):
        lines += ["", open(path).read().strip()]
    return "\n".join(lines)


def start(doc, settings_of):
    """A study's command line (--quick), its settings, its output folder and
    a log that stamps each line with the seconds since the start."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny runs on the same path")
    args = ap.parse_args()
    cfg = settings_of(args.quick)
    os.makedirs(cfg["out"], exist_ok=True)
    t0 = time.time()

    def log(msg):
        print("[%5.0f s] %s" % (time.time() - t0, msg), flush=True)

    return args, cfg, log


def main():
    args, cfg, log = start(__doc__, settings)
    vit = vit_sweep(cfg, log)
    lm = lm_sweep(cfg, log)
    depth = depth_sweep(cfg, log)
    report(cfg, vit, lm, depth, args)
    log("wrote %s" % os.path.relpath(cfg["report"], ROOT))


if __name__ == "__main__":
    sys.exit(main())
