#!/usr/bin/env python3
"""Summarise bench/run.sh measurements (raw.tsv) as markdown.

Usage: report.py RAW.tsv INFO.txt

RAW.tsv columns (one line per wrk round, written by run.sh):
  section system mode round conns body sync requests duration_us errors p50_us p99_us
  cpu_ticks clk_tck hwm_kb audit_bytes [sync_ticks syncs]
sync_ticks: CPU ticks of ocp-proxy's audit sync thread (ocp-audit-sync) in the round; syncs: the
process's fdatasync calls (counted with perf on a tracepoint); -1 where not measured.
section is "cmp" (the comparison, rounds interleaved between systems) or "scale" (ocp-proxy alone).
Per system and mode the table gives the median over rounds; each ratio is the median, over rounds,
of the figure divided by the nginx+Lua+audit peer's figure in the same round.
"""
import statistics
import sys

LABELS = {
    "ocp": "ocp-proxy (signing + redacted audit, sync=batch)",
    "floor": "nginx proxy_pass (no signing, no audit)",
    "lua": "nginx + Lua signing, no audit",
    "luaaudit": "nginx + Lua signing + audit",
    "node": "Node.js (http/https/crypto) signing + audit",
}
ORDER = ["ocp", "floor", "lua", "luaaudit", "node"]
REF = "luaaudit"


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 15 or p[0] == "section":
                continue
            r = dict(section=p[0], system=p[1], mode=p[2], round=int(p[3]), conns=int(p[4]),
                     body=int(p[5]), sync=p[6], requests=int(p[7]), dur=int(p[8]),
                     errors=int(p[9]), p50=int(p[10]), p99=int(p[11]), ticks=int(p[12]),
                     hz=int(p[13]), hwm=int(p[14]), abytes=int(p[15]) if len(p) > 15 else 0,
                     sticks=int(p[16]) if len(p) > 16 else -1, syncs=int(p[17]) if len(p) > 17 else -1)
            r["rps"] = r["requests"] / (r["dur"] / 1e6) if r["dur"] > 0 else 0.0
            # proxy CPU seconds per 10k completed requests
            r["cpu10k"] = (r["ticks"] / r["hz"]) / r["requests"] * 1e4 if r["requests"] > 0 else float("nan")
            r["abpr"] = r["abytes"] / r["requests"] if r["requests"] > 0 else float("nan")
            # the audit sync thread's share (µs/req) and requests per fdatasync
            r["sync_us"] = ((r["sticks"] / r["hz"]) / r["requests"] * 1e6
                            if r["sticks"] >= 0 and r["requests"] > 0 else float("nan"))
            r["rps_sync"] = r["requests"] / r["syncs"] if r["syncs"] > 0 else float("nan")
            rows.append(r)
    return rows


def med(xs):
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def fmt(x, nd=2):
    if x != x:
        return "n/a"
    return f"{x:.{nd}f}"


