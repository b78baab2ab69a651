"""Inside a soaked process: tracemalloc snapshots and object counts, for finding what grows.

``bench/soak.py --probe`` starts ``poll`` and ``consume`` with a
``sitecustomize`` on their ``PYTHONPATH`` that calls ``install()`` when
``SOAK_PROBE`` names a directory; the product's code is untouched.
A daemon thread then, every ``SOAK_PROBE_EVERY`` seconds, appends
one JSON line (traced bytes, tracemalloc's own overhead, live objects, the
commonest types) to ``<NAME>-<pid>.jsonl``; it dumps a snapshot at
``SOAK_PROBE_MID_AT`` (Unix seconds: 40 % into the soak, before the second
half whose slope is judged) to ``<NAME>-<pid>-mid.snap`` and another when the
harness asks for it at the end (``request_last``) to ``<NAME>-<pid>-last.snap``.
``growth()`` compares the two, by source line (by call path with
``SOAK_PROBE_FRAMES`` > 1), after the run.

tracemalloc costs memory per live block, so a probed run's resident sizes are
higher than an unprobed one's; they must still be flat.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

DIRECTORY = "SOAK_PROBE"
NAME = "SOAK_PROBE_NAME"
EVERY = "SOAK_PROBE_EVERY"
MID_AT = "SOAK_PROBE_MID_AT"
FRAMES = "SOAK_PROBE_FRAMES"
#: The sitecustomize module the soak writes for probed processes.
SITECUSTOMIZE = f"""import os
if os.environ.get("{DIRECTORY}"):
    import bench.soak_probe
    bench.soak_probe.install()
"""
TOP_TYPES = 40
#: The file whose appearance asks every probed process for its last snapshot.
TRIGGER = "snapshot-now"
ROOT = str(Path(__file__).resolve().parents[1])
#: Noise in a snapshot diff: the probe's own work and the import machinery.
IGNORED = ("<frozen importlib._bootstrap>", "<unknown>", tracemalloc.__file__, __file__)


def install() -> None:
    """Start tracing and the probe thread (called from ``sitecustomize``)."""
    directory = Path(os.environ[DIRECTORY])
    name = os.environ.get(NAME, "process")
    every = float(os.environ.get(EVERY, "30"))
    mid_at = float(os.environ.get(MID_AT, "inf"))
    tracemalloc.start(int(os.environ.get(FRAMES, "1")))
    threading.Thread(
        target=_probe,
        args=(directory, f"{name}-{os.getpid()}", every, mid_at),
        name="soak-probe",
        daemon=True,
    ).start()


def _probe(directory: Path, stem: str, every: float, mid_at: float) -> None:
    mid_saved = last_saved = False
    next_line = time.monotonic() + every
    while not last_saved:
        time.sleep(1.0)
        if time.monotonic() >= next_line:
            next_line += every
            _count(directory / f"{stem}.jsonl")
        if not mid_saved and time.time() >= mid_at:
            _count(directory / f"{stem}.jsonl")
            tracemalloc.take_snapshot().dump(str(directory / f"{stem}-mid.snap"))
            mid_saved = True
        if mid_saved and (directory / TRIGGER).exists():
            _count(directory / f"{stem}.jsonl")
            partial = directory / f"{stem}-last.snap.part"
            tracemalloc.take_snapshot().dump(str(partial))
            partial.replace(directory / f"{stem}-last.snap")
            last_saved = True


def _count(lines: Path) -> None:
    """One line: traced bytes, tracemalloc's overhead, live objects by type."""
    types = Counter(type(o).__qualname__ for o in gc.get_objects())
    current, peak = tracemalloc.get_traced_memory()
    line = {
        "t": time.time(),
        "traced_mb": current / 2**20,
        "peak_mb": peak / 2**20,
        "overhead_mb": tracemalloc.get_tracemalloc_memory() / 2**20,
        "objects": sum(types.values()),
        "types": dict(types.most_common(TOP_TYPES)),
    }
    with lines.open("a") as out:
        out.write(json.dumps(line) + "\n")


def request_last(directory: Path, stems: list[str], timeout_s: float = 60.0) -> None:
    """Ask every probed process for its last snapshot; wait until they are written."""
    (directory / TRIGGER).touch()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(
        (directory / f"{stem}-last.snap").exists() for stem in stems
    ):
        time.sleep(0.5)


def growth(directory: Path, top: int = 10) -> list[str]:
    """Per probed process life: what grew from the half-way snapshot to the last.

    The source lines whose live memory grew most, and the object types whose
    count grew most (from the probe's lines at the same two moments).
    """
    report: list[str] = []
    for mid in sorted(directory.glob("*-mid.snap")):
        stem = mid.name.removesuffix("-mid.snap")
        last = directory / f"{stem}-last.snap"
        if not last.exists():
            continue
        filters = [tracemalloc.Filter(False, pattern) for pattern in IGNORED]
        before = tracemalloc.Snapshot.load(str(mid)).filter_traces(filters)
        after = tracemalloc.Snapshot.load(str(last)).filter_traces(filters)
        deep = after.traceback_limit > 1
        diff = sorted(
            after.compare_to(before, "traceback" if deep else "lineno"),
            key=lambda s: s.size_diff,
            reverse=True,
        )
        total = sum(stat.size_diff for stat in diff)
        report.append(
            f"{stem}: traced memory {total / 1024:+,.0f} KiB from the first snapshot to the "
            "end; the lines that grew most:"
        )
        for stat in diff[: top // 2 if deep else top]:
            frame = stat.traceback[-1]  # frames run from the oldest to the newest
            report.append(
                f"  {stat.size_diff / 1024:+9,.1f} KiB {stat.count_diff:+7,d} blocks "
                f"{_short(frame.filename)}:{frame.lineno}"
            )
            if deep:  # the calls that led there, the nearest first
                report += [
                    f"        from {_short(f.filename)}:{f.lineno}"
                    for f in reversed(stat.traceback[:-1])
                    if "asyncio/" not in f.filename and "typer/" not in f.filename
                ]
        report += _type_growth(directory / f"{stem}.jsonl", mid.stat().st_mtime, top)
    return report


def _type_growth(lines_path: Path, mid_at: float, top: int) -> list[str]:
    if not lines_path.exists():
        return []
    lines = [json.loads(x) for x in lines_path.read_text().splitlines() if x]
    before = next((x for x in lines if x["t"] >= mid_at - 10), None)
    if before is None or before is lines[-1]:
        return []
    after = lines[-1]
    grew = Counter(after["types"])
    grew.subtract(before["types"])
    shown = ", ".join(f"{name} {n:+,d}" for name, n in grew.most_common(top) if n > 0)
    counts = f"objects {before['objects']:,} -> {after['objects']:,}"
    return [f"  {counts}; types that grew most: {shown or 'none'}"]


def _short(filename: str) -> str:
    for marker in (f"{ROOT}/", "/site-packages/", "/lib/python"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename
