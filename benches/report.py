#!/usr/bin/env python3
"""Turns the benchmark's runs.jsonl into report.json, report.md and report.png (OUT_DIR).

Plain runs give CPU time, peak RSS and frames shown (median, min-max); the strace run gives the
syscall and ioctl counts, framebuffers, big anonymous mappings and the time to the first picture.
Per-frame figures divide by the frames each path showed.
"""

import json
import os
import statistics
import sys

runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out_dir = sys.argv[2]
os.makedirs(out_dir, exist_ok=True)
ORDER = ["vitrine", "kmssink", "weston_waylandsink", "vitrine_waylandsink"]
FLOORS = ["floor_vitrine", "floor_gst"]
LABELS = {
    "vitrine": "vitrine --play (V4L2 dmabuf on a plane)",
    "kmssink": "gst v4l2slh264dec ! kmssink (no compositor)",
    "weston_waylandsink": "weston + gst waylandsink",
    "vitrine_waylandsink": "vitrine + gst waylandsink",
    "floor_vitrine": "floor: vitrine decode (shown nowhere)",
    "floor_gst": "floor: gst v4l2slh264dec ! fakesink sync=true",
}
# Which decode-only floor each path's display cost is measured above.
FLOOR_OF = {"vitrine": "floor_vitrine", "kmssink": "floor_gst", "weston_waylandsink": "floor_gst",
            "vitrine_waylandsink": "floor_gst"}


