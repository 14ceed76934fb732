"""The memory check's estimate against the measured peak, for the three modalities.

Runs `ssl pretrain-<modality>` at its defaults (model, batch size, data), pretraining for
--steps steps with a short evaluation, and writes what each report.json says: the estimate made
before the first step (pretraining.memory_estimate_bytes), the peak resident memory when
pretraining ended (pretraining.peak_resident_bytes) and the whole run's (memory.peak_resident_bytes),
with the commit, the machine and the commands.

    python3 bench/memory_estimate.py --ssl target/debug/ssl --out docs/src/generated/memory-estimate-cpu.json
"""
import argparse, json, os, platform, subprocess, tempfile

p = argparse.ArgumentParser()
p.add_argument("--ssl", default="target/debug/ssl")
p.add_argument("--out", required=True)
p.add_argument("--steps", type=int, default=60)
a = p.parse_args()

def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()

rows = []
with tempfile.TemporaryDirectory() as tmp:
    for m in ["vision", "text", "speech"]:
        run = os.path.join(tmp, m)
        cmd = [a.ssl, f"pretrain-{m}", "--steps", str(a.steps), "--seeds", "1", "--labels-per-class", "10",
               "--eval", "linear", "--out", run]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = json.load(open(os.path.join(run, "report.json")))
        est = r["pretraining"]["memory_estimate_bytes"]
        peak = r["pretraining"]["peak_resident_bytes"]
        rows.append({
            "modality": m,
            "command": " ".join(["ssl"] + cmd[1:-2] + ["--out", "RUN"]),
            "estimate_bytes": est,
            "pretraining_peak_bytes": peak,
            "run_peak_bytes": r["memory"]["peak_resident_bytes"],
            "estimate_over_peak": round(est / peak, 3),
            "within_25_percent": abs(est / peak - 1) <= 0.25,
        })
record = {
    "what": "the memory check's estimate against the measured pretraining peak (VmHWM)",
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "machine": {"cpu": cpu(), "cores": os.cpu_count()},
    "command": "python3 bench/memory_estimate.py --ssl target/debug/ssl --out " + a.out,
    "rows": rows,
}
json.dump(record, open(a.out, "w"), indent=2)
print(json.dumps(rows, indent=2))
