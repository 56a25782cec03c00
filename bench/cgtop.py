#!/usr/bin/env python3
"""Top functions of a callgrind dump, by self and by inclusive cost, plus self cost per object.

Usage: cgtop.py CALLGRIND_OUT [REQUESTS] [N]

callgrind_annotate of Debian 12 (valgrind 3.19) folds everything into the event loop for a dump
taken after `callgrind_control -z`, so this reads the format itself.  Functions of libraries
without symbols show as object+0xADDR.  Inclusive = self + cost of the calls it makes (calls to
itself left out), so it is exact for non-recursive code.  With REQUESTS, costs are also given per
request (Ir = instructions executed).
"""
import collections
import os
import re
import sys

WATCH_ALLOC = ("malloc", "calloc", "realloc", "free", "evbuffer_new", "evbuffer_free",
               "EVP_MD_CTX_new", "strdup")
WATCH_SYS = ("epoll_wait", "epoll_ctl", "read", "readv", "write", "writev", "ioctl", "fdatasync",
             "fstat", "clock_gettime", "pthread_cond_signal", "pthread_cond_wait")
WATCH_FMT = ("evbuffer_add_printf", "snprintf", "__snprintf_chk", "gmtime_r")
NAME = re.compile(r"^(ob|fl|fi|fe|fn|cob|cfi|cfl|cfn)=(?:\((\d+)\))?\s*(.*)$")


def parse(path):
    names = {k: {} for k in ("ob", "fl", "fn")}
    kind = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl",
            "fn": "fn", "cfn": "fn"}
    self_cost = collections.Counter()
    calls_out = collections.Counter()   # (caller, callee) -> inclusive cost of those calls
    ncalls = collections.Counter()      # callee -> number of calls
    fn_ob = {}
    ob = fn = cob = cfn = None
    pending_call = False
    total = 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line[0] == "#":
                continue
            m = NAME.match(line)
            if m:
                key, ident, text = m.groups()
                table = names[kind[key]]
                if ident is not None and text:
                    table[ident] = text
                val = ident if ident is not None else text
                if kind[key] == "fn" and ident is None:
                    names["fn"][text] = text
                if key == "ob":
                    ob = val
                elif key == "cob":
                    cob = val
                elif key == "fn":
                    fn = val
                    fn_ob.setdefault(fn, ob)
                elif key == "cfn":
                    cfn = val
                    fn_ob.setdefault(cfn, cob if cob is not None else ob)
                continue
            if line.startswith("calls="):
                pending_call = True
                if cfn != fn:
                    ncalls[cfn] += int(line[6:].split()[0])
                continue
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                if len(parts) < 2:
                    continue
                cost = int(parts[1])
                if pending_call:
                    if cfn != fn:
                        calls_out[(fn, cfn)] += cost
                    pending_call = False
                    cob = None
                else:
                    self_cost[fn] += cost
    incl = collections.Counter(self_cost)
    for (a, _b), c in calls_out.items():
        incl[a] += c
    total = total or sum(self_cost.values())

    def label(i):
        n = names["fn"].get(i, i)
        o = os.path.basename(names["ob"].get(fn_ob.get(i), "?") or "?")
        return f"{n} [{o}]"

    by_ob = collections.Counter()
    for i, c in self_cost.items():
        by_ob[os.path.basename(names["ob"].get(fn_ob.get(i), "?") or "?")] += c
    by_name = collections.Counter()
    for i, c in ncalls.items():
        by_name[names["fn"].get(i, i)] += c
    return total, self_cost, incl, by_ob, label, by_name


def main():
    path = sys.argv[1]
    reqs = int(sys.argv[2]) if len(sys.argv) > 2 and int(sys.argv[2]) > 0 else 0
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    total, self_cost, incl, by_ob, label, ncalls = parse(path)
    per = f", {total / reqs:,.0f} Ir per request over {reqs} requests" if reqs else ""
    print(f"total {total:,} Ir{per}\n")
    print("self cost by object")
    for o, c in by_ob.most_common(10):
        print(f"  {100 * c / total:5.1f}%  {o}")
    if reqs:
        print("\ncalls per request (allocator, system calls, formatting)")
        for group in (WATCH_ALLOC, WATCH_SYS, WATCH_FMT):
            parts = []
            for name in group:
                c = sum(v for k, v in ncalls.items() if k == name or k.startswith(name + "@"))
                if c:
                    parts.append(f"{name} {c / reqs:.2f}")
            if parts:
                print("  " + ", ".join(parts))
    print(f"\ntop {n} functions by self cost")
    for i, c in self_cost.most_common(n):
        print(f"  {100 * c / total:5.1f}%  {label(i)}")
    print(f"\ntop {n} functions by inclusive cost (below the event loop)")
    shown = 0
    for i, c in incl.most_common():
        if 100 * c / total > 99.0:   # main, the event loop and the like
            continue
        print(f"  {100 * c / total:5.1f}%  {label(i)}")
        shown += 1
        if shown == n:
            break


if __name__ == "__main__":
    main()
