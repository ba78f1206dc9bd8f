"""Where a jax.profiler trace spends the accelerator's time: kernel time by name and by kind.

python -m benchmarks.profile_summary TRACE [--top 25] [--out FILE]

TRACE is a perfetto_trace.json.gz (`jax.profiler.start_trace(dir, create_perfetto_trace=True)`,
or `train_step.py --profile DIR`), or a folder searched for one. Kernels are the complete
events of the device processes (`/device:GPU:0`...; the host's when there is no device, as on
CPU). Kinds group them by name: convolution/matmul kernels (cuDNN, cuBLAS, CUTLASS, Triton
GEMMs), XLA fusions, copies and transposes, the rest.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re

KINDS = (  # (kind, pattern on the lower-cased kernel name), first match wins
    ("convolution/matmul", r"conv|cudnn|gemm|cutlass|xmma|sm90|sm80|wgmma|dot|matmul|ynn"),
    ("copy/transpose", r"copy|transpose|memcpy|memset"),
    ("reduction", r"reduce|reduction"),
    ("fusion", r"fusion"),
)


def kind_of(name: str) -> str:
    lower = name.lower()
    return next((kind for kind, pattern in KINDS if re.search(pattern, lower)), "other")


def find_trace(path: str) -> str:
    if os.path.isfile(path):
        return path
    found = sorted(glob.glob(os.path.join(path, "**", "perfetto_trace.json.gz"), recursive=True))
    if not found:
        raise SystemExit(f"no perfetto_trace.json.gz under {path}")
    return found[-1]


def summarise(path: str, top: int = 25) -> dict:
    """{"device_seconds", "events" (kernels and copies), "by_kind": {kind: seconds},
    "top": [[name, seconds, share]]}."""
    with gzip.open(find_trace(path), "rt", encoding="utf-8") as f:
        events = json.load(f)["traceEvents"]
    process_names = {e["pid"]: e["args"]["name"] for e in events
                     if e.get("ph") == "M" and e.get("name") == "process_name"}
    devices = {pid for pid, name in process_names.items() if "/device:" in name}
    pids = devices or set(process_names)
    by_name: dict[str, float] = collections.Counter()
    launches = 0
    for e in events:
        if e.get("ph") == "X" and e.get("pid") in pids:
            by_name[e["name"]] += e.get("dur", 0.0) * 1e-6  # microseconds
            launches += 1
    total = sum(by_name.values()) or 1.0
    by_kind: dict[str, float] = collections.Counter()
    for name, seconds in by_name.items():
        by_kind[kind_of(name)] += seconds
    return {"trace": find_trace(path), "processes": sorted(process_names[p] for p in pids),
            "device_seconds": total, "events": launches,
            "by_kind": {k: v for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "top": [[n, s, s / total] for n, s in by_name.most_common(top)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trace")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", default="")
    args = p.parse_args()
    summary = summarise(args.trace, args.top)
    print(f"{summary['device_seconds']:.4f} s of kernels in {summary['processes']}")
    for kind, seconds in summary["by_kind"].items():
        print(f"  {kind:20s} {seconds:9.4f} s {100 * seconds / summary['device_seconds']:5.1f}%")
    for name, seconds, share in summary["top"]:
        print(f"  {100 * share:5.1f}% {seconds * 1e3:9.2f} ms  {name[:110]}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
