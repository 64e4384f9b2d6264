#!/usr/bin/env python3
"""Charts of one run.py result: PNG and SVG, drawn from the JSON alone.

    python3 tests/bench/charts.py RESULTS.json [OUTDIR]

OUTDIR defaults to the JSON's path without its extension (for
tests/bench/results/bench-TIMESTAMP.json: tests/bench/results/bench-TIMESTAMP/).
Writes, for each section present in the results:

    throughput.{png,svg}   msgs/s and p99 latency by server, one row per load
    lines.{png,svg}        the same for the line echo (AsyncChat, evbuffer_readln)
    idle_curve.{png,svg}   msgs/s as idle connections grow, and the ratio to 0 idle
    redis.{png,svg}        resp_server against redis-server per command, -P 1 and -P 16
    http.{png,svg}         http_server against nginx: requests/s and p99 per file
    idle_scale.{png,svg}   memory per idle connection and the active ratio, 1k .. the limit

The charts are never edited by hand: rerun this (or run.py) to redraw them.
Needs matplotlib (Debian's python3-matplotlib, which ./dev bench installs).
"""

import json
import os
import sys

SYSTEM_PYTHON = "/usr/bin/python3"  # where Debian's python3-matplotlib is importable

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
except ImportError:
    # A python3 of its own (pyenv, a venv) first on PATH does not see
    # Debian's packages: run again with the system's interpreter.
    if os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON) and \
            os.access(SYSTEM_PYTHON, os.X_OK) and not os.environ.get("CHARTS_REEXEC"):
        os.environ["CHARTS_REEXEC"] = "1"
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
    sys.exit("charts.py: matplotlib is missing (apt-get install python3-matplotlib)")

# One colour per server, the same in every chart; references in greys and
# muted tones, asyncore-cpp's own servers in strong ones.
COLOURS = {
    "raw_libevent": "#7f7f7f",
    "raw_line_echo": "#7f7f7f",
    "asio": "#bcbd22",
    "bufferevent": "#17becf",
    "python_asyncore": "#8c564b",
    "echo_server": "#1f77b4",
    "task_echo_server": "#ff7f0e",
    "chat_line_echo": "#2ca02c",
    "redis-server": "#7f7f7f",
    "resp_server": "#d62728",
    "nginx": "#7f7f7f",
    "http_server": "#9467bd",
}
REFERENCES = {"raw_libevent", "raw_line_echo", "redis-server", "nginx"}
OURS = {"echo_server", "task_echo_server", "chat_line_echo", "resp_server", "http_server"}


def colour(name):
    return COLOURS.get(name, "#333333")


def thousands(x, _pos=None):
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:g}k"
    return f"{x:g}"


def subtitle(report, extra=""):
    cfg = report.get("config", {})
    bits = [report.get("machine", "")]
    if report.get("date"):
        bits.append(report["date"])
    if extra:
        bits.append(extra)
    elif cfg.get("rounds"):
        bits.append(f"{cfg['rounds']} rounds x {cfg.get('duration')} s, medians")
    return "; ".join(b for b in bits if b)


def save(fig, outdir, name):
    paths = []
    for ext in ("png", "svg"):
        path = os.path.join(outdir, f"{name}.{ext}")
        # No date in the files: the same results draw the same bytes.
        meta = {"Date": None} if ext == "svg" else {"Software": None}
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata=meta)
        paths.append(path)
    plt.close(fig)
    return paths


def bar_label(ax, bars, labels, inside=False):
    for bar, text in zip(bars, labels):
        if not text:
            continue
        x = bar.get_x() + bar.get_width()
        y = bar.get_y() + bar.get_height() / 2
        ax.annotate(text, (x, y), xytext=(3, 0), textcoords="offset points", va="center",
                    ha="left", fontsize=8)


def ratio_text(value, baseline_row):
    if baseline_row:
        return "reference"
    return "" if value is None else f"{value:.2f}x"


def latency_unit(values):
    """(divisor, unit) that keeps latency labels short: µs below 2 ms."""
    return (1000.0, "ms") if max((v for v in values if v), default=0) >= 2000 else (1.0, "µs")


