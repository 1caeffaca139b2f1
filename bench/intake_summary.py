#!/usr/bin/env python3
"""One markdown row per kernel launch of an `ncu --csv --page raw` report (bench/profile_device.sh
intake): which kernel a column of `sparse24 bench gemm` ran and what each SM took in per cycle.

Usage: intake_summary.py CASE COLUMN REPORT.csv. The report may hold the program's own output
between ncu's CSV lines; only lines that start with a quote are read."""
import csv
import sys


def number(row, name):
    value = row.get(name, "").replace(",", "")
    try:
        return float(value)
    except ValueError:
        return None


def main():
    case, column, path = sys.argv[1:4]
    with open(path, errors="replace") as f:
        lines = [line for line in f if line.startswith('"')]
    rows = list(csv.DictReader(lines))
    rows = [r for r in rows if r.get("ID", "").isdigit()]  # drops the units row
    if not rows:
        print(f"| {case} | {column} | (no launch profiled) |")
        return
    for r in rows:
        sms = number(r, "device__attribute_multiprocessor_count") or 132
        cycles = number(r, "sm__cycles_elapsed.avg")  # per SM
        us = (number(r, "gpu__time_duration.sum") or 0) / 1e3  # ncu reports ns
        hz = number(r, "sm__cycles_elapsed.avg.per_second")

        def per_sm_cycle(name):
            v = number(r, name)
            return f"{v / (cycles * sms):.1f}" if v is not None and cycles else "-"

        cluster = f"{r.get('launch__cluster_dim_x', '-')}x{r.get('launch__cluster_dim_y', '-')}"
        name = r.get("Kernel Name", "?")
        name = name if len(name) <= 110 else name[:110] + "..."
        print(f"| {case} | {column} | `{name}` | {r.get('launch__grid_size', '-')} | {cluster} | "
              f"{r.get('launch__registers_per_thread', '-')} | {us:.1f} | "
              f"{hz / 1e6 if hz else 0:.0f} | {per_sm_cycle('l1tex__m_xbar2l1tex_read_bytes.sum')} | "
              f"{per_sm_cycle('lts__t_bytes.sum')} | "
              f"{per_sm_cycle('l1tex__data_pipe_lsu_wavefronts_mem_shared.sum')} |")


if __name__ == "__main__":
    main()
