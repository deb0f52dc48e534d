#!/usr/bin/env python3
"""Runs inside the VM (root, vkms + visl loaded): plays the same clip through each path and
records, per run, one JSON line in RESULTS/runs.jsonl.

Each path runs RUNS times plainly (CPU time, peak RSS and frames shown, from wait4 and the
players' own reports), once under `strace --seccomp-bpf` (DRM and V4L2 ioctls, framebuffers,
anonymous mappings of 2 MiB or more), once under `strace -c` (every syscall), and once watched
through the kernel's own view of the display (debugfs `dri/0/state`): the time from the process
start to the first decoded (NV12) picture on a plane, the same way for every path. The decoders'
floors run the same clip decoded and shown nowhere (GStreamer's fakesink, `vitrine decode`).
Idle: wake-ups a second of a compositor with nothing to show. Profile: vitrine's user-space CPU
sampled with perf, by function. Sound: the 1080p clip with an AAC track, played (plain runs only)
by vitrine and by GStreamer, each with its sound into ALSA's loopback card and without it.

ONLY (optional, comma-separated): the sections to run, of video, sound, idle, profile.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

RESULTS, VITRINE, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3])
ONLY = set((sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else "video,sound,idle,profile").split(","))
CLIPS = os.path.join(RESULTS, "clips")
OUT = open(os.path.join(RESULTS, "runs.jsonl"), "a")
FPS = 24
MIB2 = 2 * 1024 * 1024


def frames_in(clip):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
         "stream=nb_read_packets", "-of", "csv=p=0", clip], capture_output=True, text=True)
    return int(out.stdout.strip())


def gst_client(clip, sink, convert=False, sound=None):
    """A GStreamer pipeline decoding CLIP on visl into SINK, counting what it renders; with
    CONVERT, the pictures are converted to RGB in memory first (for sinks that take no NV12);
    with SOUND (an ALSA device), the clip's AAC track decoded by libav into alsasink too."""
    middle = ["videoconvert", "!"] if convert else []
    audio = ["d.audio_0", "!", "queue", "!", "aacparse", "!", "avdec_aac", "!", "audioconvert", "!", "audioresample", "!",
             "alsasink", f"device={sound}"] if sound else []
    return ["gst-launch-1.0", "-v", "filesrc", f"location={clip}", "!", "qtdemux", "name=d", "d.video_0", "!", "queue", "!",
            "h264parse", "!", "v4l2slh264dec", "!"] + middle + [
        "fpsdisplaysink", "text-overlay=false", "sync=true", f"video-sink={sink}"] + audio


def rendered(text):
    """The last 'rendered: N' fpsdisplaysink reported."""
    found = re.findall(r"rendered: (\d+)", text)
    return int(found[-1]) if found else None


def spawn(cmd, env=None, stdout=None, prefix=()):
    e = dict(os.environ)
    e.update(env or {})
    # A process group of its own: signals reach the program even when strace runs it (strace
    # detaches on SIGTERM and would leave the program running into the next measurement).
    return subprocess.Popen(list(prefix) + cmd, env=e, stdout=stdout, stderr=subprocess.STDOUT,
                            start_new_session=True)


def signal_group(p, sig):
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def wait(p, timeout):
    """wait4 with a deadline: (exit status, rusage); a process past it is killed."""
    deadline = time.time() + timeout
    while True:
        try:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        except ChildProcessError:
            return p.returncode, None
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return p.returncode, usage
        if time.time() > deadline:
            signal_group(p, signal.SIGKILL)
        time.sleep(0.05)


def cpu(usage):
    return (usage.ru_utime + usage.ru_stime) * 1000.0 if usage else 0.0


def user(usage):
    """User-space CPU only: under TCG, visl's decoding runs in the kernel (system time) of
    whoever queues the picture, the same work for every path."""
    return usage.ru_utime * 1000.0 if usage else 0.0