def hbar_grid(rows, baseline, title, footer, outdir, name):
    """One row of two panels per entry of `rows`: (row title, {server:
    (value, ratio, p99_us, p99_ratio)}, unit of value). Left: throughput; right: p99.
    Horizontal bars, our servers first and the reference last, each
    labelled with its value and its ratio to the reference."""
    servers = []
    for _, entries, _ in rows:
        for n in entries:
            if n not in servers:
                servers.append(n)
    ours = [n for n in servers if n in OURS]
    servers = ours + [n for n in servers if n not in OURS and n != baseline] + \
        ([baseline] if baseline in servers else [])
    height = 0.9 + 0.42 * len(servers) * len(rows) + 0.35 * len(rows)
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, height), squeeze=False)
    for r, (row_title, entries, unit) in enumerate(rows):
        names = [n for n in servers if n in entries]
        ypos = list(range(len(names)))
        p99s = [entries[n][2] for n in names]
        div, lat_unit = latency_unit(p99s)
        for col in (0, 1):
            ax = axes[r][col]
            if col == 0:
                values = [entries[n][0] for n in names]
                ratios = [entries[n][1] for n in names]
                texts = [f"{v:,.0f}" for v in values]
            else:
                values = [v / div for v in p99s]
                ratios = [entries[n][3] for n in names]
                texts = [f"{v:,.1f} {lat_unit}" if v < 100 else f"{v:,.0f} {lat_unit}"
                         for v in values]
            bars = ax.barh(ypos, values, color=[colour(n) for n in names], edgecolor="black",
                           linewidth=0.4)
            labels = []
            for n, t, ratio in zip(names, texts, ratios):
                rt = ratio_text(ratio, n == baseline)
                labels.append(f"{t}  ({rt})" if rt else t)
            bar_label(ax, bars, labels)
            ax.set_yticks(ypos)
            ax.set_yticklabels(names)
            for tick, n in zip(ax.get_yticklabels(), names):
                if n in OURS:
                    tick.set_fontweight("bold")
            ax.invert_yaxis()
            ax.xaxis.set_major_formatter(FuncFormatter(thousands))
            ax.set_xlim(0, max(values) * 1.5)
            ax.grid(axis="x", alpha=0.3)
            ax.set_title(f"{row_title}: {'throughput' if col == 0 else 'p99 latency'}",
                         fontsize=10)
            ax.set_xlabel(f"{unit} (higher is better)" if col == 0
                          else f"p99 latency, {lat_unit} (lower is better)", fontsize=9)
    fig.suptitle(f"{title}\n(in brackets: ratio to {baseline} in the same round, median over "
                 "rounds; asyncore-cpp's servers in bold)", fontsize=12)
    fig.text(0.5, -0.01, footer, ha="center", fontsize=8, color="#555555")
    fig.tight_layout()
    return save(fig, outdir, name)


def throughput_chart(report, key, baseline, title, outdir, name):
    """One row per load: msgs/s and p99 by server."""
    table = [e for e in report.get(key, []) if "msgs_per_s" in e]
    if not table:
        return []
    by_load = {}  # load label -> {server: figures}, in the results' order
    for e in table:
        by_load.setdefault(e["load"], {})[e["contender"]] = (
            e["msgs_per_s"], e.get("ratio"), e["p99_us"], e.get("p99_ratio"))
    rows = [(load, entries, "messages per second") for load, entries in by_load.items()]
    return hbar_grid(rows, baseline, title, subtitle(report), outdir, name)


