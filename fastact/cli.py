"""The ``fastact`` command (also ``python -m fastact``).

    fastact demo        the main job: quick XOR, study and gradient runs, written to --out
    fastact xor         the article's 2-4-1 XOR nets over many seeds
    fastact study       each activation x {plain, batch norm, dropout} on digits and spirals
    fastact gradients   per-layer gradient norms of a deep net (vanishing gradients)
    fastact bench       main kernels against the NumPy reference (and torch)
    fastact tour        stable values, sigmoid's derivative, timings
    fastact info        versions, CPU, threads, cache

``--quick`` makes each experiment finish in under a minute; ``--out DIR`` writes the tables
as CSV and Markdown and the plots as PNG (matplotlib, optional).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import time

import numpy as np


# --------------------------------------------------------------------------- output helpers
def _fmt(v):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _table(header, rows):
    """Print rows (lists) under header as an aligned text table."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
        for i, h in enumerate(header)
    ]
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(f"{c:>{w}}" for c, w in zip(row, widths)))


def _markdown(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class Output:
    """Writes tables (CSV + Markdown) and figures (PNG) into a folder, and lists them."""

    def __init__(self, folder):
        self.folder = folder
        self.written = []
        if folder:
            os.makedirs(folder, exist_ok=True)

    def table(self, name, header, rows, title=""):
        if not self.folder:
            return
        path = os.path.join(self.folder, f"{name}.csv")
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        md = os.path.join(self.folder, f"{name}.md")
        with open(md, "w") as fh:
            fh.write((f"## {title}\n\n" if title else "") + _markdown(header, rows))
        self.written += [path, md]

    def figure(self, name, draw):
        """draw(plt) makes the figure; skipped with a one-line hint without matplotlib."""
        if not self.folder:
            return
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            if not getattr(self, "_warned", False):
                print("note: plots need matplotlib: pip install matplotlib (or fastact[study])")
                self._warned = True
            return
        fig = draw(plt)
        path = os.path.join(self.folder, f"{name}.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.written.append(path)

    def report(self):
        if self.written:
            print(f"\nwrote {len(self.written)} files to {self.folder}/:")
            for path in self.written:
                print(f"  {path}")


class Progress:
    """A tqdm bar when tqdm is installed and output is a terminal; else nothing."""

    def __init__(self, total, desc):
        self.bar = None
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, disable=None)
        except ImportError:
            pass

    def __call__(self):
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- commands
def cmd_xor(args, out=None) -> int:
    from fastact import study

    seeds = args.seeds or (12 if args.quick else 50)
    epochs = 1500 if args.quick else 3000
    acts = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu")
    print(
        f"XOR with the article's 2-4-1 net: {seeds} seeds x {len(acts)} activations, "
        f"{epochs} full-batch Adam steps each (float64)"
    )
    progress = Progress(seeds * len(acts), "xor")
    rows = study.xor_experiment(acts, seeds=seeds, epochs=epochs, progress=progress)
    progress.close()
    header = ["activation", "solved", "seeds", "success_rate", "dead_units_per_net", "median_loss"]
    table = [
        [
            r["activation"],
            r["solved"],
            r["seeds"],
            r["success_rate"],
            r["dead_hidden_units_per_net"],
            r["median_final_loss"],
        ]
        for r in rows
    ]
    _table(header, table)
    print(
        "A 4-unit ReLU layer loses units that never activate again (dead ReLUs) on some seeds "
        "and then cannot fit XOR;\nleaky_relu and prelu keep a gradient for x < 0 and solve it."
    )
    out = out or Output(args.out)
    out.table("xor", header, table, "XOR 2-4-1: success rate over seeds")
    out.figure(
        "xor_success",
        lambda plt: _bar(
            plt,
            [r["activation"] for r in rows],
            [r["success_rate"] for r in rows],
            "XOR 2-4-1 solved (fraction of seeds)",
        ),
    )
    if not args.keep_open:
        out.report()
    return 0


def _bar(plt, labels, values, title, errors=None):
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(labels, values, yerr=errors, color="#4c72b0")
    ax.set_title(title)
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="x", rotation=30)
    return fig