def path_vitrine(clip, tmp, prefix=(), sound=None):
    stats = os.path.join(tmp, "stats.json")
    config = os.path.join(tmp, "vitrine.toml")
    with open(config, "w") as f:
        f.write('[drm]\nmode = "1920x1080@60"\n[video]\nscale = "none"\n')
        if sound:
            f.write(f'[audio]\nenabled = true\ndevice = "{sound}"\n')
    log = open(os.path.join(tmp, "vitrine.log"), "w")
    p = spawn([VITRINE, "--backend", "drm", "--config", config, "--play", clip, "--exit-when-done",
               "--stats", stats], stdout=log, prefix=prefix)
    code, usage = wait(p, 300)
    report = json.load(open(stats)) if os.path.exists(stats) else {}
    return {"exit": code, "cpu_ms": cpu(usage), "user_ms": user(usage), "peak_rss_kb": usage.ru_maxrss if usage else None,
            "frames_shown": report.get("frames_presented"), "self_report": report}


def path_floor_gst(clip, tmp, prefix=()):
    """GStreamer decoding on visl into fakesink at the clip's rate: the decoder's floor."""
    out = os.path.join(tmp, "gst.out")
    with open(out, "w") as f:
        p = spawn(gst_client(clip, "fakesink"), stdout=f, prefix=prefix)
        code, usage = wait(p, 300)
    return {"exit": code, "cpu_ms": cpu(usage), "user_ms": user(usage), "peak_rss_kb": usage.ru_maxrss if usage else None,
            "frames_shown": rendered(open(out).read())}


def path_floor_vitrine(clip, tmp, prefix=()):
    """vitrine's own decoding path (reading thread, decoder, player) at the clip's rate, shown
    nowhere: `vitrine decode`."""
    out = os.path.join(tmp, "decode.json")
    with open(out, "w") as f:
        p = spawn([VITRINE, "decode", "--json", clip], stdout=f, prefix=prefix)
        code, usage = wait(p, 300)
    try:
        report = json.load(open(out))
    except (OSError, ValueError):
        report = {}
    return {"exit": code, "cpu_ms": cpu(usage), "user_ms": user(usage), "peak_rss_kb": usage.ru_maxrss if usage else None,
            "frames_shown": report.get("frames_presented"), "self_report": report}


def path_kmssink(clip, tmp, prefix=(), sound=None):
    out = os.path.join(tmp, "gst.out")
    with open(out, "w") as f:
        p = spawn(gst_client(clip, "kmssink driver-name=vkms force-modesetting=true", sound=sound), stdout=f, prefix=prefix)
        code, usage = wait(p, 300)
    text = open(out).read()
    result = {"exit": code, "cpu_ms": cpu(usage), "user_ms": user(usage), "peak_rss_kb": usage.ru_maxrss if usage else None,
              "frames_shown": rendered(text)}
    if code != 0:
        result["note"] = " | ".join(l for l in text.splitlines()[-40:] if "ERROR" in l)[:300] or f"exit {code}"
    return result


def traced_as(prefix, role):
    """The strace prefix writing to a trace file of its own for ROLE (one file per process tree)."""
    prefix = list(prefix)
    if "-o" in prefix:
        i = prefix.index("-o") + 1
        prefix[i] = f"{prefix[i]}.{role}"
    return prefix