def idle_curve_chart(report, outdir):
    curve = report.get("idle_curve")
    if not curve or not curve.get("rows"):
        return []
    steps = curve["steps"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    for r in curve["rows"]:
        name = r["contender"]
        style = dict(color=colour(name), marker="o", linewidth=2 if name not in REFERENCES else 1.5,
                     linestyle="--" if name in REFERENCES else "-", label=name)
        pts = [(n, v) for n, v in zip(steps, r["msgs_per_s"]) if v is not None]
        if pts:
            left.plot(*zip(*pts), **style)
        pts = [(n, v) for n, v in zip(steps, r["vs_zero"]) if v is not None]
        if pts:
            right.plot(*zip(*pts), **style)
    left.set_title("messages per second, 50 connections in ping-pong", fontsize=10)
    left.set_ylabel("messages per second")
    left.set_ylim(bottom=0)
    left.yaxis.set_major_formatter(FuncFormatter(thousands))
    right.set_title(f"the same, as a ratio to the same server with {steps[0]:,} idle",
                    fontsize=10)
    right.set_ylabel(f"msgs/s with N idle / msgs/s with {steps[0]:,} idle")
    right.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    right.set_ylim(0, max(1.2, right.get_ylim()[1]))
    for ax in (left, right):
        ax.set_xlabel("idle connections held open (N)")
        ax.set_xticks(steps)
        ax.xaxis.set_major_formatter(FuncFormatter(thousands))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("What idle connections cost the active ones (64-byte messages, "
                 "one in flight per connection)", fontsize=12)
    fig.text(0.5, -0.02, subtitle(report, f"{curve['rounds']} rounds x {curve['duration']} s, "
                          "medians; ratios are medians of per-round pairs"),
             ha="center", fontsize=8, color="#555555")
    fig.tight_layout()
    return save(fig, outdir, "idle_curve")


def paired_bars(ax, groups, series, values, ratios, ylabel):
    """Grouped vertical bars: for each group, one bar per series; the
    group's ratio (second series over first) written above it."""
    width = 0.8 / len(series)
    top = max((v for row in values for v in row if v), default=1)
    for i, name in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [row[i] or 0 for row in values], width, color=colour(name), label=name,
               edgecolor="black", linewidth=0.4)
    for g, (row, ratio) in enumerate(zip(values, ratios)):
        if ratio is not None:
            ax.annotate(f"{ratio:.2f}x", (g, max(v or 0 for v in row)), xytext=(0, 3),
                        textcoords="offset points", ha="center", fontsize=9, fontweight="bold")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylim(0, top * 1.18)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_formatter(FuncFormatter(thousands))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(series))


def redis_chart(report, outdir):
    rows = report.get("redis")
    if not rows:
        return []
    pipelines = sorted({r["pipeline"] for r in rows})
    fig, axes = plt.subplots(1, len(pipelines), figsize=(6.5 * len(pipelines), 4.6),
                             squeeze=False)
    for ax, p in zip(axes[0], pipelines):
        mine = [r for r in rows if r["pipeline"] == p]
        paired_bars(ax, [r["test"].replace("_", "\n") for r in mine],
                    ["redis-server", "resp_server"], [(r["redis"], r["resp"]) for r in mine],
                    [r["ratio"] for r in mine], "requests per second (higher is better)")
        ax.set_title(f"-P {p}: {'one request' if p == 1 else f'{p} requests'} in flight "
                     "per connection", fontsize=10)
    fig.suptitle("resp_server against redis-server, redis-benchmark -c 50\n"
                 "(above each pair: resp_server / redis-server, median of per-round ratios)",
                 fontsize=12)
    rounds = report.get("config", {}).get("redis_rounds")
    fig.text(0.5, -0.02, subtitle(report, f"{rounds} rounds, alternating servers"),
             ha="center", fontsize=8, color="#555555")
    fig.tight_layout()
    return save(fig, outdir, "redis")


def http_chart(report, outdir):
    http = report.get("http")
    if not http or not http.get("rows"):
        return []
    rows = []
    for r in http["rows"]:
        entries = {}
        if r["nginx_rps"] is not None:
            entries["nginx"] = (r["nginx_rps"], None, r["nginx_p99_us"], None)
        if r["http_server_rps"] is not None:
            entries["http_server"] = (r["http_server_rps"], r["ratio"], r["http_server_p99_us"],
                                      r["p99_ratio"])
        if entries:
            rows.append((f"GET /{r['file']} ({r['bytes'] // 1024:,} KiB)", entries,
                         "requests per second"))
    if not rows:
        return []
    footer = subtitle(report, f"{report.get('config', {}).get('rounds')} rounds x "
                      f"{http['duration']} s, a fresh server per run")
    return hbar_grid(rows, "nginx", "samples/http_server against nginx (1 worker, sendfile on), "
                     "wrk -t 1 -c 50, keep-alive", footer, outdir, "http")


