"""The GPU suite (issue 32): every GPU figure the project still owes, in one command.

On a lent device (the ``device`` tool's machine; see bench/RESULTS.md, "GPU"), from the
repository root, with the wheels below in ``.whl`` (carried: ``carry: [".whl"]``)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \\
        PYTHONUNBUFFERED=1 python3 bench/gpu_suite.py --out "$OUT"

(one line in the ``device`` tool's ``command``; ``timeout_s`` 560: the default ``--budget-s``
400 plus start-up and the section in flight when the budget runs out)

Here, on any CPU (what CI runs, through tests/test_gpu_suite.py)::

    .venv/bin/python bench/gpu_suite.py --smoke --out /tmp/suite

What it needs. On the device: PyTorch with CUDA (there: torch 2.11, transformers 5.17,
safetensors, huggingface_hub, tokenizers, numpy, pillow, opencv-python-headless, tqdm,
scikit-image). Missing there, carried as wheels: ``diffusers`` (every keyframe engine) and
``av`` (PyAV: stage 2 stores motion frames and stage 4 encodes through it). Nothing can be
fetched on the device, so fetch them here, once, into an ignored folder of the repository::

    mkdir -p .git/info && echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl diffusers==0.42.1 av==18.1.1

(42 MB together; diffusers' other needs are all on the device, and ``importlib_metadata`` is
only imported on Python < 3.8.) The suite installs nothing itself and downloads nothing: every
model is built from the real configurations in bench/gpu_suite_configs.json with seeded random
weights (a forward pass costs the same whatever the weights are). It writes only under
``--out``: ``gpu_suite.json`` (every figure), ``gpu_suite.md`` (the same as tables),
``gpu_suite.log``, and a ``work/`` folder (weights, run folders, every cache it redirects:
torch inductor, triton, Hugging Face, CUDA's JIT, temporary files) that it deletes at the end
(``--keep-work`` keeps it). No Python bytecode is written.

Sections (``--only NAME``, repeatable, runs some; each has a share of ``--budget-s``, default
400 s on a GPU; a measurement that would not fit the time left is recorded as skipped with the
reason, and the JSON and tables are rewritten after every section):

1. ``upscale``: Real-ESRGAN's four networks (RRDBNet x4plus, x2plus; SRVGG general-x4v3,
   animevideov3) through the engine's own wrapper (:class:`super_resolution.realesrgan.Upscaler`),
   1280x720 in, on device-resident batches: fp16, bf16 and fp32 (fp32 convolutions use cuDNN's
   default TF32), batch 1, 2, 4, 8; channels_last and ``torch.compile`` at the best fp16 batch.
   Frames per second, FLOP/s (counted by torch's FlopCounterMode on the architecture on the meta
   device) and its fraction of the bf16 matrix peak measured at the start of the run. Then the
   engine end to end (:meth:`RealESRGANEngine.upscale_batch`: numpy in, 2560x1440 numpy out, the
   host copies and the Lanczos/area resize included; for x4plus that is the "x4 then down to 2K").
2. ``film``: our FILM network through the engine's runner (padding, dtype, clamp), 1280x720 and
   2560x1440, fp16/bf16/fp32, batches of 1, 4, 8 time steps (each frame a whole forward pass, as
   ``bisect`` runs it); then the engine end to end over one 2-second segment at 24 fps (47 eased
   times), ``bisect`` and ``exact``.
3. ``keyframes``: seconds per in-between at 1280x720, fp16, SDPA attention, no slicing, each
   engine's own steps: Kandinsky 2.2 (ViT-bigG image encoder + decoder), SD 2.1 unCLIP and the
   SD 1.5 latent walk, through the engines' ``inbetweens``. Prompt walks (SD 1.5, 512x512, 25
   steps, guided): batch 1 through the engine's ``render``; batches 4 and 8 through this
   script's :func:`render_batched`, the engine's loop with the in-betweens stacked in one UNet
   call (no engine has that yet: an emulation, checked against ``render``). Video init (img2img,
   strength 0.45) the same way, and one outpainted zoom level (SD 2 inpainting, 512x512) through
   :func:`diffusion_models.zoom.outpaint_level`. Interrogation: BLIP-large + CLIP ViT-L/14
   saved and loaded through :class:`pipeline.interrogate.Models`, seconds per image and
   peak GPU memory (clip-interrogator: about 6.3 GB).
4. ``walk``: three images, S=2, I=2 s, F=1 s, 30 fps, 1280x720 -> 2560x1440 through the
   stages' own ``run(config)``: ours (Kandinsky, FILM ``bisect`` at the timeline's eased times,
   x2plus on unique frames, holds not upscaled, the encode) against the same stages configured
   as ArtWalks runs: FILM segments of 2^k + 1 frames, k = int(log2(I * fps - 1)) as its
   generate_videos.py computes (set through ``--sec_interpolation 2^k / fps``, linear easing,
   so ``bisect`` makes FILM's recursive midpoints); x4plus then down to 2K; every video frame
   upscaled, the holds and the keyframes that its joins repeat included (our stage 3 upscales
   unique frames only, so those extra frames are timed through the same engine, batch for
   batch: an emulation). Stage 1 is run once and counted on both sides. The ratio is of the
   GPU stages' seconds (1-3); the encode runs on the CPU and is reported apart.

Timing: CUDA events around device-only work, ``torch.cuda.synchronize`` + a host clock around
anything that returns to the host; warm-up calls first (diffusion loops warm up with a 1-2 step
copy of the engine on the same pipelines); the median of several calls; peak memory by
``torch.cuda.max_memory_allocated`` after a reset. ``--smoke`` runs every code path on tiny
models (tests/tiny_models.py and the "smoke" configs) on the CPU, one torch thread (tiny ops on a
shared CPU spend most of their time in OpenMP barriers otherwise), in about 15 s on 2 cores;
``torch.compile`` runs there with the ``eager`` backend (``--compile-backend``), and anything
unavailable is recorded as "unavailable: reason".
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "gpu_suite_configs.json"
SECTIONS = ("upscale", "film", "keyframes", "walk")  # as reported
RUN_ORDER = ("upscale", "film", "walk", "keyframes")  # as run: the walk reuses nothing later, keyframes can be cut
SHARES = {"upscale": 0.30, "film": 0.12, "walk": 0.26, "keyframes": 0.32}
VERSION = 1

log = logging.getLogger("gpu_suite")

SR_SLUG = {"RealESRGAN_x4plus": "x4plus", "RealESRGAN_x2plus": "x2plus", "realesr-general-x4v3": "general_x4v3",
           "realesr-animevideov3": "animevideov3"}  # file names: a 'realesr-general-x4v3' name asks for a wdn file
ANCHORS = {
    "upscale": "x4plus ~33 TFLOP per 720p frame (~42 ms at an H100's bf16 peak), x2plus a quarter; Real-ESRGAN's "
               "docs: animevideov3 at 1080p, 10 fps on a V100",
    "film": "~3.9 TFLOP per 720p frame (~5 ms at peak); ArtWalks quotes about 2 minutes of FILM per pair",
    "keyframes": "ArtWalks: about 10 s per pair; stable-diffusion-videos' users: 26-40 s per batch on an A10 (its "
                 "issue 190); clip-interrogator: about 6.3 GB of VRAM; seed 003: about 30 s per outpaint",
    "walk": "goal: ours at most 1/5 of ArtWalks' GPU-seconds",
}


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Sizes:
    """What each section runs at: the real sizes, or the smoke's tiny ones."""

    up_in: tuple[int, int]
    up_target: str
    up_batches: tuple[int, ...]
    film_sizes: tuple[tuple[int, int], ...]
    film_batches: tuple[int, ...]
    film_segment: int  # frame intervals of the engine rows' segment
    kf_size: tuple[int, int]
    kf_steps: int | None  # None: each engine's own default
    prompt_size: int
    prompt_steps: int
    prompt_batches: tuple[int, ...]
    prompt_frames: int  # frames timed per batch size
    outpaint_size: int
    walk_size: tuple[int, int]
    walk_fps: float
    walk_target: str
    walk_steps: int | None
    caption_length: int
    peak_n: int
    min_reps: int
    max_reps: int
    target_s: float
    diffusion_dtype: str


FULL = Sizes(up_in=(1280, 720), up_target="2k", up_batches=(1, 2, 4, 8), film_sizes=((1280, 720), (2560, 1440)),
             film_batches=(1, 4, 8), film_segment=48, kf_size=(1280, 720), kf_steps=None, prompt_size=512,
             prompt_steps=25, prompt_batches=(1, 4, 8), prompt_frames=8, outpaint_size=512, walk_size=(1280, 720),
             walk_fps=30.0, walk_target="2k", walk_steps=None, caption_length=32, peak_n=8192, min_reps=3,
             max_reps=20, target_s=0.5, diffusion_dtype="float16")
SMOKE = Sizes(up_in=(32, 16), up_target="x2", up_batches=(1, 2), film_sizes=((32, 16), (48, 24)), film_batches=(1, 2),
              film_segment=4, kf_size=(64, 64), kf_steps=2, prompt_size=32, prompt_steps=2, prompt_batches=(1, 2),
              prompt_frames=2, outpaint_size=32, walk_size=(64, 64), walk_fps=4.0, walk_target="x2", walk_steps=2,
              caption_length=4, peak_n=256, min_reps=1, max_reps=1, target_s=0.0, diffusion_dtype="float32")