def cmp_table(rows, names):
    out = []
    out.append("| system | answer | req/s | p50 ms | p99 ms | CPU s/10k req (µs/req) | peak RSS MB "
               "| errors | audit B/req | req/s ÷ ref | CPU ÷ ref | p99 ÷ ref |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cmp = [r for r in rows if r["section"] == "cmp"]
    for mode in ("small", "large"):
        ref = {r["round"]: r for r in cmp if r["mode"] == mode and r["system"] == REF}
        for sysname in ORDER:
            rs = [r for r in cmp if r["mode"] == mode and r["system"] == sysname]
            if not rs:
                continue
            rr, rc, rp = [], [], []
            for r in rs:
                f = ref.get(r["round"])
                if f is None or f["requests"] == 0 or r["requests"] == 0:
                    continue
                rr.append(r["rps"] / f["rps"] if f["rps"] else float("nan"))
                rc.append(r["cpu10k"] / f["cpu10k"] if f["cpu10k"] else float("nan"))
                rp.append(r["p99"] / f["p99"] if f["p99"] else float("nan"))
            cpu = med([r["cpu10k"] for r in rs])
            answer = "315 B" if mode == "small" else "4 KB"
            out.append("| {} | {} | {:.0f} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} |".format(
                names.get(sysname, sysname), answer, med([r["rps"] for r in rs]),
                fmt(med([r["p50"] for r in rs]) / 1000), fmt(med([r["p99"] for r in rs]) / 1000),
                fmt(cpu, 3), fmt(cpu * 100, 0), fmt(max(r["hwm"] for r in rs) / 1024, 1),
                sum(r["errors"] for r in rs), fmt(med([r["abpr"] for r in rs]), 0) if any(r["abytes"] for r in rs) else "–",
                fmt(med(rr)), fmt(med(rc)), fmt(med(rp))))
    return out


def scale_table(rows):
    sc = [r for r in rows if r["section"] == "scale"]
    if not sc:
        return []
    out = ["| connections | request body | audit sync | req/s | p50 ms | p99 ms | CPU µs/req "
           "| of it, sync thread | requests per fdatasync | peak RSS MB | errors | audit B/req |",
           "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    seen = []
    for r in sc:
        k = (r["conns"], r["body"], r["sync"])
        if k not in seen:
            seen.append(k)
    for k in seen:
        rs = [r for r in sc if (r["conns"], r["body"], r["sync"]) == k]
        out.append("| {} | {} B | {} | {:.0f} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            k[0], k[1], k[2], med([r["rps"] for r in rs]), fmt(med([r["p50"] for r in rs]) / 1000),
            fmt(med([r["p99"] for r in rs]) / 1000), fmt(med([r["cpu10k"] for r in rs]) * 100, 0),
            fmt(med([r["sync_us"] for r in rs]), 1), fmt(med([r["rps_sync"] for r in rs]), 1),
            fmt(max(r["hwm"] for r in rs) / 1024, 1), sum(r["errors"] for r in rs),
            fmt(med([r["abpr"] for r in rs]), 0) if any(r["abytes"] for r in rs) else "–"))
    return out


def main():
    rows = load(sys.argv[1])
    info = open(sys.argv[2]).read().strip() if len(sys.argv) > 2 else ""
    names = dict(LABELS)
    for line in info.splitlines():
        if line.startswith("node-label: "):
            names["node"] = line[len("node-label: "):]
    info = "\n".join(l for l in info.splitlines() if not l.startswith("node-label: "))
    nrounds = len({r["round"] for r in rows if r["section"] == "cmp"})
    print("## ocp-proxy bench: comparison\n")
    if info:
        print(info + "\n")
    print(f"Median of {nrounds} interleaved rounds per system and answer size; ratios are per round "
          f"against **{names[REF]}** (the ref) in the same round, then the median. "
          "CPU = utime+stime of the proxy's processes (nginx: master + worker) over the round "
          "÷ completed requests. Peak RSS = VmHWM (nginx: master + worker summed). "
          "errors = non-2xx + socket errors. audit B/req = growth of the audit file over the round "
          "÷ requests (nginx and Node buffer their lines, so this is approximate for them).\n")
    print("\n".join(cmp_table(rows, names)))
    for mode, answer in (("small", "315 B"), ("large", "4 KB")):
        rs = [r for r in rows if r["section"] == "cmp" and r["system"] == "ocp" and r["mode"] == mode]
        su, rq = med([r["sync_us"] for r in rs]), med([r["rps_sync"] for r in rs])
        if su == su or rq == rq:
            print(f"\nocp-proxy, {answer} answer: of its CPU, the audit sync thread (write + fdatasync "
                  f"of each batch) took {fmt(su, 1)} µs/req; {fmt(rq, 1)} requests per fdatasync.")
    st = scale_table(rows)
    if st:
        print("\n## ocp-proxy alone: scaling (315 B answer; one row per setting, median of its rounds)\n")
        print("\n".join(st))


if __name__ == "__main__":
    main()
