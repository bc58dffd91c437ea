#!/usr/bin/python3
"""The translator's depth sweep (docs/RESULTS.md, its section "Translation:
depth"): sigmaReparam with post-LN against plain post-LN and pre-LN, at
2+2, 6+6 and 12+12 blocks of a small width, 2 seeds each, every arm at the
learning rate its validation search chose (seed 0, 2+2 blocks). One
thread a run, so that its bits do not depend on the machine's cores.

Runs through experiments/mt-depth.sh, which installs and builds first;
reuses experiments/stability.py's runner and run analysis (divergence,
spikes, collapse warnings). Writes its section into docs/RESULTS.md between
two marker lines, which stability.py keeps when it rewrites the rest.
--quick: tiny runs on the same path, reported to runs/mt-depth-quick/.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stability  # noqa: E402  (beside this file)

ROOT = stability.ROOT
MT = os.path.join(ROOT, "build", "examples", "mt", "mt-train")
BEGIN, END = stability.MT_DEPTH_BEGIN, stability.MT_DEPTH_END
# The trainer's defaults (AdamW, 100 warmup steps, cosine, clip 1, label
# smoothing 0.1) but for the arch: what differs between arms is the norm.
ARMS = [
    ("sigma-postln", "sigmaReparam + post-LN", ["--arch", "sigma-postln"]),
    ("postln", "post-LN, plain linears", ["--arch", "postln"]),
    ("preln", "pre-LN, plain linears", ["--arch", "preln"]),
]
LR_GRID = [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]


def settings(quick):
    if quick:
        return dict(common=["--dim", "32", "--heads", "2", "--mlp-dim", "64", "--steps", "30",
                            "--warmup", "5", "--eval-every", "30", "--eval-pairs", "64"],
                    grid=LR_GRID[1:3], depths=[1, 2], seeds=[1],
                    out=os.path.join(ROOT, "runs", "mt-depth-quick"),
                    report=os.path.join(ROOT, "runs", "mt-depth-quick", "RESULTS.md"))
    return dict(common=["--dim", "64", "--heads", "4", "--mlp-dim", "256", "--steps", "400",
                        "--eval-every", "200"],
                grid=LR_GRID, depths=[2, 6, 12], seeds=[1, 2],
                out=os.path.join(ROOT, "runs", "mt-depth"),
                report=os.path.join(ROOT, "docs", "RESULTS.md"))


def finals(name, out):
    """The run's final validation bits per byte and chrF2 (None if absent)."""
    bpb = chrf = None
    path = os.path.join(out, name + ".jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                m = json.loads(line)
                if m.get("type") == "eval" and m.get("set") == "val":
                    bpb = m.get("bpb")
                elif m.get("type") == "chrf" and m.get("set") == "val":
                    chrf = m.get("chrf")
    return bpb, chrf


def train(cfg, flags, depth, lr, seed, name):
    r = stability.run(MT, cfg["common"] + flags +
                      ["--enc-layers", str(depth), "--dec-layers", str(depth), "--lr", repr(lr),
                       "--seed", str(seed), "--minutes", "0", "--chrf", "val", "--show", "0"],
                      name, cfg["out"], threads=1)
    r["bpb"], r["chrf"] = finals(name, cfg["out"])
    if r["diverged"]:
        r["bpb"] = r["chrf"] = None
    return r


def sweep(cfg, log):
    arms = {}
    for key, label, flags in ARMS:
        scores = []
        for lr in cfg["grid"]:
            r = train(cfg, flags, cfg["depths"][0], lr, 0, "%s-search-lr%g" % (key, lr))
            scores.append((r["bpb"] if stability.finite(r["bpb"]) else float("inf"), lr))
            log("%s lr %g (search, %d+%d): val bpb %s" % (
                key, lr, cfg["depths"][0], cfg["depths"][0], stability.fmt(r["bpb"], 4)))
        base = min(scores)[1]
        arm = dict(label=label, flags=flags, base=base, search=scores, runs={})
        for depth in cfg["depths"]:
            for seed in cfg["seeds"]:
                name = "%s-d%d-lr%g-seed%d" % (key, depth, base, seed)
                r = train(cfg, flags, depth, base, seed, name)
                arm["runs"][(depth, seed)] = r
                log("%s %d+%d seed %d: val bpb %s, chrF2 %s%s%s, %d warnings" % (
                    key, depth, depth, seed, stability.fmt(r["bpb"], 4),
                    stability.fmt(r["chrf"], 2), " diverged" if r["diverged"] else "",
                    " spiked" if r["spiked"] else "", r["warnings_count"]))
        arms[key] = arm
    return arms


def cell(arm, depth, cfg, metric):
    """Bits per byte: mean ± std over the seeds; chrF2: the mean, then each
    seed's. Diverged and spiked runs counted after."""
    runs = [arm["runs"][(depth, s)] for s in cfg["seeds"]]
    values = [r[metric] for r in runs if stability.finite(r[metric])]
    if not values:
        text = "-"
    elif metric == "bpb":
        text = stability.mean_std(values)
    else:
        text = "%.2f" % (sum(values) / len(values))
        if len(values) > 1:
            text += " (%s)" % ", ".join("%.2f" % v for v in values)
    notes = [w for w in ("diverged", "spiked") if sum(r[w] for r in runs)]
    if notes:
        text += " (%s)" % ", ".join("%d %s" % (sum(r[w] for r in runs), w) for w in notes)
    return text


def copy_baseline(cfg, arms):
    """The copy baseline's validation chrF2, from a run's metrics header."""
    name = next(iter(next(iter(arms.values()))["runs"].values()))["name"]
    with open(os.path.join(cfg["out"], name + ".jsonl")) as f:
        return json.loads(f.readline()).get("copy_chrf_val")


def section(cfg, arms, seconds, quick):
    depths = cfg["depths"]
    head = "| arm | lr | " + " | ".join("%d+%d" % (d, d) for d in depths) + " |"
    rule = "|---|---|" + "---|" * len(depths)
    def base_text(a):  # a base at the grid's end may not be the arm's best
        end = a["base"] in (min(cfg["grid"]), max(cfg["grid"]))
        return "%g%s" % (a["base"], " (grid's end)" if end else "")

    def rows(metric):
        return ["| %s | %s | %s |" % (a["label"], base_text(a), " | ".join(
            cell(a, d, cfg, metric) for d in depths)) for a in arms.values()]

    search = "; ".join("%s: %s" % (k, ", ".join(
        "%g → %s" % (lr, stability.fmt(b, 4) if b != float("inf") else "no result")
        for b, lr in sorted(a["search"], key=lambda t: t[1]))) for k, a in arms.items())
    runs = [r for a in arms.values() for r in a["runs"].values()]
    healthy = sum(1 for r in runs if not r["unhealthy"] and not r["failed"])
    return "\n".join([
        BEGIN,
        "## Translation: depth, sigmaReparam + post-LN against post-LN and pre-LN",
        "",
        "Produced by `bash experiments/mt-depth.sh%s` (%d runs, one thread each, %.0f minutes "
        "in all, the sum of the runs' wall times, on %s): `mt-train` (docs/translation.md), "
        "English to German, with its defaults but for `%s`, encoder and decoder of the same "
        "depth, seeds %s. Each arm's lr is the lowest "
        "final validation bits per byte over %s at %d+%d blocks, seed 0 (%s). The test split is "
        "not used. %d of %d runs healthy (neither diverged nor spiked; a diverged run's cell "
        "counts only its healthy seeds). Healthy says nothing of a run that stalls: read the "
        "bits per byte." % (
            " --quick" if quick else "", len(runs) + sum(len(a["search"]) for a in arms.values()),
            seconds / 60.0, stability.machine(), " ".join(cfg["common"]),
            ", ".join(str(s) for s in cfg["seeds"]), ", ".join("%g" % g for g in cfg["grid"]),
            depths[0], depths[0], search, healthy, len(runs)),
        "",
        "Final validation bits per target byte (mean ± std over the seeds; lower is better):",
        "",
        head, rule] + rows("bpb") + [
        "",
        "Validation chrF2, greedy (the mean, then each seed; the copy baseline's is %s):"
        % stability.fmt(copy_baseline(cfg, arms), 2),
        "",
        head, rule] + rows("chrf") + ["", END, ""])


def write(cfg, text):
    """Puts the section between its markers, or before the collapse section."""
    path = cfg["report"]
    old = open(path).read() if os.path.exists(path) else ""
    if BEGIN in old and END in old:
        start, end = old.index(BEGIN), old.index(END) + len(END) + 1
        new = old[:start] + text + old[end:]
    elif stability.MT_DEPTH_BEFORE in old:
        at = old.index(stability.MT_DEPTH_BEFORE)
        new = old[:at] + text + "\n" + old[at:]
    else:
        new = old + ("\n" if old else "") + text
    with open(path, "w") as f:
        f.write(new)


def main():
    args, cfg, log = stability.start(__doc__, settings)
    arms = sweep(cfg, log)
    seconds = sum(stability.RUN_SECONDS.values())
    write(cfg, section(cfg, arms, seconds, args.quick))
    log("wrote %s" % os.path.relpath(cfg["report"], ROOT))


if __name__ == "__main__":
    sys.exit(main())