def compositor_and_client(server_cmd, socket, clip, tmp, env, prefix=(), convert=False):
    """A compositor plus the waylandsink client: CPU of both, the client's rendered count."""
    runtime = os.environ["XDG_RUNTIME_DIR"]
    log = open(os.path.join(RESULTS, f"{socket}.log"), "w")
    server = spawn(server_cmd, env=env, stdout=log, prefix=traced_as(prefix, "server"))
    sock = os.path.join(runtime, socket)
    for _ in range(300):
        if os.path.exists(sock):
            break
        time.sleep(0.1)
    if not os.path.exists(sock):
        code, usage = wait(server, 1)
        return {"exit": code, "cpu_ms": None, "note": f"the compositor did not start (exit {code})"}
    out = os.path.join(RESULTS, f"{socket}-client.out")
    with open(out, "w") as f:
        client = spawn(gst_client(clip, "waylandsink", convert), env={"WAYLAND_DISPLAY": socket}, stdout=f,
                       prefix=traced_as(prefix, "client"))
        ccode, cusage = wait(client, 300)
    # The compositor itself (not strace) gets SIGTERM: strace's children, then strace.
    subprocess.run(["pkill", "-TERM", "-g", str(server.pid), "-f", server_cmd[0]])
    scode, susage = wait(server, 10)
    text = open(out).read()
    rss = [u.ru_maxrss for u in (cusage, susage) if u]
    result = {"exit": ccode, "cpu_ms": cpu(cusage) + cpu(susage), "user_ms": user(cusage) + user(susage),
              "peak_rss_kb": sum(rss) or None,
              "frames_shown": rendered(text)}
    if ccode != 0:
        tail = " | ".join(l for l in text.splitlines()[-40:] if "ERROR" in l or "not-negotiated" in l)[:300]
        result["note"] = f"the client failed (exit {ccode}): {tail or 'see client.out'}"
    return result


def weston_variants():
    """The weston set-ups to try, best first: weston 14 (bookworm-backports, unpacked by
    scripts/bench) with its GL renderer on softpipe, which takes NV12 dmabufs; weston 14 with
    pixman; Debian 12's weston 10 with pixman (direct launcher on a VT)."""
    out = []
    w14 = os.environ.get("BENCH_WESTON14")
    if w14 and os.path.exists(os.path.join(w14, "usr/bin/weston")):
        lib = os.path.join(w14, "usr/lib/x86_64-linux-gnu")
        env = {
            "LD_LIBRARY_PATH": f"{lib}:{lib}/weston",
            "WESTON_MODULE_MAP": ";".join(f"{m}={lib}/{d}/{m}" for d, m in [
                ("libweston-14", "drm-backend.so"), ("libweston-14", "gl-renderer.so"),
                ("weston", "kiosk-shell.so")]),
            "GALLIUM_DRIVER": "softpipe",
        }
        cmd = [os.path.join(w14, "usr/bin/weston"), "--backend=drm", "--shell=kiosk-shell.so",
               "--socket=bench-weston", "--idle-time=0"]
        out.append(("weston 14, GL renderer (softpipe)", cmd + ["--renderer=gl"], env))
        out.append(("weston 14, pixman renderer", cmd + ["--renderer=pixman"], env))
    out.append(("weston 10, pixman renderer", ["weston", "--backend=drm-backend.so", "--use-pixman", "--tty=2",
                                             "--socket=bench-weston", "--idle-time=0"], {}))
    return out


# The weston set-up and client pipeline chosen by the first run, with what was tried.
WESTON_CHOICE = None


def path_weston(clip, tmp, prefix=()):
    global WESTON_CHOICE
    if WESTON_CHOICE is None:
        tried = []
        for label, cmd, env in weston_variants():
            for convert in (False, True):
                r = compositor_and_client(cmd, "bench-weston", clip, tmp, env, convert=convert)
                how = f"{label}{' + videoconvert' if convert else ''}"
                if r.get("exit") == 0 and r.get("frames_shown"):
                    WESTON_CHOICE = (label, cmd, env, convert, tried)
                    break
                tried.append(f"{how}: {r.get('note') or 'exit ' + str(r.get('exit'))}")
            if WESTON_CHOICE:
                break
        if WESTON_CHOICE is None:
            return {"exit": 1, "cpu_ms": None, "note": "no weston set-up worked: " + "; ".join(tried)}
    label, cmd, env, convert, tried = WESTON_CHOICE
    r = compositor_and_client(cmd, "bench-weston", clip, tmp, env, prefix, convert=convert)
    r["note"] = f"{label}{', the client needs videoconvert (a CPU copy)' if convert else ''}" + (
        f"; did not work: {'; '.join(tried)}" if tried else "")
    return r


def path_vitrine_waylandsink(clip, tmp, prefix=()):
    config = os.path.join(tmp, "vitrine.toml")
    with open(config, "w") as f:
        f.write('[drm]\nmode = "1920x1080@60"\n')
    return compositor_and_client(
        [VITRINE, "--backend", "drm", "--config", config, "--socket", "bench-vitrine"],
        "bench-vitrine", clip, tmp, {}, prefix)