def cmd_study(args, out=None) -> int:
    from fastact import study

    seeds = args.seeds or (2 if args.quick else 5)
    epochs = 12 if args.quick else 40
    datasets = ("digits", "spirals")
    acts = study.STUDY_ACTIVATIONS
    variants = tuple(study.VARIANTS)
    total = len(datasets) * len(acts) * len(variants) * seeds
    print(
        f"Study: {len(acts)} activations x {variants} x {datasets}, {seeds} seeds, hidden (64, 64), "
        f"Adam; digits {epochs} epochs lr 1e-3, spirals {epochs * 5} epochs lr 1e-2"
    )
    progress = Progress(total, "study")
    rows, curves = study.accuracy_study(
        datasets, acts, variants, seeds=seeds, epochs=epochs, progress=progress
    )
    progress.close()
    header = [
        "dataset",
        "activation",
        "variant",
        "train_acc",
        "±",
        "test_acc",
        "±",
        "gap",
        "±",
        "epochs_to_target",
        "reached",
        "ms/epoch",
    ]
    table = [
        [
            r["dataset"],
            r["activation"],
            r["variant"],
            r["train_acc"],
            r["train_acc_std"],
            r["test_acc"],
            r["test_acc_std"],
            r["gap"],
            r["gap_std"],
            r["epochs_to_target"],
            f"{r['reached_target']}/{r['seeds']}",
            r["ms_per_epoch"],
        ]
        for r in rows
    ]
    _table(header, table)
    print(f"(targets: train accuracy {study.TARGETS}; mean and std over seeds)")
    out = out or Output(args.out)
    out.table("study", header, table, "Train/test accuracy per activation (mean, std over seeds)")
    for dataset in datasets:
        sub = [r for r in rows if r["dataset"] == dataset]
        out.figure(
            f"study_{dataset}_accuracy", lambda plt, sub=sub, d=dataset: _grouped(plt, sub, d)
        )
        out.figure(f"study_{dataset}_loss", lambda plt, d=dataset: _curves(plt, curves, d))
    if not args.keep_open:
        out.report()
    return 0