WALK = dict(images=3, S=2, I=2.0, F=1.0, motion_batch=8, upscale_batch=4)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny models on the CPU: proves every code path runs")
    p.add_argument("--out", type=Path, help="folder for gpu_suite.json/.md/.log (default: $OUT, else out/gpu_suite-*)")
    p.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                   help=f"run only this section ({', '.join(SECTIONS)}); repeatable")
    p.add_argument("--budget-s", type=float, help="seconds for all sections together (default 400; smoke 300)")
    p.add_argument("--device", help="default: cuda when there (cpu with --smoke)")
    p.add_argument("--compile-backend", help="torch.compile backend (default inductor; eager with --smoke)")
    p.add_argument("--keep-work", action="store_true", help="keep OUT/work (weights, run folders, caches)")
    return p.parse_args(argv)


def isolate(work: Path) -> None:
    """Every cache and temporary file of this process under ``work`` (set before torch is imported)."""
    sys.dont_write_bytecode = True
    for var, sub in (("TORCHINDUCTOR_CACHE_DIR", "inductor"), ("TRITON_CACHE_DIR", "triton"), ("HF_HOME", "hf"),
                     ("ARTWALK_CACHE", "artwalk-cache"), ("XDG_CACHE_HOME", "cache"), ("CUDA_CACHE_PATH", "nv"),
                     ("MPLCONFIGDIR", "mpl"), ("TMPDIR", "tmp"), ("NUMBA_CACHE_DIR", "numba")):
        (work / sub).mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(work / sub)
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
                      TOKENIZERS_PARALLELISM="false")
    tempfile.tempdir = str(work / "tmp")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def rnd(x: float | None, digits: int = 3) -> float | None:
    """``x`` to ``digits`` decimals, or to 3 significant digits where that would leave none."""
    if x is None or not math.isfinite(x):
        return None
    r = round(float(x), digits)
    return r if r != 0 or x == 0 else float(f"{x:.3g}")


class Unavailable(Exception):
    """A measurement this machine or torch cannot make (recorded as 'unavailable: reason')."""


# ---------------------------------------------------------------------------------------------- budget, rows


class Budget:
    """The run's seconds, shared among the sections in proportion to SHARES: a section that ends
    early leaves its time to the later ones, one that overruns takes it from them."""

    def __init__(self, seconds: float, order: list[str]):
        self.total = seconds
        self.end = time.monotonic() + seconds
        self.order = order

    def left(self) -> float:
        return self.end - time.monotonic()

    def section_end(self, name: str) -> float:
        later = self.order[self.order.index(name):]
        share = SHARES[name] / sum(SHARES[s] for s in later)
        return time.monotonic() + max(0.0, self.left()) * share


class Section:
    def __init__(self, ctx: "Ctx", name: str):
        self.ctx, self.name = ctx, name
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.summary: dict = {}
        self.status, self.reason, self.seconds, self.budget_s = "not run", "", 0.0, 0.0
        self.end = time.monotonic()

    def left(self) -> float:
        return min(self.end, self.ctx.budget.end) - time.monotonic()

    def run(self, name: str, fn: Callable[[dict], None], need_s: float = 0.0, **keys) -> dict:
        """One measurement: ``fn(row)`` fills ``row``; skipped when the section's time left is under
        ``need_s``; out of memory, unavailable or broken is recorded, and the suite goes on."""
        import torch

        from artwalk.errors import GpuMemoryError

        row: dict = {"name": name, "status": "", **keys}
        left = self.left()
        if left < need_s:
            row.update(status="skipped",
                       reason=f"budget: {max(left, 0):.0f} s left in this section, needs ~{need_s:.0f} s")
            self.rows.append(row)
            return row
        started = time.monotonic()
        try:
            fn(row)
            row["status"] = "ok"
        except (torch.OutOfMemoryError, GpuMemoryError) as exc:
            row.update(status="oom", reason=first_line(exc))
        except Unavailable as exc:
            row.update(status="unavailable", reason=str(exc))
        except Exception as exc:  # recorded, the run goes on: one broken row must not cost the lease
            row.update(status="error", reason=first_line(exc))
            log.error("%s / %s failed:\n%s", self.name, name, traceback.format_exc())
        finally:
            self.ctx.free(collect=row["status"] != "ok")  # a traceback's frames hold tensors in cycles
        row["wall_s"] = rnd(time.monotonic() - started, 2)
        self.rows.append(row)
        log.info("%-9s %-52s %s%s", self.name, name, row["status"],
                 "" if row["status"] == "ok" else f" ({row.get('reason', '')})")
        return row

    def to_json(self) -> dict:
        return {"status": self.status, "reason": self.reason, "seconds": rnd(self.seconds, 1),
                "budget_s": rnd(self.budget_s, 1), "anchor": ANCHORS[self.name], "summary": self.summary,
                "notes": self.notes, "rows": self.rows}


# ---------------------------------------------------------------------------------------------- context


class Ctx:
    """The run: device, sizes, configs, budget, timers, and what sections share."""

    def __init__(self, args: argparse.Namespace, out: Path, work: Path):
        import torch

        self.args, self.out, self.work = args, out, work
        self.smoke = args.smoke
        self.sz = SMOKE if args.smoke else FULL
        self.device = torch.device(args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda"))
        self.cuda = self.device.type == "cuda"
        self.compile_backend = args.compile_backend or ("eager" if args.smoke else "inductor")
        self.cfg = {k: v for k, v in json.loads(CONFIGS.read_text("utf-8")).items() if not k.startswith("_")}
        order = [s for s in RUN_ORDER if not args.only or s in args.only]
        self.budget = Budget(args.budget_s if args.budget_s is not None else (300.0 if args.smoke else 400.0), order)
        self.sections = {name: Section(self, name) for name in SECTIONS}
        self.peak_tflops: float | None = None
        self.cache: dict = {}  # built pipelines shared by sections (kandinsky: walk and keyframes)
        self.env: dict = {}
        self.started = time.time()

    # -- numbers without the '_' notes
    def conf(self, key: str) -> dict:
        return {k: v for k, v in self.cfg[key].items() if not k.startswith("_")}

    # -- timing
    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def device_time(self, fn: Callable[[], object]) -> float:
        """Seconds of ``fn`` on the device's timeline (CUDA events), or the host's on a CPU."""
        import torch

        if not self.cuda:
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop) / 1e3

    def wall_time(self, fn: Callable[[], object]) -> float:
        """Seconds of ``fn`` from a synchronised start to a synchronised end (host work included)."""
        self.sync()
        t = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t

    def repeat(self, fn: Callable[[], object], section: Section, *, wall: bool = False, warmup: int = 1,
               max_reps: int | None = None) -> dict:
        """Warm-up calls, then timed calls until min_reps and target_s (or max_reps, or the
        section's time) are reached: median, min, reps."""
        timer = self.wall_time if wall else self.device_time
        for _ in range(warmup):
            fn()
        self.sync()
        times: list[float] = []
        cap = max_reps or self.sz.max_reps
        while True:
            times.append(timer(fn))
            n, med = len(times), statistics.median(times)
            if n >= cap or (n >= self.sz.min_reps and sum(times) >= self.sz.target_s):
                break
            if section.left() < med:
                break
        return {"median_s": statistics.median(times), "min_s": min(times), "reps": len(times)}

    # -- memory
    def mem_start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def mem_peak(self) -> float | None:
        if not self.cuda:
            return None
        import torch

        return rnd(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)

    def free(self, collect: bool = False) -> None:
        """Give cached GPU memory back; ``collect``: also run the garbage collector (slow with
        diffusers and transformers loaded: only where big models were dropped)."""
        if collect:
            gc.collect()
        if self.cuda:
            import torch

            torch.cuda.empty_cache()

    def fraction(self, tflops: float | None) -> float | None:
        if tflops is None or not self.peak_tflops:
            return None
        return rnd(tflops / self.peak_tflops, 4)

    # -- output
    def save(self) -> None:
        data = {
            "suite": "artwalk bench/gpu_suite.py", "version": VERSION, "smoke": self.smoke,
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "started": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)), "elapsed_s": rnd(time.time() - self.started, 1),
            "budget_s": self.budget.total, "env": self.env,
            "peak": {"bf16_tflops": rnd(self.peak_tflops, 2), **self.cache.get("peak_extra", {})},
            "sections": {name: sec.to_json() for name, sec in self.sections.items()},
        }
        write_atomic(self.out / "gpu_suite.json", json.dumps(data, indent=1) + "\n")
        write_atomic(self.out / "gpu_suite.md", markdown(data))


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- environment, peak