PATHS = {
    "vitrine": path_vitrine,
    "kmssink": path_kmssink,
    "weston_waylandsink": path_weston,
    "vitrine_waylandsink": path_vitrine_waylandsink,
    "floor_gst": path_floor_gst,
    "floor_vitrine": path_floor_vitrine,
}
# Paths whose pictures reach a plane as the decoder's own NV12 buffers (the first-picture probe
# looks for that); weston composites them.
SCANOUT = {"vitrine", "kmssink", "vitrine_waylandsink"}
DRI_STATE = "/sys/kernel/debug/dri/0/state"
# The sound rows: the same 1080p picture with a stereo AAC track, each player with its sound into
# the loopback card (whose other end nobody records: it plays at its own timer's rate all the
# same) and with its sound left out.
SOUND_CLIP = os.path.join(CLIPS, "1920x1080-aac.mp4")
SOUND_DEVICE = "hw:Loopback,0,0"
SOUND_PATHS = {
    "vitrine_sound": lambda clip, tmp: path_vitrine(clip, tmp, sound=SOUND_DEVICE),
    "vitrine_sound_off": path_vitrine,
    "kmssink_alsasink": lambda clip, tmp: path_kmssink(clip, tmp, sound=SOUND_DEVICE),
    "kmssink_sound_off": path_kmssink,
}


def nv12_on_a_plane():
    """Whether the display controller scans an NV12 framebuffer out now (the kernel's state)."""
    try:
        return "format=NV12" in open(DRI_STATE).read()
    except OSError:
        return False


def first_picture(name, clip):
    """Milliseconds from the path's start to the first decoded picture on a plane, as the
    kernel's atomic state shows it (looked at every 5 ms)."""
    if name not in SCANOUT:
        return {"first_picture_ms": None, "first_picture_note": "composited: no decoder buffer reaches a plane"}
    import threading
    seen = {}
    start = time.monotonic()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if nv12_on_a_plane():
                seen["at"] = time.monotonic()
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        PATHS[name](clip, tmp)
    stop.set()
    watcher.join()
    return {"first_picture_ms": (seen["at"] - start) * 1000.0 if "at" in seen else None}


def idle_wakeups(cmd, socket, env=None, seconds=10):
    """Wake-ups a second of every thread of a compositor showing nothing (its voluntary context
    switches, counted by the kernel), after it has settled."""
    runtime = os.environ["XDG_RUNTIME_DIR"]
    log = open(os.path.join(RESULTS, f"{socket}-idle.log"), "w")
    p = spawn(cmd, env=env, stdout=log)
    sock = os.path.join(runtime, socket)
    for _ in range(300):
        if os.path.exists(sock):
            break
        time.sleep(0.1)
    time.sleep(3)

    def switches():
        total = 0
        for tid in os.listdir(f"/proc/{p.pid}/task"):
            try:
                for line in open(f"/proc/{p.pid}/task/{tid}/status"):
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    try:
        before = switches()
        time.sleep(seconds)
        rate = (switches() - before) / seconds
    except OSError:
        rate = None
    signal_group(p, signal.SIGTERM)
    wait(p, 10)
    return rate


def profile_vitrine(clip):
    """vitrine's user-space CPU by function: perf samples (cpu-clock, user only) of one run."""
    perf = next((c for c in ("perf_6.1", "perf") if subprocess.run(["which", c], capture_output=True).returncode == 0), None)
    if perf is None:
        return {"profile": None, "profile_note": "perf is not installed"}
    # Not in RESULTS: perf cannot write its data to the 9p share ("Bad address"); tmpfs it is.
    data = os.path.join("/dev/shm", "vitrine.perf.data")
    with tempfile.TemporaryDirectory() as tmp:
        r = path_vitrine(clip, tmp, prefix=[perf, "record", "-q", "-e", "cpu-clock:u", "-F", "499", "-o", data, "--"])
    rep = subprocess.run([perf, "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol",
                          "--percent-limit", "0.7"], capture_output=True, text=True)
    rows = []
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if m:
            rows.append({"percent": float(m.group(1)), "dso": m.group(2), "symbol": m.group(3).strip()[:90]})
    return {"profile": rows[:20], "profile_exit": r.get("exit"),
            "profile_note": None if rows else (rep.stderr.strip()[-300:] or "no samples")}

DISPLAY = ("DRM_IOCTL_MODE_ATOMIC", "DRM_IOCTL_MODE_SETPLANE", "DRM_IOCTL_MODE_PAGE_FLIP", "DRM_IOCTL_MODE_SETCRTC")


def trace_lines(trace):
    """The lines of TRACE, or of its per-process-tree parts (TRACE.server, TRACE.client) merged
    in time order."""
    parts = [trace] if os.path.exists(trace) else [f"{trace}.{r}" for r in ("server", "client") if os.path.exists(f"{trace}.{r}")]
    lines = []
    for n, part in enumerate(parts):
        for line in open(part, errors="replace"):
            m = re.match(r"\s*(\d+)\s+(\d+\.\d+)\s+", line)
            if m:
                lines.append((float(m.group(2)), n, line))
    lines.sort(key=lambda x: (x[0], x[1]))
    return [l for _, _, l in lines]


def strace_counts(trace):
    """Syscalls, ioctls by family, framebuffers, big anonymous mappings, first picture time."""
    syscalls = drm = v4l2 = fbs = anon = anon_late = 0
    # After the first picture is on screen: the steady state (set-up and probing excluded).
    steady = {"syscalls": 0, "drm": 0, "v4l2": 0}
    start = first_decoded = first_frame = None
    unfinished = {}
    for line in trace_lines(trace):
        m = re.match(r"\s*(\d+)\s+(\d+\.\d+)\s+(.*)", line)
        if not m:
            continue
        pid, t, call = m.group(1), float(m.group(2)), m.group(3)
        if call.startswith("+++") or call.startswith("---"):
            continue
        # strace -f splits calls that block across threads: join the two halves.
        if call.endswith("<unfinished ...>"):
            unfinished[pid] = (t, call[: -len("<unfinished ...>")])
            continue
        if call.startswith("<..."):
            t0, head = unfinished.pop(pid, (t, ""))
            t, call = t0, head + call.split("resumed>", 1)[-1]
        start = start if start is not None else t
        syscalls += 1
        late = first_frame is not None
        steady["syscalls"] += late
        if "DRM_IOCTL_" in call:
            drm += 1
            steady["drm"] += late
            if "ADDFB" in call:
                fbs += 1
            if first_decoded is not None and first_frame is None and any(d in call for d in DISPLAY):
                first_frame = t
        elif "VIDIOC_" in call or "MEDIA_" in call:
            v4l2 += 1
            steady["v4l2"] += late
            if first_decoded is None and "VIDIOC_DQBUF" in call and "CAPTURE" in call and call.rstrip().endswith("= 0"):
                first_decoded = t
        mm = re.match(r"mmap\(NULL, (\d+), [^,]+, ([^,]+),", call)
        if mm and "MAP_ANONYMOUS" in mm.group(2) and int(mm.group(1)) >= MIB2:
            anon += 1
            if first_frame is not None:
                anon_late += 1
    return {"traced_calls": syscalls, "drm_ioctls": drm, "v4l2_ioctls": v4l2, "framebuffers_created": fbs,
            "anon_maps_2mb": anon, "anon_maps_2mb_after_first_frame": anon_late,
            "steady_syscalls": steady["syscalls"], "steady_drm_ioctls": steady["drm"], "steady_v4l2_ioctls": steady["v4l2"],
            "first_frame_ms_under_strace": (first_frame - start) * 1000.0 if first_frame and start else None}


def record(**fields):
    OUT.write(json.dumps(fields) + "\n")
    OUT.flush()