def _grouped(plt, rows, dataset):
    acts = list(dict.fromkeys(r["activation"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(variants)
    for k, variant in enumerate(variants):
        vals = [
            next(r["test_acc"] for r in rows if r["activation"] == a and r["variant"] == variant)
            for a in acts
        ]
        errs = [
            next(
                r["test_acc_std"] for r in rows if r["activation"] == a and r["variant"] == variant
            )
            for a in acts
        ]
        ax.bar(np.arange(len(acts)) + k * width, vals, width, yerr=errs, label=variant)
    ax.set_xticks(np.arange(len(acts)) + 0.4 - width / 2, acts, rotation=30)
    ax.set_ylim(min(0.5, ax.get_ylim()[0]), 1.0)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{dataset}: test accuracy per activation")
    ax.legend(fontsize=8)
    return fig


def _curves(plt, curves, dataset):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for (d, act, variant, seed), loss in curves.items():
        if d == dataset and variant == "plain" and seed == 0:
            ax.plot(np.arange(1, len(loss) + 1), loss, label=act)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"{dataset}: training loss (plain, seed 0)")
    ax.legend(fontsize=8, ncol=2)
    return fig


def cmd_gradients(args, out=None) -> int:
    from fastact import study

    depth = args.depth
    width = 32 if args.quick else 64
    epochs = 3 if args.quick else 10
    cases = study.GRADIENT_CASES
    print(
        f"Gradient norms ||dL/dW|| per layer: {depth} hidden layers of {width} units, digits, "
        f"at initialization and after {epochs} epochs (layer 1 = next to the input)"
    )
    progress = Progress(len(cases), "gradients")
    rows = study.gradient_study(
        depth=depth, width=width, cases=cases, epochs=epochs, progress=progress
    )
    progress.close()
    layers = [f"L{i + 1}" for i in range(depth)] + ["out"]
    header = ["case", "when"] + layers + ["L1/L" + str(depth), "test_acc"]
    table = []
    for r in rows:
        for when in ("at_init", "trained"):
            norms = r[when]
            ratio = norms[0] / norms[depth - 1] if norms[depth - 1] else math.inf
            table.append(
                [study.case_name(r), when]
                + list(norms)
                + [ratio, r["test_acc"] if when == "trained" else ""]
            )
    _table(header, table)
    print(
        "sigmoid's derivative is at most 0.25, so each sigmoid layer shrinks the gradient: "
        "L1/L10 << 1;\nHe init + ReLU, or batch norm, keep the norms flat."
    )
    out = out or Output(args.out)
    out.table("gradients", header, table, "Gradient norm per layer")
    out.figure("gradients_at_init", lambda plt: _gradient_plot(plt, rows, "at_init", depth))
    out.figure("gradients_trained", lambda plt: _gradient_plot(plt, rows, "trained", depth))
    if not args.keep_open:
        out.report()
    return 0


def _gradient_plot(plt, rows, when, depth):
    from fastact import study

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for r in rows:
        ax.plot(np.arange(1, depth + 2), r[when], marker="o", ms=3, label=study.case_name(r))
    ax.set_yscale("log")
    ax.set_xlabel(f"layer (1 = input side, {depth + 1} = output)")
    ax.set_ylabel("||dL/dW||")
    ax.set_title(
        "gradient norm per layer "
        + ("at initialization" if when == "at_init" else "after training")
    )
    ax.legend(fontsize=7, ncol=2)
    return fig


def cmd_demo(args) -> int:
    """The main job: quick versions of the three experiments, everything written to --out."""
    args.quick = True
    args.keep_open = True
    out = Output(args.out or "results")
    for command in (cmd_xor, cmd_study, cmd_gradients):
        print()
        command(args, out)
    out.report()
    print(
        "\nThe full runs: fastact xor | study | gradients (without --quick); docs/study.md "
        "puts the results next to the article's claims."
    )
    return 0


def _median_time(func, repeat=7):
    func()  # warm-up: compilation and first-touch excluded
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cmd_bench(args) -> int:
    import fastact as fa
    from fastact import reference

    n = 1_000_000 if args.quick else args.size
    try:
        import torch

        torch.set_num_threads(_numba_threads())
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    header = ["op", "dtype", "fastact ms", "numpy ms", "vs numpy", "torch ms", "vs torch", "GB/s"]
    rows = []
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal(n) * 4).astype(dtype)
        g = rng.standard_normal(n).astype(dtype)
        out = np.empty_like(x)
        tx, tg, tout = (torch.from_numpy(a) for a in (x, g, out)) if torch else (None, None, None)
        cases = [
            (
                "sigmoid",
                lambda: fa.sigmoid(x, out=out),
                lambda: reference.sigmoid(x),
                torch and (lambda: torch.sigmoid(tx, out=tout)),
                2,
            ),
            (
                "tanh",
                lambda: fa.tanh(x, out=out),
                lambda: reference.tanh(x),
                torch and (lambda: torch.tanh(tx, out=tout)),
                2,
            ),
            (
                "relu",
                lambda: fa.relu(x, out=out),
                lambda: reference.relu(x),
                torch and (lambda: torch.clamp_min(tx, 0, out=tout)),
                2,
            ),
            (
                "gelu",
                lambda: fa.gelu(x, out=out),
                lambda: reference.gelu(x),
                torch and (lambda: torch._C._nn.gelu(tx, out=tout)),
                2,
            ),
            (
                "silu",
                lambda: fa.silu(x, out=out),
                lambda: reference.silu(x),
                torch and (lambda: torch._C._nn.silu(tx, out=tout)),
                2,
            ),
            (
                "softplus",
                lambda: fa.softplus(x, out=out),
                lambda: reference.softplus(x),
                torch and (lambda: torch._C._nn.softplus(tx, 1.0, 20.0, out=tout)),
                2,
            ),
            (
                "sigmoid_backward",
                lambda: fa.sigmoid_backward(g, x, out=out),
                lambda: reference.sigmoid_backward(g, x),
                torch
                and (lambda: torch.ops.aten.sigmoid_backward.grad_input(tg, tx, grad_input=tout)),
                3,
            ),
        ]
        for name, fast, ref, tor, passes in cases:
            t_fast, t_ref = _median_time(fast), _median_time(ref)
            t_torch = _median_time(tor) if tor else math.nan
            rows.append(
                [
                    name,
                    np.dtype(dtype).name,
                    t_fast * 1e3,
                    t_ref * 1e3,
                    f"{t_ref / t_fast:.1f}x",
                    t_torch * 1e3,
                    f"{t_torch / t_fast:.2f}x" if tor else "-",
                    passes * x.nbytes / t_fast / 1e9,
                ]
            )
    print(
        f"{n:,} elements, median of 7 runs, out= where the library has it; "
        f"{os.cpu_count()} cpus, {_numba_threads()} threads"
    )
    _table(header, rows)
    if torch is None:
        print("(torch not installed: pip install torch==2.13.0 to compare)")
    Output(args.out).table("bench", header, rows)
    return 0


def cmd_tour(args) -> int:
    import fastact as fa
    from fastact import reference

    print(f"fastact {fa.__version__}: compiled, numerically stable activation kernels\n")
    print("1. Stable on every input (float64; naive formulas overflow or give NaN here)")
    xs = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
    rows = [
        [name] + [f"{v:.6g}" for v in getattr(fa, name)(xs)]
        for name in ("sigmoid", "log_sigmoid", "softplus", "tanh", "gelu", "silu", "mish")
    ]
    _table(["x"] + [f"{v:g}" for v in xs], rows)
    print(
        f"   sigmoid(-100) in float32 = {fa.sigmoid(np.float32(-100.0)):.4g} (subnormal, not 0)\n"
    )
    print("2. sigmoid'(x) = s(1 - s): largest (0.25) at x = 0, vanishing as |x| grows")
    xs = np.array([-10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0])
    ds = fa.sigmoid_backward(np.ones_like(xs), fa.sigmoid(xs))
    _table(["x"] + [f"{v:g}" for v in xs], [["sigmoid'(x)"] + [f"{d:.4g}" for d in ds]])
    print(
        f"   through 10 sigmoid layers the factor is at most 0.25**10 = {0.25**10:.2e}: gradients "
        "vanish;\n   sigmoid alone never makes them explode (that takes large weights).\n"
    )
    n = 4_000_000
    print(f"3. Speed on {n:,} float32 values, median of 7 runs")
    x = (np.random.default_rng(0).standard_normal(n) * 4).astype(np.float32)
    out = np.empty_like(x)
    table = []
    for name in ("sigmoid", "softplus", "gelu", "silu", "relu"):
        t_fast = _median_time(lambda: getattr(fa, name)(x, out=out))
        t_ref = _median_time(lambda: getattr(reference, name)(x))
        table.append([name, t_fast * 1e3, t_ref * 1e3, f"{t_ref / t_fast:.1f}x"])
    _table(["op", "fastact ms", "numpy ms", "speed-up"], table)
    return 0


def _numba_threads():
    import numba

    return numba.get_num_threads()


def cmd_info(args) -> int:
    import numba

    import fastact
    from fastact import _config

    layer = "not started (no parallel kernel ran yet)"
    try:
        layer = numba.threading_layer()
    except ValueError:
        pass
    try:
        from fastact import cuda

        cuda_ok = cuda.is_available()
    except ImportError:
        cuda_ok = False
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1] for line in fh if line.startswith("flags")), "")
    except OSError:  # not Linux: the line is informational only
        pass
    print(f"fastact      {fastact.__version__}")
    print(f"python       {platform.python_version()} ({platform.machine()})")
    print(f"numpy        {np.__version__}")
    print(f"numba        {numba.__version__}")
    print(f"cpu          {platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    if flags:
        simd = [f for f in ("avx2", "fma", "avx512f") if f in flags.split()]
        print(f"cpu features {' '.join(simd)}")
    print(
        f"threads      {numba.get_num_threads()} (threading layer: {layer}; "
        f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')})"
    )
    print(
        f"cache        {'on' if _config.CACHE else 'off (no writable location)'} "
        f"({os.path.join(os.path.dirname(fastact.__file__), '__pycache__')} or NUMBA_CACHE_DIR)"
    )
    print(f"parallel at  {_config.PARALLEL_THRESHOLD} elements")
    print(f"cuda         {'available' if cuda_ok else 'not available'}")
    return 0


# --------------------------------------------------------------------------- parser
def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a positive {kind.__name__}, got {text!r}"
            ) from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastact",
        description="fastact: compiled activation "
        "kernels, and the sigmoid-vs-ReLU study done right",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def experiment(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--quick", action="store_true", help="a small run (under a minute)")
        p.add_argument(
            "--out", metavar="DIR", help="write tables (CSV, Markdown) and plots (PNG) here"
        )
        p.add_argument(
            "--seeds", type=_positive(int), help="number of seeds (default: 50/12 xor, 5/2 study)"
        )
        p.add_argument(
            "--depth", type=_positive(int), default=10, help="hidden layers for gradients"
        )
        p.set_defaults(func=func, keep_open=False)
        return p

    experiment(
        "xor", cmd_xor, "the article's 2-4-1 XOR nets (sigmoid, tanh, ReLU family) over many seeds"
    )
    experiment(
        "study",
        cmd_study,
        "each activation with/without batch norm and dropout on digits and spirals",
    )
    experiment(
        "gradients", cmd_gradients, "per-layer gradient norms of a deep net: vanishing gradients"
    )
    experiment(
        "demo",
        cmd_demo,
        "the main job: quick xor, study and gradients, written to --out (default results/)",
    )
    bench = sub.add_parser("bench", help="main kernels against the NumPy reference (and torch)")
    bench.add_argument("--quick", action="store_true", help="1M elements")
    bench.add_argument(
        "--size", type=_positive(int), default=16_000_000, help="elements (default 16M)"
    )
    bench.add_argument("--out", metavar="DIR", help="write the table as CSV and Markdown here")
    bench.set_defaults(func=cmd_bench)
    tour = sub.add_parser("tour", help="stable values, sigmoid's derivative, timings")
    tour.set_defaults(func=cmd_tour)
    info = sub.add_parser("info", help="versions, CPU, threads, cache, CUDA")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fastact.study import MissingDependency

    try:
        return args.func(args)
    except MissingDependency as exc:
        print(f"fastact {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