def med(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def summarize(path, size):
    plain = [r for r in runs if r["path"] == path and r["size"] == size and r["kind"] == "plain"]
    traced = next((r for r in runs if r["path"] == path and r["size"] == size and r["kind"] == "strace"), {})
    counted = next((r for r in runs if r["path"] == path and r["size"] == size and r["kind"] == "syscalls"), {})
    probe = next((r for r in runs if r["path"] == path and r["size"] == size and r["kind"] == "first_picture"), {})
    idle = next((r for r in runs if r["path"] == path and r["kind"] == "idle"), {})
    if not plain:
        return None
    expected = plain[0]["frames_expected"]
    ok = [r for r in plain if r.get("exit") == 0 and r.get("frames_shown")]
    note = next((r.get("note") for r in plain if r.get("note")), None)
    if not ok:
        return {"cpu_ms_per_frame": None, "syscalls_per_frame": None, "drm_ioctls_per_frame": None,
                "v4l2_ioctls_per_frame": None, "framebuffers_created": None, "anon_maps_2mb": None,
                "peak_rss_kb": None, "frames_shown": None, "frames_expected": expected, "first_frame_ms": None,
                "note": note or f"did not run (exit {plain[0].get('exit')})"}
    per_frame = [r["cpu_ms"] / r["frames_shown"] for r in ok]
    cpu, cpu_min, cpu_max = med(per_frame)
    user = med([r["user_ms"] / r["frames_shown"] for r in ok if r.get("user_ms") is not None])[0]
    shown, shown_min, shown_max = med([r["frames_shown"] for r in ok])
    rss = med([r.get("peak_rss_kb") for r in ok])[0]
    tshown = traced.get("frames_shown") or shown

    def per(key, frames=None):
        v = traced.get(key)
        frames = tshown if frames is None else frames
        return v / frames if v is not None and frames else None

    return {
        "cpu_ms_per_frame": cpu, "cpu_ms_per_frame_range": [cpu_min, cpu_max], "user_ms_per_frame": user,
        # Every syscall of the path per picture of the clip (the strace -c run is slow enough to
        # make players drop pictures they still decoded).
        "syscalls_per_frame": counted["syscalls"] / expected if counted.get("syscalls") else None,
        "drm_ioctls_per_frame": per("drm_ioctls"),
        # After the first picture on screen: set-up and probing excluded.
        "steady_drm_ioctls_per_frame": per("steady_drm_ioctls", (tshown or 1) - 1),
        "v4l2_ioctls_per_frame": per("v4l2_ioctls", expected), "framebuffers_created": traced.get("framebuffers_created"),
        "anon_maps_2mb": traced.get("anon_maps_2mb"),
        "anon_maps_2mb_after_first_frame": traced.get("anon_maps_2mb_after_first_frame"),
        "peak_rss_kb": rss, "frames_shown": shown, "frames_shown_range": [shown_min, shown_max],
        # Counts are per frame shown in the strace run itself (strace slows every path down).
        "frames_shown_under_strace": tshown,
        "frames_expected": expected,
        # vitrine reports it itself (player start to first flip); the peers have no such probe.
        "first_frame_ms": med([(r.get("self_report") or {}).get("first_frame_ms") for r in ok])[0],
        "first_frame_ms_under_strace": traced.get("first_frame_ms_under_strace"), "runs": len(ok),
        # Process start to the first decoded picture on a plane, from the kernel's atomic state.
        "first_picture_ms": probe.get("first_picture_ms"), "first_picture_note": probe.get("first_picture_note"),
        # vitrine's loop thread: wake-ups per picture presented (its own report).
        "loop_wakeups_per_frame": med([(r.get("self_report") or {}).get("loop_wakeups_per_frame") for r in ok])[0],
        "idle_wakeups_per_s": idle.get("wakeups_per_s"),
        "note": note,
    }


report = {"paths": {}, "second_size": {}, "floors": {}}
for p in ORDER:
    report["paths"][p] = summarize(p, "1920x1080")
for p in FLOORS:
    report["floors"][p] = summarize(p, "1920x1080")
for p in ORDER:
    r, f = report["paths"][p], report["floors"].get(FLOOR_OF[p])
    if r and f and r.get("cpu_ms_per_frame") is not None and f.get("cpu_ms_per_frame") is not None:
        r["display_cpu_ms_per_frame"] = r["cpu_ms_per_frame"] - f["cpu_ms_per_frame"]
        r["display_user_ms_per_frame"] = (r["user_ms_per_frame"] or 0) - (f["user_ms_per_frame"] or 0)
profile = next((r for r in runs if r["kind"] == "profile"), {})
report["profile"] = profile.get("profile")
report["profile_note"] = profile.get("profile_note")
report["second_size"]["vitrine_1280x720"] = summarize("vitrine", "1280x720")

# The sound rows: CPU per second of playback of the clip with an AAC track, each player with its
# sound and without; the cost of sound is the difference of the medians.
SOUND = {"vitrine_sound": "vitrine --play, sound into ALSA (symphonia AAC, own thread)",
         "vitrine_sound_off": "vitrine --play, the same clip, [audio] off",
         "kmssink_alsasink": "gst … ! kmssink, audio avdec_aac ! alsasink",
         "kmssink_sound_off": "gst … ! kmssink, the same clip, audio not linked"}
SOUND_PAIRS = [("vitrine", "vitrine_sound", "vitrine_sound_off"), ("gst", "kmssink_alsasink", "kmssink_sound_off")]
FPS = 24


def sound_summary(path):
    plain = [r for r in runs if r["path"] == path and r["size"] == "sound" and r["kind"] == "plain"]
    if not plain:
        return None
    ok = [r for r in plain if r.get("exit") == 0 and r.get("frames_shown")]
    if not ok:
        return {"cpu_ms_per_s": None, "note": next((r.get("note") for r in plain if r.get("note")), None)
                or f"did not run (exit {plain[0].get('exit')})", "frames_expected": plain[0]["frames_expected"]}
    seconds = plain[0]["frames_expected"] / FPS
    cpu, lo, hi = med([r["cpu_ms"] / seconds for r in ok])
    reports = [r.get("self_report") or {} for r in ok]
    return {"cpu_ms_per_s": cpu, "cpu_ms_per_s_range": [lo, hi],
            "user_ms_per_s": med([r["user_ms"] / seconds for r in ok])[0],
            "frames_shown": med([r["frames_shown"] for r in ok])[0], "frames_expected": plain[0]["frames_expected"],
            "sound_frames_written": med([s.get("audio_frames_written") for s in reports])[0],
            "audio_underruns": max((s.get("audio_underruns") or 0 for s in reports), default=None)
            if any("audio_underruns" in s for s in reports) else None,
            "av_offset_ms_p99": med([s.get("av_offset_ms_p99") for s in reports])[0],
            "peak_rss_kb": med([r.get("peak_rss_kb") for r in ok])[0], "runs": len(ok)}


report["sound"] = {p: sound_summary(p) for p in SOUND}
for who, on, off in SOUND_PAIRS:
    a, b = report["sound"].get(on), report["sound"].get(off)
    if a and b and a.get("cpu_ms_per_s") is not None and b.get("cpu_ms_per_s") is not None:
        a["sound_cpu_ms_per_s"] = a["cpu_ms_per_s"] - b["cpu_ms_per_s"]
        a["sound_user_ms_per_s"] = a["user_ms_per_s"] - b["user_ms_per_s"]
json.dump(report, open(os.path.join(out_dir, "report.json"), "w"), indent=2)


def fmt(v, digits=1):
    return "n/a" if v is None else f"{v:.{digits}f}"


rows = ["| path | CPU ms/frame (median, min–max) | user-space ms/frame | above its floor (user) | syscalls/picture | "
        "DRM ioctls/frame (steady) | V4L2 ioctls/picture | loop wake-ups/picture | framebuffers | "
        "anon maps ≥2 MiB (after 1st frame) | peak RSS MiB | frames shown/expected (under strace) | "
        "first picture on a plane, ms | idle wake-ups/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
items = [(p, report["paths"][p]) for p in ORDER] + [(p, report["floors"][p]) for p in FLOORS] + \
    [("vitrine 1280x720", report["second_size"]["vitrine_1280x720"])]
for name, r in items:
    if r is None:
        continue
    label = LABELS.get(name, name)
    if r["cpu_ms_per_frame"] is None:
        rows.append(f"| {label} | could not run: {r['note']} | | | | | | | | | | 0/{r['frames_expected']} | | |")
        continue
    if r.get("note"):
        label = f"{label} ({r['note']})"
    lo, hi = r["cpu_ms_per_frame_range"]
    above = r.get("display_cpu_ms_per_frame")
    first = fmt(r.get("first_picture_ms"), 0) if r.get("first_picture_ms") is not None else (
        "n/a" + (f" ({r['first_picture_note']})" if r.get("first_picture_note") else ""))
    rows.append(
        f"| {label} | {fmt(r['cpu_ms_per_frame'])} ({fmt(lo)}–{fmt(hi)}) | {fmt(r['user_ms_per_frame'])} | "
        f"{fmt(above)} ({fmt(r.get('display_user_ms_per_frame'))}) | "
        f"{fmt(r['syscalls_per_frame'])} | "
        f"{fmt(r['drm_ioctls_per_frame'], 2)} ({fmt(r['steady_drm_ioctls_per_frame'], 2)}) | "
        f"{fmt(r['v4l2_ioctls_per_frame'])} | {fmt(r.get('loop_wakeups_per_frame'), 2)} | {r['framebuffers_created']} | "
        f"{r['anon_maps_2mb']} ({r['anon_maps_2mb_after_first_frame']}) | {fmt((r['peak_rss_kb'] or 0) / 1024)} | "
        f"{fmt(r['frames_shown'], 0)}/{r['frames_expected']} ({r['frames_shown_under_strace']}) | "
        f"{first} | {fmt(r.get('idle_wakeups_per_s'), 1)} |")

ratios = []
v = report["paths"]["vitrine"]
for peer in ORDER[1:]:
    r = report["paths"][peer]
    if v and r and v["cpu_ms_per_frame"] and r["cpu_ms_per_frame"]:
        ratios.append(f"- CPU per frame, vitrine / {LABELS[peer]}: **{v['cpu_ms_per_frame'] / r['cpu_ms_per_frame']:.2f}×**"
                      + (f" (user space only: {v['user_ms_per_frame'] / r['user_ms_per_frame']:.2f}×)"
                         if v.get("user_ms_per_frame") and r.get("user_ms_per_frame") else ""))
        if v["syscalls_per_frame"] and r["syscalls_per_frame"]:
            ratios.append(f"  syscalls per frame: {v['syscalls_per_frame'] / r['syscalls_per_frame']:.2f}×")
    elif r:
        ratios.append(f"- {LABELS[peer]}: no ratio ({r.get('note') or 'did not run'})")


def ratio(a, b):
    return a / b if a is not None and b else None


def verdict(value, limit, below=True):
    if value is None:
        return "not measured"
    return "yes" if (value <= limit if below else value >= limit) else "no"


k = report["paths"].get("kmssink") or {}
targets = []
if v:
    checks = [
        ("syscalls per picture ≤ 0.5× kmssink", ratio(v.get("syscalls_per_frame"), k.get("syscalls_per_frame")), 0.5, "×"),
        ("user CPU per picture ≤ 0.5× kmssink", ratio(v.get("user_ms_per_frame"), k.get("user_ms_per_frame")), 0.5, "×"),
        ("loop wake-ups per picture ≤ 2", v.get("loop_wakeups_per_frame"), 2.0, ""),
        ("DRM ioctls per frame (steady) ≤ 1.05", v.get("steady_drm_ioctls_per_frame"), 1.05, ""),
        ("first picture on a plane ≤ 0.5× kmssink's", ratio(v.get("first_picture_ms"), k.get("first_picture_ms")), 0.5, "×"),
    ]
    targets = ["| target | vitrine | met |", "|---|---|---|"]
    for what, value, limit, unit in checks:
        targets.append(f"| {what} | {fmt(value, 2)}{unit} | {verdict(value, limit)} |")

profile_rows = []
if report.get("profile"):
    profile_rows = ["| user CPU % | where | function |", "|---|---|---|"]
    profile_rows += [f"| {p['percent']:.1f} | {p['dso']} | `{p['symbol']}` |" for p in report["profile"]]
else:
    profile_rows = [f"No profile: {report.get('profile_note') or 'not run'}."]

md = ["# vitrine video benchmark (VM: visl + vkms under TCG, 1920x1080 H.264, 24 fps)", "",
      "CPU is user+system time of every process of the path (wait4) per frame shown, median of the",
      "plain runs. Under TCG, visl makes each picture inside the ioctl that queues it (system time of",
      "the caller), the same work for every path: the user-space column leaves it out, and the floors",
      "(the same clip decoded at its rate and shown nowhere) say what decoding alone costs; 'above its",
      "floor' is the display path's own cost (vitrine against `vitrine decode`, the GStreamer paths",
      "against fakesink).",
      "ioctls and mappings come from one run under `strace --seccomp-bpf -e trace=ioctl,mmap`: DRM",
      "ioctls per frame shown in that run (its count is in the last column's brackets; in brackets,",
      "steady state: after the first picture on screen), V4L2 ioctls per picture of the clip (every",
      "picture is decoded, shown or not). Syscalls: one run under `strace -c`, per picture of the clip.",
      "strace slows the paths down: they show fewer frames under it. Loop wake-ups: voluntary context",
      "switches of vitrine's loop thread per picture presented (its own report; the peers render on",
      "threads of their own). First picture: from the process start until the kernel's atomic state",
      "(debugfs) shows an NV12 framebuffer on a plane, looked at every 5 ms, the same for every path",
      "that scans decoded pictures out. Idle: wake-ups a second of every thread of a compositor that",
      "has nothing to show.", ""] + rows + ["", "Ratios:"] + ratios + ["", "Targets:", ""] + targets + \
     ["", "vitrine's user-space CPU by function (perf, cpu-clock samples of one run):", ""] + profile_rows + [""]
sound_rows = []
if any(report["sound"].values()):
    sound_rows = ["Sound: the 1080p clip with a stereo 48 kHz AAC-LC track (128 kb/s), into ALSA's loopback card. CPU per",
                  "second of playback (user+system of every thread, median of the plain runs); the cost of sound is",
                  "the difference from the same player on the same clip without its sound.", "",
                  "| path | CPU ms/s (median, min–max) | user ms/s | cost of sound: ms/s (user) | frames shown/expected | "
                  "sound frames written | underruns | A/V offset p99 ms | peak RSS MiB |",
                  "|---|---|---|---|---|---|---|---|---|"]
    for name, label in SOUND.items():
        r = report["sound"].get(name)
        if r is None:
            continue
        if r["cpu_ms_per_s"] is None:
            sound_rows.append(f"| {label} | could not run: {r['note']} | | | 0/{r['frames_expected']} | | | | |")
            continue
        lo, hi = r["cpu_ms_per_s_range"]
        cost = f"{fmt(r['sound_cpu_ms_per_s'])} ({fmt(r['sound_user_ms_per_s'])})" if "sound_cpu_ms_per_s" in r else ""
        sound_rows.append(
            f"| {label} | {fmt(r['cpu_ms_per_s'])} ({fmt(lo)}–{fmt(hi)}) | {fmt(r['user_ms_per_s'])} | {cost} | "
            f"{fmt(r['frames_shown'], 0)}/{r['frames_expected']} | {fmt(r['sound_frames_written'], 0)} | "
            f"{'n/a' if r['audio_underruns'] is None else r['audio_underruns']} | {fmt(r['av_offset_ms_p99'])} | "
            f"{fmt((r['peak_rss_kb'] or 0) / 1024)} |")
    md += sound_rows + [""]
md += ["report.png: CPU ms per frame shown (left) and syscalls per picture (right) for each path.", ""]
open(os.path.join(out_dir, "report.md"), "w").write("\n".join(md))


# report.png: CPU ms per frame and syscalls per frame, one bar per path, values on the bars.
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

names = [p for p in ORDER if report["paths"].get(p)]
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, key, title in [(axes[0], "cpu_ms_per_frame", "CPU ms per frame shown (median)"),
                       (axes[1], "syscalls_per_frame", "syscalls per picture of the clip")]:
    values = [report["paths"][p].get(key) or 0 for p in names]
    bars = ax.bar(range(len(names)), values, color=["#2878c8", "#dc7828", "#787878", "#3caa5a"][: len(names)])
    for b, p, v in zip(bars, names, values):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), "n/a" if not v else f"{v:.1f}",
                ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([LABELS[p].replace(" (", "\n(").replace(" + ", "\n+ ") for p in names], fontsize=8)
    ax.set_title(title)
fig.suptitle("vitrine video benchmark: 1920x1080 H.264 on visl + vkms (VM, TCG)")
fig.tight_layout()
fig.savefig(os.path.join(out_dir, "report.png"), dpi=100)
print("\n".join(md))