def syscall_total(summary):
    """Calls in the 'total' line of `strace -c` summaries (one file, or .server + .client)."""
    parts = [summary] if os.path.exists(summary) else [f"{summary}.{r}" for r in ("server", "client")]
    total = None
    for part in parts:
        if not os.path.exists(part):
            continue
        for line in open(part, errors="replace"):
            fields = line.split()
            if fields and fields[-1] == "total":
                numbers = [f for f in fields[:-1] if f.replace(".", "").isdigit()]
                # % time, seconds, usecs/call, calls[, errors]
                if len(numbers) >= 4:
                    total = (total or 0) + int(numbers[3])
    return total


def measure(name, clip):
    expected = frames_in(clip)
    size = os.path.basename(clip).split(".")[0]
    for run in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            r = PATHS[name](clip, tmp)
        record(path=name, size=size, run=run, kind="plain", frames_expected=expected, **r)
        print(name, size, run, r, flush=True)
    # ioctls and mappings: strace stops only at those calls (seccomp filter), so the path runs
    # close to its normal speed and shows close to its normal number of frames.
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(RESULTS, f"{name}-{size}.strace")
        r = PATHS[name](clip, tmp, prefix=["strace", "--seccomp-bpf", "-f", "-ttt", "-qq",
                                           "-e", "trace=ioctl,mmap", "-o", trace])
        counts = strace_counts(trace)
        record(path=name, size=size, kind="strace", frames_expected=expected, **r, **counts)
        print(name, size, "strace", counts, flush=True)
    # Every syscall, counted (`strace -c`): a run of its own, slower.
    with tempfile.TemporaryDirectory() as tmp:
        summary = os.path.join(RESULTS, f"{name}-{size}.syscalls")
        r = PATHS[name](clip, tmp, prefix=["strace", "-f", "-c", "-qq", "-o", summary])
        total = syscall_total(summary)
        record(path=name, size=size, kind="syscalls", frames_expected=expected, syscalls=total,
               frames_shown=r.get("frames_shown"))
        print(name, size, "syscalls", total, flush=True)


def measure_plain(name, run_path, clip):
    """RUNS plain runs of a path (CPU, RSS, frames shown), and its own report where it has one."""
    expected = frames_in(clip)
    for run in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            r = run_path(clip, tmp)
        record(path=name, size="sound", run=run, kind="plain", frames_expected=expected, **r)
        print(name, run, r, flush=True)


CLIP = os.path.join(CLIPS, "1920x1080.mp4")
if "video" in ONLY:
    for name in PATHS:
        measure(name, CLIP)
        probe = first_picture(name, CLIP)
        record(path=name, size="1920x1080", kind="first_picture", **probe)
        print(name, "first picture", probe, flush=True)
    # A second size, for vitrine alone.
    measure("vitrine", os.path.join(CLIPS, "1280x720.mp4"))
if "sound" in ONLY:
    subprocess.run(["modprobe", "snd-aloop", "pcm_substreams=1"])
    for name, run_path in SOUND_PATHS.items():
        measure_plain(name, run_path, SOUND_CLIP)


def measure_idle():
    """Compositors with nothing to show."""
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "vitrine.toml")
        open(config, "w").write("")
        rate = idle_wakeups([VITRINE, "--backend", "drm", "--config", config, "--socket", "bench-idle"], "bench-idle")
    record(path="vitrine", size="idle", kind="idle", wakeups_per_s=rate)
    print("vitrine idle", rate, flush=True)
    if WESTON_CHOICE:
        label, cmd, env, _, _ = WESTON_CHOICE
        cmd = [c if not c.startswith("--socket=") else "--socket=bench-weston-idle" for c in cmd]
        rate = idle_wakeups(cmd, "bench-weston-idle", env)
        record(path="weston_waylandsink", size="idle", kind="idle", wakeups_per_s=rate, note=label)
        print("weston idle", rate, flush=True)


if "idle" in ONLY:
    measure_idle()
if "profile" in ONLY:
    prof = profile_vitrine(CLIP)
    record(path="vitrine", size="1920x1080", kind="profile", **prof)
    print("profile", prof, flush=True)