def idle_scale_chart(report, outdir):
    scale = report.get("idle_scale")
    rows = [r for r in (scale or {}).get("rows", []) if "error" not in r]
    if not rows:
        return []
    fig, (user, kern, active) = plt.subplots(1, 3, figsize=(15, 4.8))
    names = []
    for r in rows:
        if r["contender"] not in names:
            names.append(r["contender"])
    steps = sorted({r["idle"] for r in rows})
    for name in names:
        mine = [r for r in rows if r["contender"] == name]
        xs = [r["idle"] for r in mine]
        style = dict(marker="o", color=colour(name), label=name,
                     linestyle="--" if name in REFERENCES else "-")
        user.plot(xs, [r["user_per_conn"] for r in mine], **style)
        last = mine[-1]
        user.annotate(f"{last['user_per_conn']:,.0f} B", (last["idle"], last["user_per_conn"]),
                      xytext=(4, 4), textcoords="offset points", fontsize=8)
        kern.plot(xs, [r["slab_per_conn"] for r in mine], **style)
        active.plot(xs, [r["active_ratio"] for r in mine], **style)
    user.set_title("server's user memory (RSS) per idle connection", fontsize=10)
    user.set_ylabel("bytes per connection")
    user.set_ylim(0, max(r["user_per_conn"] for r in rows) * 1.3)
    kern.set_title("kernel slab per connection, both loopback ends", fontsize=10)
    kern.set_ylabel("bytes per connection (system-wide, noisy)")
    kern.set_ylim(0, max(r["slab_per_conn"] for r in rows) * 1.2)
    active.set_title("50-connection ping-pong with N idle / with 0", fontsize=10)
    active.set_ylabel("ratio (1.0: idle connections cost nothing)")
    active.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    active.set_ylim(0, max(1.2, active.get_ylim()[1]))
    for ax in (user, kern, active):
        ax.set_xlabel("idle connections (N)")
        ax.set_xticks(steps)
        ax.xaxis.set_major_formatter(FuncFormatter(thousands))
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Idle connections up to the machine's limit: stopped by "
                 f"{scale['stopped_by'].split(':')[0]}", fontsize=12)
    fig.text(0.5, -0.02, subtitle(report, f"one run per step, {scale['duration']} s ping-pong"),
             ha="center", fontsize=8, color="#555555")
    fig.tight_layout()
    return save(fig, outdir, "idle_scale")


def main(argv):
    if len(argv) not in (2, 3) or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) == 2 else 64
    with open(argv[1]) as f:
        report = json.load(f)
    outdir = argv[2] if len(argv) == 3 else os.path.splitext(argv[1])[0]
    os.makedirs(outdir, exist_ok=True)
    plt.rcParams["svg.hashsalt"] = "asyncore-cpp-bench"
    paths = []
    paths += throughput_chart(report, "throughput", "raw_libevent",
                              "Echo servers: 64-byte messages on 50 connections", outdir,
                              "throughput")
    paths += throughput_chart(report, "lines", "raw_line_echo",
                              "Line echo: 64-byte lines on 50 connections", outdir, "lines")
    paths += idle_curve_chart(report, outdir)
    paths += redis_chart(report, outdir)
    paths += http_chart(report, outdir)
    paths += idle_scale_chart(report, outdir)
    if not paths:
        print(f"charts: nothing to draw in {argv[1]}")
        return 0
    print(f"charts: {len(paths) // 2} charts (PNG and SVG) in {outdir}: "
          + ", ".join(sorted({os.path.splitext(os.path.basename(p))[0] for p in paths})))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