def environment(ctx: Ctx) -> dict:
    import numpy as np
    import torch

    env = {"python": platform.python_version(), "machine": platform.machine(), "cpu": platform.processor() or "",
           "cpu_count": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
           "device": str(ctx.device), "compile_backend": ctx.compile_backend}
    for mod in ("diffusers", "transformers", "av", "cv2"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as exc:  # recorded: a missing package shows in its rows too
            env[mod] = f"missing ({first_line(exc)})"
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        env.update(gpu=props.name, gpu_memory_gib=rnd(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count, cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                   cudnn_benchmark=torch.backends.cudnn.benchmark)
        try:  # a read-only query
            q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            env["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
            env["driver"] = env["nvidia_smi"].split(",")[0].strip()
        except (OSError, subprocess.SubprocessError) as exc:
            env["driver"] = f"unknown ({first_line(exc)})"
    else:
        env.update(gpu="none", threads=torch.get_num_threads())
    return env


def measure_peak(ctx: Ctx) -> None:
    """The bf16 (and fp16) matrix-product rate on this device: n x n x n on random data."""
    import torch

    n = ctx.sz.peak_n
    torch.manual_seed(0)
    extra = {"shape": [n, n, n]}
    for dtype in (torch.bfloat16, torch.float16):
        x, y = (torch.randn(n, n, device=ctx.device, dtype=dtype) for _ in range(2))
        for _ in range(10):  # clocks up, handles made
            x @ y
        ctx.sync()
        times = [ctx.device_time(lambda: x @ y) for _ in range(20)]
        tflops = 2 * n**3 / statistics.median(times) / 1e12
        if dtype == torch.bfloat16:
            ctx.peak_tflops = tflops
        else:
            extra["fp16_tflops"] = rnd(tflops, 2)
    ctx.cache["peak_extra"] = extra
    log.info("peak: bf16 %.1f TFLOP/s, fp16 %.1f TFLOP/s (%d^3 matrix product)", ctx.peak_tflops,
             extra["fp16_tflops"], n)


def count_flops(module_factory: Callable[[], object], *shapes: tuple[int, ...]) -> float:
    """FLOPs of one forward pass of a freshly built module on inputs of these shapes, counted by
    torch's FlopCounterMode on the meta device (no memory, no compute)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = module_factory()
        inputs = [torch.empty(s) for s in shapes]
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(*inputs)
    return float(counter.get_total_flops())


def compiled(module, backend: str):
    """``torch.compile(module)``, or :class:`Unavailable` saying why not."""
    import torch

    if not hasattr(torch, "compile"):
        raise Unavailable("unavailable: this torch has no torch.compile")
    try:
        return torch.compile(module, backend=backend, dynamic=False)
    except Exception as exc:
        raise Unavailable(f"unavailable: {first_line(exc)}") from None


# ---------------------------------------------------------------------------------------------- 1. upscale


def sr_network(spec: dict):
    from super_resolution.rrdbnet import RRDBNet, RRDBParams
    from super_resolution.srvgg import SRVGGNetCompact, SRVGGParams

    kw = {k: v for k, v in spec.items() if k != "arch" and not k.startswith("_")}
    return RRDBNet(RRDBParams(**kw)) if spec["arch"] == "RRDBNet" else SRVGGNetCompact(SRVGGParams(**kw))


def sr_weights(ctx: Ctx, name: str) -> Path:
    """Seeded random weights of a Real-ESRGAN network, saved as safetensors (read by the engine's loader)."""
    import torch
    from safetensors.torch import save_file

    path = ctx.work / "weights" / f"random_{SR_SLUG[name]}.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        net = sr_network(ctx.conf("realesrgan_smoke" if ctx.smoke else "realesrgan")[name])
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def run_upscale(ctx: Ctx, sec: Section) -> None:
    import numpy as np
    import torch

    from artwalk.sizes import target_size
    from super_resolution.realesrgan import RealESRGANEngine

    w, h = ctx.sz.up_in
    tw, th = target_size(ctx.sz.up_target, w, h)
    specs = ctx.conf("realesrgan_smoke" if ctx.smoke else "realesrgan")
    flops = {name: count_flops(lambda s=spec: sr_network(s), (1, 3, h, w)) for name, spec in specs.items()}
    sec.summary["tflop_per_frame"] = {n: rnd(f / 1e12, 3) for n, f in flops.items()}
    sec.notes += [
        f"net rows: the engine's Upscaler on a device-resident batch of {w}x{h} random frames (float32 in, the "
        "network in the row's dtype, float32 clamped out); frames/s = batch / median call",
        f"engine rows: RealESRGANEngine.upscale_batch, numpy {w}x{h} in, numpy {tw}x{th} out (host copies and the "
        "Lanczos/area resize to the target included)",
        "fp32 rows: cuDNN's default (TF32 convolutions allowed: see env.cudnn_allow_tf32)",
        f"FLOP/s: FlopCounterMode's count of the architecture (meta device) x frames / time; fraction of the bf16 "
        f"peak measured in this run; torch.compile backend: {ctx.compile_backend}, dynamic=False",
    ]
    engines: dict[tuple[str, str], RealESRGANEngine] = {}

    def engine_for(name: str, dtype: str) -> RealESRGANEngine:
        if (name, dtype) not in engines:
            engines.clear()
            ctx.free()
            engines[(name, dtype)] = RealESRGANEngine(model=str(sr_weights(ctx, name)), device=str(ctx.device),
                                                      dtype=dtype, tile=0)
        return engines[(name, dtype)]

    def net_cell(name: str, dtype: str, batch: int, channels_last: bool = False, compile_: bool = False):
        def fn(row: dict) -> None:
            if compile_ or channels_last:
                engines.clear()
                up = RealESRGANEngine(model=str(sr_weights(ctx, name)), device=str(ctx.device), dtype=dtype,
                                      tile=0).upscaler
            else:
                up = engine_for(name, dtype).upscaler
            torch.manual_seed(0)
            x = torch.rand(batch, 3, h, w, device=ctx.device)
            if channels_last:
                up.net.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            if compile_:
                up.net = compiled(up.net, ctx.compile_backend)
                try:
                    row["compile_s"] = rnd(ctx.wall_time(lambda: up(x)), 2)  # the first call compiles
                except torch.OutOfMemoryError:
                    torch._dynamo.reset()
                    raise
                except Exception as exc:  # no compiler, no triton, a graph break it refuses: why, in one line
                    torch._dynamo.reset()
                    raise Unavailable(f"unavailable: {first_line(exc)}") from None
            ctx.mem_start()
            t = ctx.repeat(lambda: up(x), sec)
            tflops = flops[name] * batch / t["median_s"] / 1e12
            row.update(fps=rnd(batch / t["median_s"], 2), ms_per_call=rnd(t["median_s"] * 1e3, 2),
                       tflops=rnd(tflops, 1), frac_peak=ctx.fraction(tflops), peak_gib=ctx.mem_peak(), reps=t["reps"])
            if compile_:
                torch._dynamo.reset()

        tags = (" channels_last" if channels_last else "") + (" compiled" if compile_ else "")
        need = 0.0 if ctx.smoke else 2.0
        if compile_ and not ctx.smoke:  # inductor's first call: RRDBNet is 345 convolutions deep
            need += 60.0 if specs[name]["arch"] == "RRDBNet" else 15.0
        return sec.run(f"{name} {dtype} b{batch}{tags}", fn, need_s=need, kind="net", network=name, dtype=dtype,
                       batch=batch, channels_last=channels_last, compiled=compile_)

    def engine_cell(name: str, dtype: str, batch: int):
        def fn(row: dict) -> None:
            engine = engine_for(name, dtype)
            rng = np.random.default_rng(0)
            frames = [rng.random((h, w, 3), dtype=np.float32) for _ in range(2 * batch)]

            def go():
                for i in range(0, len(frames), batch):
                    engine.upscale_batch(frames[i:i + batch], tw, th)

            ctx.mem_start()
            t = ctx.repeat(go, sec, wall=True, max_reps=2)
            row.update(fps=rnd(len(frames) / t["median_s"], 2), peak_gib=ctx.mem_peak(), reps=t["reps"],
                       ms_per_frame=rnd(t["median_s"] / len(frames) * 1e3, 2), out=f"{tw}x{th}")

        return sec.run(f"{name} {dtype} b{batch} engine end to end", fn, need_s=0 if ctx.smoke else 4.0,
                       kind="engine", network=name, dtype=dtype, batch=batch)

    main_dtype = "float16"
    best: dict[str, int] = {}
    for name in specs:  # first what the walk uses: fp16 at every batch
        rows = [net_cell(name, main_dtype, b) for b in ctx.sz.up_batches]
        ok = [r for r in rows if r["status"] == "ok"]
        best[name] = max(ok, key=lambda r: r["fps"])["batch"] if ok else ctx.sz.up_batches[0]
    for name in specs:
        engine_cell(name, main_dtype, 4 if not ctx.smoke else 2)
    for dtype in ("bfloat16", "float32"):
        for name in specs:
            for b in ctx.sz.up_batches:
                net_cell(name, dtype, b)
    for name in specs:
        net_cell(name, main_dtype, best[name], channels_last=True)
    for name in sorted(specs, key=lambda n: specs[n]["arch"] != "SRVGGNetCompact"):  # cheap compiles first
        net_cell(name, main_dtype, best[name], compile_=True)
    engines.clear()
    sec.summary["best_fp16_fps"] = {n: max((r["fps"] for r in sec.rows if r.get("kind") == "net" and r["status"] == "ok"
                                            and r["network"] == n and r["dtype"] == main_dtype), default=None)
                                    for n in specs}
    sec.summary["best_fp16_batch"] = best


# ---------------------------------------------------------------------------------------------- 2. film


def film_config(ctx: Ctx):
    from frame_interpolation.film_net import FilmConfig

    return FilmConfig(**ctx.conf("film_smoke" if ctx.smoke else "film"))


def film_weights(ctx: Ctx) -> Path:
    """The FILM architecture with seeded random weights (scaled so activations stay finite in fp16)."""
    import torch

    from frame_interpolation.film_net import FilmNet, save_film_weights

    path = ctx.work / "weights" / "film_random.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        net = FilmNet(film_config(ctx))
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for pname, p in net.named_parameters():
                scale = (1.0 / p[0].numel()) ** 0.5 if pname.endswith("weight") else 0.01
                p.copy_(torch.randn(p.shape, generator=g) * scale)
        save_film_weights(net, path)
    return path


def example_pictures(width: int, height: int, n: int = 3) -> list:
    """The bundled examples, cover-fitted to W x H, RGB float32 in [0, 1]."""
    from artwalk.images import list_images, load_image
    from diffusion_models.conform import conform

    paths = list_images(REPO / "examples", report=False)[:n]
    return [conform(load_image(p), width, height, "cover").astype("float32") for p in paths]


def run_film(ctx: Ctx, sec: Section) -> None:
    import torch

    from artwalk.timeline import gap_times
    from frame_interpolation.film import FilmEngine
    from frame_interpolation.film_net import FilmNet

    path = film_weights(ctx)
    config = film_config(ctx)
    align = config.align
    padded = lambda n: -(-n // align) * align  # noqa: E731
    flops = {(w, h): count_flops(lambda: FilmNet(config), (1, 3, padded(h), padded(w)), (1, 3, padded(h), padded(w)),
                                 (1, 1)) for w, h in ctx.sz.film_sizes}
    sec.summary["tflop_per_frame"] = {f"{w}x{h}": rnd(f / 1e12, 3) for (w, h), f in flops.items()}
    sec.notes += [
        "net rows: FilmEngine's runner (pad to the network's alignment, dtype, crop, clamp) on device-resident "
        "random frame pairs; every frame one whole forward pass (what time_mode bisect runs); frames/s = batch / "
        "median call",
        f"engine rows: FilmEngine.interpolate over one segment of {ctx.sz.film_segment} intervals "
        f"({ctx.sz.film_segment - 1} eased times), numpy in and out; bisect (recursive midpoints, the default) and "
        "exact (one encode, a decode per batch of times)",
    ]
    for (w, h) in ctx.sz.film_sizes:
        for dtype in ("float16", "bfloat16", "float32"):
            holder: dict = {}

            def engine() -> FilmEngine:
                if "engine" not in holder:
                    holder["engine"] = FilmEngine(model=str(path), device=str(ctx.device), dtype=dtype, batch=1)
                return holder["engine"]

            for batch in ctx.sz.film_batches:
                def fn(row: dict, batch=batch, w=w, h=h) -> None:
                    runner = engine().runner
                    torch.manual_seed(0)
                    x0 = torch.rand(batch, 3, h, w, device=ctx.device)
                    x1 = torch.rand(batch, 3, h, w, device=ctx.device)
                    dt = torch.full((batch,), 0.5)
                    ctx.mem_start()
                    t = ctx.repeat(lambda: runner(x0, x1, dt), sec)
                    tflops = flops[(w, h)] * batch / t["median_s"] / 1e12
                    row.update(fps=rnd(batch / t["median_s"], 2), ms_per_call=rnd(t["median_s"] * 1e3, 2),
                               tflops=rnd(tflops, 1), frac_peak=ctx.fraction(tflops), peak_gib=ctx.mem_peak(),
                               reps=t["reps"])

                sec.run(f"film {w}x{h} {dtype} b{batch}", fn, need_s=0 if ctx.smoke else 3.0 * (w * h) / (1280 * 720),
                        kind="net", size=f"{w}x{h}", dtype=dtype, batch=batch)
            holder.clear()
    w, h = ctx.sz.film_sizes[0]
    a, b = example_pictures(w, h, 2)
    times = gap_times(ctx.sz.film_segment, "eased")
    batch = ctx.sz.film_batches[-1]
    for mode in ("bisect", "exact"):
        def fn(row: dict, mode=mode) -> None:
            engine = FilmEngine(model=str(path), device=str(ctx.device), dtype="float16", batch=batch, time_mode=mode)
            ctx.mem_start()
            t = ctx.repeat(lambda: list(engine.interpolate(a, b, times)), sec, wall=True, max_reps=2)
            row.update(fps=rnd(len(times) / t["median_s"], 2), s_per_segment=rnd(t["median_s"], 3),
                       peak_gib=ctx.mem_peak(), reps=t["reps"], frames=len(times))

        sec.run(f"film {w}x{h} float16 b{batch} engine end to end, {mode}", fn, need_s=0 if ctx.smoke else 4.0,
                kind="engine", size=f"{w}x{h}", dtype="float16", batch=batch, time_mode=mode)


# ---------------------------------------------------------------------------------------------- pipelines


def tiny():
    sys.path.insert(0, str(REPO / "tests"))
    import tiny_models

    return tiny_models


def clip_processor(size: int = 224):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(crop_size=size, size=size, do_center_crop=True, do_normalize=True, do_resize=True,
                              image_mean=[0.48145466, 0.4578275, 0.40821073],
                              image_std=[0.26862954, 0.26130258, 0.27577711], resample=3)


def dtype_of(name: str):
    import torch

    return getattr(torch, name)


def made(ctx: Ctx, factory: Callable[[], object], dtype: str):
    """A module built on the device (random init there), cast to ``dtype``, in eval mode."""
    import torch

    torch.manual_seed(0)
    with torch.device(ctx.device):
        module = factory()
    return module.to(dtype_of(dtype)).eval()


def placed(pipe, ctx: Ctx, dtype: str):
    return pipe.to(device=ctx.device, dtype=dtype_of(dtype))


def build_kandinsky(ctx: Ctx, dtype: str) -> dict:
    """Kandinsky 2.2's prior (its ViT-bigG image encoder: what an image walk runs) and decoder."""
    if ctx.smoke:
        t = tiny()
        return {"prior": placed(t.kandinsky_prior(), ctx, dtype), "decoder": placed(t.kandinsky_decoder(), ctx, dtype)}
    from diffusers import DDPMScheduler, KandinskyV22Pipeline, KandinskyV22PriorPipeline, UNet2DConditionModel, VQModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    encoder = made(ctx, lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**ctx.conf("kandinsky_image_encoder"))),
                   dtype)
    prior = KandinskyV22PriorPipeline(prior=None, text_encoder=None, tokenizer=None, scheduler=None,
                                      image_processor=clip_processor(), image_encoder=encoder)
    decoder = KandinskyV22Pipeline(unet=made(ctx, lambda: UNet2DConditionModel(**ctx.conf("kandinsky_decoder_unet")),
                                             dtype),
                                   movq=made(ctx, lambda: VQModel(**ctx.conf("kandinsky_movq")), dtype),
                                   scheduler=DDPMScheduler(**ctx.conf("kandinsky_scheduler")))
    return {"prior": prior, "decoder": decoder}


def build_sd15(ctx: Ctx, dtype: str) -> dict:
    """SD 1.5's components as an img2img pipeline (image walks) and a text-to-image one (prompt walks,
    video init), sharing every module."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    if ctx.smoke:
        parts = placed(tiny().stable_diffusion(), ctx, dtype).components
    else:
        from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel

        parts = dict(unet=made(ctx, lambda: UNet2DConditionModel(**ctx.conf("sd15_unet")), dtype),
                     vae=made(ctx, lambda: AutoencoderKL(**ctx.conf("sd_vae")), dtype),
                     text_encoder=made(ctx, lambda: CLIPTextModel(CLIPTextConfig(**ctx.conf("clip_l_text"))), dtype),
                     tokenizer=tiny().tokenizer(), scheduler=PNDMScheduler(**ctx.conf("pndm")), safety_checker=None,
                     feature_extractor=None)
    parts = {**parts, "safety_checker": None, "feature_extractor": None}
    return {"pipe": StableDiffusionImg2ImgPipeline(**parts, requires_safety_checker=False),
            "text": StableDiffusionPipeline(**parts, requires_safety_checker=False)}


def build_unclip(ctx: Ctx, dtype: str) -> dict:
    if ctx.smoke:
        return {"pipe": placed(tiny().stable_unclip(), ctx, dtype)}
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline,
                           UNet2DConditionModel)
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=clip_processor(),
        image_encoder=made(ctx, lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**ctx.conf("vit_h"))), dtype),
        image_normalizer=made(ctx, lambda: StableUnCLIPImageNormalizer(embedding_dim=1024), dtype),
        image_noising_scheduler=DDPMScheduler(**ctx.conf("image_noising")), tokenizer=tiny().tokenizer(),
        text_encoder=made(ctx, lambda: CLIPTextModel(CLIPTextConfig(**ctx.conf("openclip_h_text"))), dtype),
        unet=made(ctx, lambda: UNet2DConditionModel(**ctx.conf("sd21_unclip_unet")), dtype),
        scheduler=DDIMScheduler(**ctx.conf("ddim_v")),
        vae=made(ctx, lambda: AutoencoderKL(**ctx.conf("sd_vae")), dtype))
    return {"pipe": pipe}


def build_sd2_inpaint(ctx: Ctx, dtype: str) -> dict:
    if ctx.smoke:
        return {"inpaint": placed(tiny().stable_diffusion_inpaint(), ctx, dtype)}
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    pipe = StableDiffusionInpaintPipeline(
        unet=made(ctx, lambda: UNet2DConditionModel(**ctx.conf("sd2_inpaint_unet")), dtype),
        vae=made(ctx, lambda: AutoencoderKL(**ctx.conf("sd_vae")), dtype),
        text_encoder=made(ctx, lambda: CLIPTextModel(CLIPTextConfig(**ctx.conf("openclip_h_text"))), dtype),
        tokenizer=tiny().tokenizer(), scheduler=PNDMScheduler(**ctx.conf("pndm")), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    return {"inpaint": pipe}


def attention_of(pipes: dict) -> str:
    """The attention processor the denoiser runs (AttnProcessor2_0 is SDPA)."""
    for pipe in pipes.values():
        unet = getattr(pipe, "unet", None)
        if unet is not None:
            return ",".join(sorted({type(p).__name__ for p in unet.attn_processors.values()}))
    return ""


def keyframe_engine(ctx: Ctx, name: str, pipes: dict, steps: int | None, **options):
    """An engine made by the registry, as a stage makes it, on pipelines built here."""
    from diffusion_models.engines import ENGINES

    opts = {"device": str(ctx.device), "dtype": ctx.sz.diffusion_dtype, "attention_slicing": False, **options}
    if steps is not None:
        opts["steps"] = steps
    engine = ENGINES.create(name, opts, progress=False)
    engine.attach(**pipes)
    return engine


# ---------------------------------------------------------------------------------------------- 3. keyframes


def img2img_steps(steps: int, strength: float) -> int:
    """Denoising steps an img2img call runs (as SDText.render: at least one)."""
    n = max(steps, math.ceil(1.0 / strength - 1e-9))
    return min(int(n * strength), n)


def render_batched(t2i, conds: list, init: list | None = None, strength: float = 1.0, steps: int | None = None) -> list:
    """Several conditionings through one UNet call a step: :meth:`SDText.render`'s loop with the
    frames stacked along the batch (each frame's rows next to each other), its VAE encode and decode
    batched too. No engine does this yet; here it measures what batching the in-betweens would give.
    With one conditioning it computes what ``render`` computes (checked by the rows)."""
    import torch

    from artwalk.devices import generator
    from diffusion_models.conditioning import batch as stack_rows, layout
    from diffusion_models.runtime import crop_to, pad_to, padded_size, to_numpy, to_tensor

    pipe = t2i.pipe
    unet, scheduler = pipe.unet, pipe.scheduler
    steps = steps or t2i.steps
    width, height = conds[0].size
    pw, ph = padded_size(width, height, t2i.multiple)
    device, dtype = pipe._execution_device, unet.dtype
    lays = [layout(c) for c in conds]
    rows = len(lays[0].rows)
    if any(len(lay.rows) != rows for lay in lays):
        raise ValueError("render_batched: the conditionings need the same rows (prompt terms)")
    embeds = torch.cat([stack_rows(lay.rows, "embeds", c.pad) for lay, c in zip(lays, conds)]).to(device, dtype)
    noise = torch.cat([c.noise for c in conds]).to(device=device, dtype=dtype)
    with torch.no_grad():
        if init is None:
            scheduler.set_timesteps(steps, device=device)
            timesteps = scheduler.timesteps
            latents = noise * scheduler.init_noise_sigma
        else:
            n = max(steps, math.ceil(1.0 / strength - 1e-9))
            scheduler.set_timesteps(n, device=device)
            start = (n - min(int(n * strength), n)) * scheduler.order
            timesteps = scheduler.timesteps[start:]
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(start)
            vae = pipe.vae
            x = torch.cat([to_tensor(pad_to(im, pw, ph), device, vae.dtype) for im in init])
            z = (vae.encode(x).latent_dist.mode() * vae.config.scaling_factor).to(dtype)
            latents = scheduler.add_noise(z, noise, timesteps[:1])
        steps_gen = generator(conds[0].seed)
        for t in timesteps:
            x = latents.repeat_interleave(rows, dim=0) if rows > 1 else latents
            x = scheduler.scale_model_input(x, t)
            eps = unet(x, t, encoder_hidden_states=embeds, return_dict=False)[0]
            guided = torch.cat([lay.combine(eps[i * rows:(i + 1) * rows]) for i, lay in enumerate(lays)])
            latents = scheduler.step(guided, t, latents, generator=steps_gen, return_dict=False)[0]
        images = t2i.decode(latents)
    return [crop_to(to_numpy(images[i:i + 1]), width, height) for i in range(len(conds))]


def run_keyframes(ctx: Ctx, sec: Section) -> None:
    import numpy as np

    dtype = ctx.sz.diffusion_dtype
    w, h = ctx.sz.kf_size
    pair = example_pictures(w, h, 2)
    steps_text = ("each engine's default steps, guidance and strength (kandinsky 50 steps, unclip 20, sd 50 x "
                  "strength 0.6)" if ctx.sz.kf_steps is None else f"{ctx.sz.kf_steps} steps, default guidance")
    batches = [b for b in ctx.sz.prompt_batches if b > 1]
    sec.notes += [
        f"in-betweens: the engines' own inbetweens() at {w}x{h}, {dtype}, attention slicing off, {steps_text}; "
        "one pair of S=2 in-betweens timed after a warm-up pair made by a 1-step copy of the engine on the same "
        "pipelines",
        f"prompt walk / video init ({ctx.sz.prompt_size}x{ctx.sz.prompt_size}, {ctx.sz.prompt_steps} steps, guidance "
        f"7.5; video init at strength 0.45): batch 1 through the engine (render, restyle); batch "
        f"{', '.join(map(str, batches))} through render_batched() in bench/gpu_suite.py, an emulation of batching "
        "the in-betweens (no engine batches frames yet); max diff vs engine compares a frame of each path with the "
        "other path's frame for the same conditioning",
        "outpaint: one zoom level (factor 2) through diffusion_models.zoom.outpaint_level; levels are sequential "
        "(each paints around the last), so there is nothing to batch",
        "kandinsky: the prior pipeline holds only its ViT-bigG image encoder, as the engine loads it for image walks",
    ]
    steps = ctx.sz.kf_steps

    # -- image walks: seconds per in-between
    def inbetween_row(name: str, build: Callable[[], dict]) -> None:
        def fn(row: dict) -> None:
            t0 = time.perf_counter()
            pipes = build()
            row["build_s"] = rnd(time.perf_counter() - t0, 1)
            warm = keyframe_engine(ctx, name, pipes, 1)
            engine = keyframe_engine(ctx, name, pipes, steps)
            row["attention"] = attention_of(pipes)
            row["steps"] = engine.steps
            if hasattr(engine, "img2img_steps"):  # sd: img2img runs part of the schedule
                row["steps"] = img2img_steps(engine.img2img_steps, engine.strength)
            list(warm.inbetweens(pair[0], pair[1], [0.5], seed=0))
            ctx.mem_start()
            fractions = [1 / 3, 2 / 3]
            seconds = ctx.wall_time(lambda: list(engine.inbetweens(pair[0], pair[1], fractions, seed=1)))
            row.update(s_per_inbetween=rnd(seconds / len(fractions), 3), s_per_pair_s2=rnd(seconds, 3),
                       peak_gib=ctx.mem_peak(), size=f"{w}x{h}", dtype=dtype)

        sec.run(f"{name} in-betweens {w}x{h}", fn, need_s=0 if ctx.smoke else 25.0, kind="inbetween", engine=name)

    def kandinsky() -> dict:
        if "kandinsky" not in ctx.cache:
            ctx.cache["kandinsky"] = build_kandinsky(ctx, dtype)
        return ctx.cache["kandinsky"]

    inbetween_row("kandinsky", kandinsky)
    ctx.cache.pop("kandinsky", None)
    ctx.free(collect=True)
    inbetween_row("unclip", lambda: build_unclip(ctx, dtype))
    ctx.free(collect=True)
    sd = {}

    def sd15() -> dict:
        if not sd:
            sd.update(build_sd15(ctx, dtype))
        return sd

    inbetween_row("sd", lambda: {"pipe": sd15()["pipe"]})

    # -- prompt walks and video init, frames per second by batch
    from artwalk.schedule import parse_prompts
    from diffusion_models.conditioning import mix

    size = ctx.sz.prompt_size
    state: dict = {}

    def prompt_setup() -> tuple:
        if not state:
            pipes = sd15()
            engine = keyframe_engine(ctx, "sd", {"pipe": pipes["pipe"], "text": pipes["text"]}, ctx.sz.prompt_steps)
            keys = parse_prompts("0: a lighthouse on a cliff, oil painting\n24: a lion at dusk, watercolour",
                                 fps=24.0).keys
            conds = [engine.conditioning(k.parts, "", 7 + i, None, (size, size)) for i, k in enumerate(keys)]
            state.update(engine=engine, conds=conds)
        return state["engine"], state["conds"]

    n_frames = ctx.sz.prompt_frames
    rng = np.random.default_rng(0)
    init_frames = [rng.random((size, size, 3), dtype=np.float32) for _ in range(n_frames)]
    strength = 0.45
    for what in ("prompt walk", "video init"):
        for b in ctx.sz.prompt_batches:
            def fn(row: dict, b=b, what=what) -> None:
                engine, (ca, cb) = prompt_setup()
                t2i = engine.text2image
                times = [(k + 1) / (n_frames + 1) for k in range(n_frames)]
                conds = [mix(ca, cb, t) for t in times]
                inits = init_frames if what == "video init" else None
                part = (lambda i, j: None) if inits is None else (lambda i, j: inits[i:j])  # noqa: E731
                single = (lambda c, k: engine.render(c)) if inits is None else \
                    (lambda c, k: engine.restyle(c, inits[k], strength))  # noqa: E731
                made: list = []
                if b == 1:  # the engine itself, one frame a call
                    def go():
                        made.extend(single(c, k) for k, c in enumerate(conds))
                else:  # the emulation: b frames a call
                    def go():
                        for i in range(0, len(conds), b):
                            made.extend(render_batched(t2i, conds[i:i + b], part(i, i + b), strength))
                render_batched(t2i, conds[:b], part(0, b), strength, steps=1)  # warm-up: the same shapes
                ctx.mem_start()
                seconds = ctx.wall_time(go)
                other = render_batched(t2i, conds[:1], part(0, 1), strength)[0] if b == 1 else single(conds[0], 0)
                rows = 2 if ca.guidance > 1.0 else 1
                row.update(frames_per_s=rnd(n_frames / seconds, 3), s_per_frame=rnd(seconds / n_frames, 3),
                           s_per_batch=rnd(seconds / math.ceil(n_frames / b), 3), unet_batch=b * rows,
                           steps=t2i.steps if inits is None else img2img_steps(t2i.steps, strength),
                           max_abs_diff=rnd(float(np.abs(made[0] - other).max()), 6), peak_gib=ctx.mem_peak(),
                           emulated=b > 1, size=f"{size}x{size}", dtype=dtype)

            sec.run(f"{what} sd15 {size}x{size} batch {b}", fn, need_s=0 if ctx.smoke else 6.0, kind=what,
                    batch=b)
    state.clear()
    sd.clear()
    ctx.free(collect=True)

    # -- one outpainted zoom level
    def outpaint(row: dict) -> None:
        import cv2

        from artwalk.images import to_uint8
        from artwalk.schedule import Part
        from diffusion_models.outpaint import feather_pixels
        from diffusion_models.zoom import ZoomLevel, outpaint_level

        t0 = time.perf_counter()
        pipes = build_sd2_inpaint(ctx, dtype)
        row["build_s"] = rnd(time.perf_counter() - t0, 1)
        warm = keyframe_engine(ctx, "sd", pipes, 1)
        engine = keyframe_engine(ctx, "sd", pipes, ctx.sz.prompt_steps)
        inner = to_uint8(cv2.resize(example_pictures(size, size, 1)[0], (size, size)))
        level = ZoomLevel(index=1, parts=(Part("a coastline at dawn", 1.0),), negative="", seed=3)
        feather = feather_pixels(size, size)
        outpaint_level(warm, inner, 2.0, feather, level)
        ctx.mem_start()
        seconds = ctx.wall_time(lambda: outpaint_level(engine, inner, 2.0, feather, level))
        row.update(s_per_level=rnd(seconds, 3), steps=engine.steps, peak_gib=ctx.mem_peak(), size=f"{size}x{size}",
                   dtype=dtype, attention=attention_of(pipes))

    sec.run(f"outpaint zoom level sd2-inpainting {size}x{size}", outpaint, need_s=0 if ctx.smoke else 15.0,
            kind="outpaint")
    ctx.free(collect=True)
    sec.run("interrogate BLIP-large + CLIP ViT-L/14", lambda row: interrogate_row(ctx, row),
            need_s=0 if ctx.smoke else 20.0, kind="interrogate")
    ok_rows = [r for r in sec.rows if r["status"] == "ok"]
    sec.summary["s_per_inbetween"] = {r["engine"]: r["s_per_inbetween"] for r in ok_rows
                                      if r.get("kind") == "inbetween"}


def word_tokenizer(words: list[str], bos: str, eos: str, pad: str, max_length: int):
    """A fast word-level tokenizer over the phrase lists' words: a phrase is about as many tokens as
    with the real BPE vocabularies (a byte-level one would make it five times longer)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in (pad, bos, eos, "[UNK]", *words):
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A {eos}",
                                                       special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   unk_token="[UNK]", model_max_length=max_length)


def phrase_words() -> list[str]:
    from pipeline.interrogate import phrase_lists

    return sorted({w.lower() for phrases in phrase_lists().values() for p in phrases
                   for w in p.replace("-", " ").replace("'", " ").replace(".", " ").split()})


def blip_large(ctx: Ctx, tok, dtype: str):
    """BLIP-large for captioning, its text ids taken from ``tok``."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    spec = ctx.conf("blip_large")
    spec["text_config"] = {**spec["text_config"], "bos_token_id": tok.bos_token_id, "sep_token_id": tok.eos_token_id,
                           "pad_token_id": tok.pad_token_id}
    return made(ctx, lambda: BlipForConditionalGeneration(BlipConfig(**spec)), dtype)


def clip_vit_l14(ctx: Ctx, tok, dtype: str):
    """CLIP ViT-L/14 (text and vision towers, projections), its text ids taken from ``tok``."""
    from transformers import CLIPConfig, CLIPModel

    spec = ctx.conf("clip_vit_l14")
    spec["text_config"] = {**spec["text_config"], "vocab_size": max(len(tok), spec["text_config"]["vocab_size"]),
                           "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                           "pad_token_id": tok.pad_token_id}
    return made(ctx, lambda: CLIPModel(CLIPConfig(**spec)), dtype)


def interrogation_models(ctx: Ctx, root: Path, dtype: str) -> tuple[Path, Path]:
    """BLIP-large and CLIP ViT-L/14 (random weights) saved as the hub lays them out, for the real loader."""
    if ctx.smoke:
        t = tiny()
        return t.blip_captioner(root / "blip"), t.clip_ranker(root / "clip")
    from transformers import BlipImageProcessor, CLIPImageProcessor

    words = phrase_words()
    blip_dir, clip_dir = root / "blip", root / "clip"
    tok = word_tokenizer(words, "[DEC]", "[SEP]", "[PAD]", 512)
    blip_large(ctx, tok, dtype).save_pretrained(blip_dir)
    tok.save_pretrained(blip_dir)
    BlipImageProcessor(size={"height": 384, "width": 384}).save_pretrained(blip_dir)
    tok = word_tokenizer(words, "<|startoftext|>", "<|endoftext|>", "<|endoftext|>", 77)
    clip_vit_l14(ctx, tok, dtype).save_pretrained(clip_dir)
    tok.save_pretrained(clip_dir)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size=224).save_pretrained(clip_dir)
    ctx.free(collect=True)
    return blip_dir, clip_dir


def interrogate_row(ctx: Ctx, row: dict) -> None:
    from PIL import Image

    from artwalk.images import to_uint8
    from pipeline import interrogate as lib

    dtype = ctx.sz.diffusion_dtype
    root = ctx.work / "interrogate"
    t0 = time.perf_counter()
    blip_dir, clip_dir = interrogation_models(ctx, root, dtype)
    row["build_s"] = rnd(time.perf_counter() - t0, 1)
    ctx.free()
    ctx.mem_start()
    config = lib.InterrogateConfig(folder=root, caption_model=str(blip_dir), clip_model=str(clip_dir),
                                   caption_length=ctx.sz.caption_length, device=str(ctx.device), dtype=dtype,
                                   progress=False)
    models = lib.Models(config)
    t0 = time.perf_counter()
    models.blip, models.clip, models.tokenizer
    row["load_s"] = rnd(time.perf_counter() - t0, 2)
    models.blip[0].generation_config.eos_token_id = None  # every caption is caption_length tokens long
    tables = lib.Tables(models, lib.folder_identity(clip_dir), progress=False)
    row["embed_lists_cold_s"] = rnd(ctx.wall_time(lambda: [tables.get(name) for name in lib.LISTS]), 2)
    w, h = ctx.sz.kf_size
    images = [Image.fromarray(to_uint8(p)) for p in example_pictures(w, h, 3)]
    lib.make_prompt(images[0], config, models, tables)  # warm-up
    caption = [ctx.wall_time(lambda im=im: models.caption(im)) for im in images]
    classic = [ctx.wall_time(lambda im=im: lib.make_prompt(im, config, models, tables)) for im in images]
    row.update(caption_s_per_image=rnd(statistics.median(caption), 3),
               caption_classic_s_per_image=rnd(statistics.median(classic), 3), images=len(images),
               caption_tokens=ctx.sz.caption_length, peak_gib=ctx.mem_peak(), dtype=dtype,
               clip_interrogator_gb=6.3)
    if row["peak_gib"] is not None:
        row["peak_gb"] = rnd(row["peak_gib"] * 2**30 / 1e9, 2)


# ---------------------------------------------------------------------------------------------- 4. walk


def artwalks_frames(n: int, s: int, intervals: int, freeze: int) -> int:
    """Frames of ArtWalks' video (its generate_videos.py): a freeze clip of the first image, then per
    pair the FILM clip over A, K1..KS, B ((S + 1) * 2^k + 1 frames, both ends included) and a freeze
    clip of B, concatenated."""
    return freeze + (n - 1) * ((s + 1) * intervals + 1 + freeze)


def run_walk(ctx: Ctx, sec: Section) -> None:
    import diffusion_models
    import frame_interpolation
    import generate_videos
    import super_resolution
    from artwalk.images import read_frame
    from artwalk.sizes import target_size
    from diffusion_models import KeyframeConfig
    from frame_interpolation import MotionConfig
    from generate_videos import VideoConfig
    from super_resolution import UpscaleConfig

    n, S, I, F = WALK["images"], WALK["S"], WALK["I"], WALK["F"]
    fps, (w, h) = ctx.sz.walk_fps, ctx.sz.walk_size
    dtype = ctx.sz.diffusion_dtype
    net_dtype = "float16" if ctx.cuda else "float32"
    k = int(math.log2(I * fps - 1))  # ArtWalks: times_to_interpolate = int(log2(sec_interpolation * fps - 1))
    intervals = 2**k
    sec.notes += [
        f"{n} bundled examples, S={S}, I={I:g} s, F={F:g} s, {fps:g} fps"
        f"{'' if ctx.smoke else ' (ArtWalks fixes 30)'}, {w}x{h} -> "
        f"{ctx.sz.walk_target}; keyframes {dtype}, FILM and Real-ESRGAN {net_dtype}, FILM batch "
        f"{WALK['motion_batch']}, Real-ESRGAN batch {WALK['upscale_batch']}, on both sides",
        "ours: stages 1-4 through their run(config): kandinsky (engine defaults), film bisect at the timeline's "
        "eased times, realesrgan RealESRGAN_x2plus on unique frames (holds not upscaled), the encode",
        f"ArtWalks: the same keyframes (stage 1 run once, counted on both sides; ArtWalks' own stage 1 also "
        "outpaints every in-between twice at 1024x1024, not emulated, so the ratio is in ArtWalks' favour); FILM "
        f"segments of 2^k + 1 = {intervals + 1} frames (k = int(log2(I*fps - 1)) = {k}), configured as "
        f"--sec_interpolation {intervals}/{fps:g} --easing linear (bisect then makes FILM's recursive midpoints, "
        "dt = 0.5 everywhere); realesrgan RealESRGAN_x4plus then Lanczos/area down to the target",
        "ArtWalks upscales every frame of its video, holds and the keyframes its joins repeat included; our stage 3 "
        "cannot be told to, so those extra frames are timed through the same engine object, batch for batch "
        "(emulated, without PNG writes: in ArtWalks' favour); ArtWalks' encodes (several ffmpeg passes) are not "
        "emulated and the encode is left out of the ratio",
        "GPU-seconds: wall seconds of stages 1-3 (the GPU is held through each); the encode runs on the CPU",
    ]
    root = ctx.work / "walk"
    inputs = root / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    from artwalk.images import list_images

    for src in list_images(REPO / "examples", report=False)[:n]:
        shutil.copy(src, inputs / src.name)
    bundle = root / "kandinsky-bundle"  # what the engine checks for: pipeline folders (their models are attached)
    for role, cls in (("prior", "KandinskyV22PriorPipeline"), ("decoder", "KandinskyV22Pipeline")):
        (bundle / role).mkdir(parents=True, exist_ok=True)
        (bundle / role / "model_index.json").write_text(json.dumps({"_class_name": cls}), "utf-8")
    film = film_weights(ctx)
    x2, x4 = sr_weights(ctx, "RealESRGAN_x2plus"), sr_weights(ctx, "RealESRGAN_x4plus")
    dev = str(ctx.device)
    times: dict[str, dict[str, float]] = {"ours": {}, "artwalks": {}}
    counts: dict[str, dict] = {"ours": {}, "artwalks": {}}
    ours, aw = root / "ours", root / "artwalks"

    def warm_up(a, b, pipes: dict) -> None:
        """Not timed: one call of each network at the walk's shapes (kernels, cuDNN's choices, allocator)."""
        from frame_interpolation.film import FilmEngine
        from super_resolution.realesrgan import RealESRGANEngine

        list(keyframe_engine(ctx, "kandinsky", pipes, 1).inbetweens(a, b, [0.5], seed=0))
        batch = WALK["motion_batch"]
        list(FilmEngine(model=str(film), device=dev, dtype=net_dtype, batch=batch).interpolate(
            a, b, [(k + 1) / (batch + 1) for k in range(batch)]))
        for weights in (x2, x4):
            engine = RealESRGANEngine(model=str(weights), device=dev, dtype=net_dtype, tile=0)
            engine.upscale_batch([a] * WALK["upscale_batch"], *target_size(ctx.sz.walk_target, w, h))
        ctx.free()

    def stage1(row: dict) -> None:
        if "kandinsky" not in ctx.cache:
            t0 = time.perf_counter()
            ctx.cache["kandinsky"] = build_kandinsky(ctx, dtype)
            row["build_s"] = rnd(time.perf_counter() - t0, 1)
        pipes = ctx.cache["kandinsky"]
        a, b = example_pictures(w, h, 2)
        warm_up(a, b, pipes)
        config = KeyframeConfig(input_dir=inputs, run_dir=ours, engine="kandinsky", model=str(bundle),
                                interpolation_steps=S, width=w, height=h, fps=fps, device=dev, dtype=dtype,
                                steps=ctx.sz.walk_steps, progress=False)
        started = time.monotonic()
        plan = diffusion_models.check(config)
        plan.engine.attach(**pipes)
        result = diffusion_models.run(config, plan=plan)
        ctx.sync()
        times["ours"]["keyframes"] = times["artwalks"]["keyframes"] = time.monotonic() - started
        row.update(seconds=rnd(times["ours"]["keyframes"], 2), inbetweens=result.inbetweens,
                   originals=result.originals)

    def motion(side: str, row: dict) -> None:
        if side == "artwalks":
            shutil.copytree(ours / "keyframes", aw / "keyframes")
            config = MotionConfig(run_dir=aw, fps=fps, sec_interpolation=intervals / fps, sec_freeze=F, easing="linear",
                                  engine="film", model=str(film), time_mode="bisect", device=dev, dtype=net_dtype,
                                  batch=WALK["motion_batch"], progress=False)
            if config.spec.intervals != intervals:
                raise RuntimeError(f"ArtWalks' segments: {config.spec.intervals} intervals, not {intervals}")
        else:
            config = MotionConfig(run_dir=ours, fps=fps, sec_interpolation=I, sec_freeze=F, engine="film",
                                  model=str(film), device=dev, dtype=net_dtype, batch=WALK["motion_batch"],
                                  progress=False)
        started = time.monotonic()
        result = frame_interpolation.run(config)
        ctx.sync()
        times[side]["motion"] = time.monotonic() - started
        spec = config.spec
        counts[side].update(motion_frames=(n - 1) * (S + 1) * (spec.intervals - 1), timeline=result.frames,
                            intervals=spec.intervals, hold=spec.hold)
        row.update(seconds=rnd(times[side]["motion"], 2), motion_frames=counts[side]["motion_frames"],
                   intervals=spec.intervals, easing=config.easing, video_frames=result.frames)

    def upscale(side: str, row: dict) -> None:
        run_dir = ours if side == "ours" else aw
        config = UpscaleConfig(run_dir=run_dir, target=ctx.sz.walk_target, engine="realesrgan",
                               model=str(x2 if side == "ours" else x4), device=dev, dtype=net_dtype,
                               batch=WALK["upscale_batch"], progress=False)
        started = time.monotonic()
        result = super_resolution.run(config)
        ctx.sync()
        times[side]["upscale"] = time.monotonic() - started
        counts[side]["upscaled"] = result.unique_frames
        row.update(seconds=rnd(times[side]["upscale"], 2), frames=result.unique_frames,
                   network="RealESRGAN_x2plus" if side == "ours" else "RealESRGAN_x4plus",
                   out=f"{result.width}x{result.height}")
        if side == "artwalks":
            c = counts["artwalks"]
            video = artwalks_frames(n, S, intervals, int(F * fps))
            extra = video - result.unique_frames
            engine = super_resolution.check(config)
            keyframes = sorted((aw / "keyframes").rglob("*.png"))[:n]
            pictures = [read_frame(p) for p in keyframes]
            batch = WALK["upscale_batch"]
            frames = [pictures[i % len(pictures)] for i in range(extra)]

            def go():
                for i in range(0, len(frames), batch):
                    engine.upscale_batch(frames[i:i + batch], result.width, result.height)

            seconds = ctx.wall_time(go)
            times["artwalks"]["upscale_extra"] = seconds
            c.update(video_frames=video, extra_upscaled=extra)
            row.update(extra_frames=extra, extra_seconds=rnd(seconds, 2), video_frames=video)

    def encode(row: dict) -> None:
        started = time.monotonic()
        result = generate_videos.run(VideoConfig(run_dir=ours, progress=False))
        times["ours"]["encode"] = time.monotonic() - started
        row.update(seconds=rnd(times["ours"]["encode"], 2), video_frames=getattr(result, "frames", None),
                   cpu=True)

    need = 0 if ctx.smoke else 12.0
    r = sec.run("stage 1 keyframes (both sides)", stage1, need_s=need, side="both", stage="keyframes")
    if r["status"] != "ok":
        sec.summary["ratio"] = None
        sec.reason = "stage 1 failed: no walk"
        return
    for side in ("ours", "artwalks"):
        sec.run(f"{side}: stage 2 motion (film)", lambda row, s=side: motion(s, row), need_s=need, side=side,
                stage="motion")
        if "motion" in times[side]:
            sec.run(f"{side}: stage 3 upscale (realesrgan)", lambda row, s=side: upscale(s, row), need_s=need,
                    side=side, stage="upscale")
        if side == "ours" and "upscale" in times["ours"]:
            sec.run("ours: stage 4 encode (CPU, not in the ratio)", encode, need_s=need, side="ours", stage="encode")
    gpu = {side: sum(v for key, v in times[side].items() if key != "encode") for side in times}
    complete = all(key in times["ours"] for key in ("keyframes", "motion", "upscale")) and \
        all(key in times["artwalks"] for key in ("keyframes", "motion", "upscale", "upscale_extra"))
    if not complete:
        sec.summary["ratio"] = None
        sec.reason = "a stage did not run: no ratio"
        return
    ours_frames, aw_frames = counts["ours"]["timeline"], counts["artwalks"]["video_frames"]
    ratio = gpu["ours"] / gpu["artwalks"]
    no_kf = (gpu["ours"] - times["ours"]["keyframes"]) / (gpu["artwalks"] - times["artwalks"]["keyframes"])
    per_s = {"ours": gpu["ours"] / (ours_frames / fps), "artwalks": gpu["artwalks"] / (aw_frames / fps)}
    sec.summary.update(
        ours_gpu_s=rnd(gpu["ours"], 2), artwalks_gpu_s=rnd(gpu["artwalks"], 2), ratio=rnd(ratio, 3),
        ratio_without_keyframes=rnd(no_kf, 3), goal="<= 0.2", met=ratio <= 0.2,
        ours_video_frames=ours_frames, artwalks_video_frames=aw_frames,
        ours_gpu_s_per_video_s=rnd(per_s["ours"], 3), artwalks_gpu_s_per_video_s=rnd(per_s["artwalks"], 3),
        ratio_per_video_second=rnd(per_s["ours"] / per_s["artwalks"], 3),
        stages={side: {key: rnd(v, 2) for key, v in times[side].items()} for side in times}, counts=counts)
    sec.rows.append({"name": "GPU-seconds, ours / ArtWalks (stages 1-3)", "status": "ok", "side": "ratio",
                     "ours_s": rnd(gpu["ours"], 2), "artwalks_s": rnd(gpu["artwalks"], 2), "ratio": rnd(ratio, 3),
                     "ratio_without_keyframes": rnd(no_kf, 3),
                     "ratio_per_video_second": sec.summary["ratio_per_video_second"]})


# ---------------------------------------------------------------------------------------------- markdown


COLUMNS = {
    "upscale": [("name", "measurement"), ("status", "status"), ("fps", "frames/s"), ("ms_per_call", "ms/call"),
                ("ms_per_frame", "ms/frame"), ("tflops", "TFLOP/s"), ("frac_peak", "of bf16 peak"),
                ("compile_s", "compile s"), ("peak_gib", "peak GiB"), ("reps", "reps")],
    "film": [("name", "measurement"), ("status", "status"), ("fps", "frames/s"), ("ms_per_call", "ms/call"),
             ("s_per_segment", "s/segment"), ("tflops", "TFLOP/s"), ("frac_peak", "of bf16 peak"),
             ("peak_gib", "peak GiB"), ("reps", "reps")],
    "keyframes": [("name", "measurement"), ("status", "status"), ("s_per_inbetween", "s/in-between"),
                  ("s_per_pair_s2", "s/pair (S=2)"), ("frames_per_s", "frames/s"), ("s_per_frame", "s/frame"),
                  ("s_per_batch", "s/batch"), ("s_per_level", "s/level"), ("caption_s_per_image", "caption s/image"),
                  ("caption_classic_s_per_image", "caption+classic s/image"), ("steps", "steps"),
                  ("max_abs_diff", "max diff vs engine"), ("peak_gib", "peak GiB"), ("build_s", "build s")],
    "walk": [("name", "measurement"), ("status", "status"), ("seconds", "seconds"), ("motion_frames", "motion frames"),
             ("frames", "frames upscaled"), ("extra_frames", "extra frames (emulated)"),
             ("extra_seconds", "extra s"), ("video_frames", "video frames"), ("ratio", "ratio"),
             ("ratio_without_keyframes", "ratio w/o stage 1"), ("ratio_per_video_second", "ratio per video s")],
}


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value).replace("|", "/")


def markdown(data: dict) -> str:
    env = data["env"]
    lines = [f"# GPU suite{' (smoke: tiny models on the CPU, not figures)' if data['smoke'] else ''}", "",
             f"- device: {env.get('gpu', '?')} ({env.get('device')}), driver {env.get('driver', '-')}, "
             f"CUDA {env.get('cuda', '-')}, cuDNN {env.get('cudnn', '-')}; torch {env.get('torch')}, diffusers "
             f"{env.get('diffusers')}, transformers {env.get('transformers')}, PyAV {env.get('av')}; Python "
             f"{env.get('python')}, {env.get('cpu_count')} CPUs",
             f"- measured matrix peak: bf16 {fmt(data['peak'].get('bf16_tflops'))} TFLOP/s, fp16 "
             f"{fmt(data['peak'].get('fp16_tflops'))} TFLOP/s ({'x'.join(map(str, data['peak'].get('shape', [])))})",
             f"- command: `{' '.join(data['command'])}`; {data['elapsed_s']} s of a {data['budget_s']:g} s budget; "
             f"started {data['started']}", ""]
    for name, sec in data["sections"].items():
        lines += [f"## {name}: {sec['status']}" + (f" ({sec['reason']})" if sec["reason"] else "")
                  + f", {sec['seconds']} s of {sec['budget_s']} s", "", f"Anchor: {sec['anchor']}.", ""]
        lines += [f"- {note}" for note in sec["notes"]]
        if sec["summary"]:
            lines += ["", "Summary: `" + json.dumps({k: v for k, v in sec["summary"].items()
                                                     if k not in ("stages", "counts")}) + "`"]
        if not sec["rows"]:
            lines.append("")
            continue
        cols = [c for c in COLUMNS[name] if any(r.get(c[0]) not in (None, "") for r in sec["rows"])]
        lines += ["", "| " + " | ".join(h for _, h in cols) + " | note |", "|" + "---|" * (len(cols) + 1)]
        for r in sec["rows"]:
            lines.append("| " + " | ".join(fmt(r.get(k)) for k, _ in cols) + f" | {fmt(r.get('reason'))} |")
        lines.append("")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- main


RUNNERS = {"upscale": run_upscale, "film": run_film, "keyframes": run_keyframes, "walk": run_walk}


def setup_logging(out: Path) -> None:
    fmt_ = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S")
    file_handler = logging.FileHandler(out / "gpu_suite.log", encoding="utf-8")
    file_handler.setFormatter(fmt_)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    console.addFilter(lambda record: record.name == "gpu_suite" or record.levelno >= logging.WARNING)
    root = logging.getLogger()
    root.handlers[:] = [file_handler, console]
    root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = (args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else
                        REPO / "out" / time.strftime("gpu_suite-%Y%m%d-%H%M%S"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    isolate(work)
    setup_logging(out)
    sys.path.insert(0, str(REPO))
    import warnings

    warnings.filterwarnings("ignore", message=".*torch.jit.*", category=DeprecationWarning)
    ctx = Ctx(args, out, work)
    if ctx.smoke:  # tiny models are thousands of tiny ops: one thread, no OpenMP barriers to wait on
        import torch

        torch.set_num_threads(1)
    log.info("gpu suite: %s on %s, budget %.0f s, out %s", "smoke" if ctx.smoke else "full", ctx.device,
             ctx.budget.total, out)
    ctx.env = environment(ctx)
    measure_peak(ctx)
    ctx.save()
    try:
        for name in RUN_ORDER:
            sec = ctx.sections[name]
            if args.only and name not in args.only:
                sec.status, sec.reason = "skipped", "not selected (--only)"
                continue
            sec.end = ctx.budget.section_end(name)
            sec.budget_s = sec.end - time.monotonic()
            started = time.monotonic()
            if sec.left() <= 0:
                sec.status, sec.reason = "skipped", "budget spent before this section"
            else:
                log.info("section %s: %.0f s", name, sec.budget_s)
                try:
                    RUNNERS[name](ctx, sec)
                    bad = [r for r in sec.rows if r["status"] != "ok"]
                    sec.status = "done" if not bad else "partial"
                except Exception as exc:  # a section's own setup broke: recorded, the others still run
                    sec.status, sec.reason = "error", first_line(exc)
                    log.error("section %s failed:\n%s", name, traceback.format_exc())
            sec.seconds = time.monotonic() - started
            ctx.free(collect=True)
            ctx.save()
    finally:
        ctx.save()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    print((out / "gpu_suite.md").read_text("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
