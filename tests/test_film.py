"""The FILM engine on tiny, seeded, random FILM networks, through the real loading code.

The published weights are a TorchScript export of the PyTorch port of FILM. Here a tiny
network of ours is written in that file's key layout by ``_PortFilm``, a second,
independent implementation of the port's forward pass (its module tree, its reversed
predictor and fusion orders, its warp), scripted and saved with ``torch.jit.save``. The
engine reads the file's tensors without running it and maps them onto our modules; its
frames must equal ``_PortFilm``'s own, which checks the key mapping and our architecture
against the port's conventions. No real weights are needed; nothing is downloaded.
"""

from __future__ import annotations

import copy
import json
import weakref
import math
import shutil
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest
import torch
from skimage import data
from torch import nn
from torch.nn import functional as F

from conftest import DEVICE, EXAMPLES, run_cli, small_copy
from artwalk.errors import ConfigError, GpuMemoryError, InputError, WeightsMissingError
from artwalk.timeline import TimelineSpec
from frame_interpolation.film import FilmEngine, bisection_plan, block_spans
from frame_interpolation.film_net import (
    FilmConfig, FilmNet, UnsupportedWeightsError, load_film_weights, ours_to_port, port_to_ours, save_film_weights,
)

# TorchScript is how the port publishes its weights; torch 2.13 deprecates scripting.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

TINY = FilmConfig(pyramid_levels=4, fusion_pyramid_levels=3, specialized_levels=2, sub_levels=3, filters=4,
                  flow_convs=(1, 1, 1), flow_filters=(4, 8, 8))
W, H = 70, 45  # odd on purpose: padded to 72 x 48 (align 8) and cropped back


# ------------------------------------------------------------------- the port's layout


class _PortConv(nn.Sequential):
    """The port's ``util.Conv2d``: the conv at index 0 (keys ``<name>.0.weight``), TF 'same'."""

    def __init__(self, cin: int, cout: int, size: int, act: bool = True):
        super().__init__(nn.Conv2d(cin, cout, size, padding=size // 2 if size % 2 else 0))
        self.size = size
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size % 2 == 0:
            x = F.pad(x, [0, 1, 0, 1])
        y = self[0](x)
        return F.leaky_relu(y, 0.2) if self.act else y


def _port_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    h, w = flow.shape[2], flow.shape[3]
    gx = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=flow.dtype, device=flow.device)[None, None, :]
    gy = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=flow.dtype, device=flow.device)[None, :, None]
    gx, gy = gx + flow[:, 0] / (w * 0.5), gy + flow[:, 1] / (h * 0.5)
    return F.grid_sample(image, torch.stack([gx, gy], dim=3), mode="bilinear", padding_mode="border",
                         align_corners=False)


class _SubTree(nn.Module):
    def __init__(self, cfg: FilmConfig):
        super().__init__()
        f = cfg.filters
        self.convs = nn.ModuleList(nn.Sequential(_PortConv(3 if i == 0 else f << (i - 1), f << i, 3),
                                                 _PortConv(f << i, f << i, 3)) for i in range(cfg.sub_levels))

    def forward(self, image: torch.Tensor, n: int) -> List[torch.Tensor]:
        out: List[torch.Tensor] = []
        head = image
        for i, layer in enumerate(self.convs):
            if i < n:
                if i > 0:
                    head = F.avg_pool2d(head, 2, 2)
                head = layer(head)
                out.append(head)
        return out


class _Extract(nn.Module):
    def __init__(self, cfg: FilmConfig):
        super().__init__()
        self.extract_sublevels = _SubTree(cfg)
        self.sub_levels = cfg.sub_levels

    def forward(self, images: List[torch.Tensor]) -> List[torch.Tensor]:
        subs: List[List[torch.Tensor]] = []
        for i in range(len(images)):
            subs.append(self.extract_sublevels(images[i], min(len(images) - i, self.sub_levels)))
        out: List[torch.Tensor] = []
        for i in range(len(images)):
            feats = subs[i][0]
            for j in range(1, self.sub_levels):
                if j <= i:
                    feats = torch.cat([feats, subs[i - j][j]], dim=1)
            out.append(feats)
        return out


class _Estimator(nn.Module):
    def __init__(self, cin: int, n: int, width: int):
        super().__init__()
        convs = [_PortConv(cin if k == 0 else width, width, 3) for k in range(n)]
        convs += [_PortConv(width, width // 2, 1), _PortConv(width // 2, 2, 1, act=False)]
        self._convs = nn.ModuleList(convs)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([a, b], dim=1)
        for conv in self._convs:
            x = conv(x)
        return x


class _PredictFlow(nn.Module):
    """Residual flows, fine to coarse; ``_predictors`` holds the specialized levels coarse to fine."""

    def __init__(self, cfg: FilmConfig):
        super().__init__()
        s = cfg.specialized_levels
        heads = [_Estimator(2 * cfg.feature_channels(i), cfg.flow_convs[i], cfg.flow_filters[i]) for i in range(s + 1)]
        self._predictor = heads[-1]
        self._predictors = nn.ModuleList(heads[:-1][::-1])

    def forward(self, fa: List[torch.Tensor], fb: List[torch.Tensor]) -> List[torch.Tensor]:
        levels = len(fa)
        v = self._predictor(fa[-1], fb[-1])
        residuals = [v]
        for i in range(levels - 2, len(self._predictors) - 1, -1):
            v = F.interpolate(2 * v, size=[fa[i].shape[2], fa[i].shape[3]], mode="bilinear")
            r = self._predictor(fa[i], _port_warp(fb[i], v))
            residuals.insert(0, r)
            v = r + v
        for k, predictor in enumerate(self._predictors):
            i = len(self._predictors) - 1 - k
            v = F.interpolate(2 * v, size=[fa[i].shape[2], fa[i].shape[3]], mode="bilinear")
            r = predictor(fa[i], _port_warp(fb[i], v))
            residuals.insert(0, r)
            v = r + v
        return residuals


class _Fuse(nn.Module):
    """``convs[k]`` refines level ``len(convs) - 1 - k`` (created coarse to fine)."""

    def __init__(self, cfg: FilmConfig):
        super().__init__()
        top = cfg.fusion_pyramid_levels - 1
        self.output_conv = nn.Conv2d(cfg.filters, 3, 1)
        convs = []
        for i in range(top - 1, -1, -1):
            c_in = cfg.aligned_channels(top) if i == top - 1 else cfg.fusion_filters(i + 1)
            width = cfg.fusion_filters(i)
            convs.append(nn.ModuleList([_PortConv(c_in, width, 2, act=False),
                                        _PortConv(cfg.aligned_channels(i) + width, width, 3),
                                        _PortConv(width, width, 3)]))
        self.convs = nn.ModuleList(convs)

    def forward(self, pyramid: List[torch.Tensor]) -> torch.Tensor:
        net = pyramid[-1]
        for k, layers in enumerate(self.convs):
            i = len(self.convs) - 1 - k
            net = F.interpolate(net, size=[pyramid[i].shape[2], pyramid[i].shape[3]], mode="nearest")
            net = layers[0](net)
            net = torch.cat([pyramid[i], net], dim=1)
            net = layers[1](net)
            net = layers[2](net)
        return self.output_conv(net)


class _PortFilm(nn.Module):
    """The port's ``Interpolator``: same module tree, attributes and ``forward(x0, x1, batch_dt)``."""

    def __init__(self, cfg: FilmConfig):
        super().__init__()
        self.pyramid_levels = cfg.pyramid_levels
        self.fusion_pyramid_levels = cfg.fusion_pyramid_levels
        self.extract = _Extract(cfg)
        self.predict_flow = _PredictFlow(cfg)
        self.fuse = _Fuse(cfg)

    def _pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        out = [x]
        for _ in range(self.pyramid_levels - 1):
            out.append(F.avg_pool2d(out[-1], 2, 2))
        return out

    def _synthesis(self, residuals: List[torch.Tensor]) -> List[torch.Tensor]:
        flow = residuals[-1]
        flows = [flow]
        for r in residuals[:-1][::-1]:
            flow = r + F.interpolate(2 * flow, size=[r.shape[2], r.shape[3]], mode="bilinear")
            flows.insert(0, flow)
        return flows

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, batch_dt: torch.Tensor) -> torch.Tensor:
        n = self.fusion_pyramid_levels
        p0, p1 = self._pyramid(x0), self._pyramid(x1)
        f0, f1 = self.extract(p0), self.extract(p1)
        fwd = self._synthesis(self.predict_flow(f0, f1))[:n]
        bwd = self._synthesis(self.predict_flow(f1, f0))[:n]
        aligned: List[torch.Tensor] = []
        for i in range(n):
            b = bwd[i] * batch_dt[..., None, None]
            f = fwd[i] * (1 - batch_dt[..., None, None])
            w0 = _port_warp(torch.cat([p0[i], f0[i]], dim=1), b)
            w1 = _port_warp(torch.cat([p1[i], f1[i]], dim=1), f)
            aligned.append(torch.cat([w0, w1, b, f], dim=1))
        return self.fuse(aligned)


# ------------------------------------------------------------------- fixtures


def random_film(cfg: FilmConfig = TINY, seed: int = 0, moving: bool = True) -> FilmNet:
    """Seeded random weights that keep the output mostly inside [0, 1] and give flows of a
    few pixels; ``moving=False`` zeroes the flow heads (a network with no motion at all)."""
    net = FilmNet(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            scale = (1.0 / p[0].numel()) ** 0.5 if name.endswith("weight") else 0.02
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        net.fusion.to_rgb.weight.mul_(0.3)
        net.fusion.to_rgb.bias.fill_(0.5)
        for head in [*net.flow.levels, net.flow.shared]:
            head.out.weight.mul_(3.0 if moving else 0.0)
            head.out.bias.mul_(1.0 if moving else 0.0)
    return net


def _photo(name: str, size=(W, H), shift: float = 0.0) -> np.ndarray:
    img = cv2.resize(getattr(data, name)(), (4 * size[0], 4 * size[1]), interpolation=cv2.INTER_AREA)
    m = np.float32([[1, 0, 4 * shift], [0, 1, 2 * shift]])
    img = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT101)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads, and on a shared machine OpenMP's busy
    waiting makes a 2-thread conv a hundred times slower; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_net() -> FilmNet:
    return random_film()


@pytest.fixture(scope="module")
def port_net(tiny_net) -> _PortFilm:
    """The port's module (eager) holding ``tiny_net``'s weights."""
    port = _PortFilm(TINY).eval()
    port.load_state_dict(ours_to_port(tiny_net.state_dict(), TINY), strict=True)
    return port


@pytest.fixture(scope="module")
def port_export(port_net, tmp_path_factory) -> Path:
    """A TorchScript file in film_net_fp32.pt's layout holding ``tiny_net``'s weights."""
    path = tmp_path_factory.mktemp("weights") / "film_tiny.pt"
    torch.jit.script(port_net).save(str(path))
    return path


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    return _photo("astronaut"), _photo("astronaut", shift=3.0)


def _frames(engine: FilmEngine, pair, times) -> np.ndarray:
    return np.stack(list(engine.interpolate(*pair, times)))


def _net_frame(net: FilmNet, a: np.ndarray, b: np.ndarray, t: float, align: int = TINY.align) -> np.ndarray:
    """The frame straight from the network: replicate-pad (centred), run, crop, clamp."""
    h, w = a.shape[:2]
    ph, pw = -h % align, -w % align
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    x = [F.pad(torch.from_numpy(v).permute(2, 0, 1)[None], pad, mode="replicate") for v in (a, b)]
    with torch.no_grad():
        out = net(x[0], x[1], torch.tensor([[t]]))[0, :, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]
    return out.clamp(0, 1).permute(1, 2, 0).numpy()


# ------------------------------------------------------------------- loading


def _port_frames(port: nn.Module, pair, times, time_mode: str) -> np.ndarray:
    """The frames the port's own forward pass makes at ``times``: each from the keyframes
    (exact), or each from the two frames its bisection step names (bisect)."""
    a, b = pair
    if time_mode == "exact":
        return np.stack([_net_frame(port, a, b, t) for t in times])
    made = {0: a, len(times) + 1: b}
    for step in bisection_plan(times):
        made[step.index] = _net_frame(port, made[step.lo], made[step.hi], step.dt)
    return np.stack([made[k] for k in range(1, len(times) + 1)])


@pytest.mark.parametrize("time_mode", ["exact", "bisect"])
def test_export_read_as_tensors_runs_as_the_port(port_export, port_net, tiny_net, pair, time_mode):
    times = [0.2, 0.5, 0.7]
    mapped = FilmEngine(port_export, film_mode="module", time_mode=time_mode, device=DEVICE)
    assert mapped.config == TINY  # read from the shapes and the export's pyramid_levels
    a = _frames(mapped, pair, times)
    assert a.shape == (3, H, W, 3)
    # The test is not vacuous: frames move, and are not clamped flat.
    assert 0.05 < float(a.mean()) < 0.95 and float(np.abs(a[0] - a[2]).mean()) > 1e-3
    np.testing.assert_allclose(a, _port_frames(port_net, pair, times, time_mode), atol=2e-5)
    if time_mode == "exact":
        np.testing.assert_allclose(a[1], _net_frame(tiny_net, *pair, 0.5), atol=1e-5)


def test_export_tensors_are_torchscripts_own_and_the_torchscript_mode_is_gone(port_export, port_net, tmp_path):
    """The reader gives exactly the state dict ``torch.jit.load`` would (this test's own file,
    loaded here only to compare), float32 and float16 (film-fp16's layout) alike; asking to
    run the file as TorchScript is one line (tests/test_weights_safety.py: nothing runs)."""
    from artwalk.weights import read_torchscript

    half = tmp_path / "film_tiny_fp16.pt"
    torch.jit.script(copy.deepcopy(port_net).half()).save(str(half))
    for path, dtype in ((port_export, torch.float32), (half, torch.float16)):
        expected = torch.jit.load(str(path)).state_dict()
        got = read_torchscript(path)
        assert list(got.tensors) == list(expected) and got.attributes["pyramid_levels"] == TINY.pyramid_levels
        for key, value in expected.items():
            assert got.tensors[key].dtype == dtype and torch.equal(got.tensors[key], value), key
    reference = FilmEngine(port_export, time_mode="exact", device=DEVICE).runner.net.state_dict()
    from_half = FilmEngine(half, time_mode="exact", device=DEVICE).runner.net.state_dict()
    for key, value in reference.items():
        assert torch.equal(from_half[key], value.half().float()), key
    with pytest.raises(ConfigError, match="torchscript was removed: it ran the code") as err:
        FilmEngine(port_export, film_mode="torchscript", device=DEVICE)
    assert "\n" not in str(err.value)


def test_other_layouts_load_to_the_same_network(port_export, tiny_net, pair, tmp_path):
    reference = _frames(FilmEngine(port_export, time_mode="exact", device=DEVICE), pair, [0.5])
    state = ours_to_port(tiny_net.state_dict(), TINY)
    # The port's v1.0.0 export: convs without activation are bare (no ".0." level): the
    # fusion's 2x2 convs and each flow head's last conv (index 2 here, one 3x3 conv each).
    old = {}
    for k, v in state.items():
        bare = (k.startswith("fuse.convs.") and k.split(".")[3] == "0") or "._convs.2." in k
        old[k.replace(".0.weight", ".weight").replace(".0.bias", ".bias") if bare else k] = v
    assert old.keys() != state.keys()
    files = {"v100.pt": old, "plain.pt": state}
    for name, sd in files.items():
        torch.save(sd, tmp_path / name)
    save_film_weights(tiny_net, tmp_path / "ours.safetensors")
    save_film_weights(tiny_net, tmp_path / "ours.pt")
    for name in ["v100.pt", "plain.pt", "ours.safetensors", "ours.pt"]:
        engine = FilmEngine(tmp_path / name, time_mode="exact", pyramid_levels=None if "ours" in name else 4,
                            device=DEVICE)
        assert engine.config == TINY, name
        np.testing.assert_allclose(_frames(engine, pair, [0.5]), reference, atol=1e-6, err_msg=name)


def test_a_file_that_does_not_fit_is_one_clear_error(tiny_net, tmp_path):
    state = ours_to_port(tiny_net.state_dict(), TINY)
    assert port_to_ours(state, TINY).keys() == tiny_net.state_dict().keys()
    cases = {
        "extra.pt": ({**state, "fuse.extra.weight": torch.zeros(1)}, "unused fuse.extra.weight"),
        "unused.pt": ({**state, "fuse.convs.9.0.0.weight": torch.zeros(1)}, "unused fuse.convs.9"),
        "shape.pt": ({**state, "fuse.output_conv.weight": torch.zeros(3, 5, 1, 1)}, "shape fusion.to_rgb.weight"),
        "other.pt": ({"conv_first.weight": torch.zeros(1)}, "not a FILM state dict"),
    }
    for name, (sd, message) in cases.items():
        torch.save(sd, tmp_path / name)
        with pytest.raises(UnsupportedWeightsError, match=message) as err:
            load_film_weights(tmp_path / name, pyramid_levels=4).network()
        assert "\n" not in str(err.value)
    (tmp_path / "junk.pt").write_bytes(b"not a weights file")
    with pytest.raises(InputError, match="cannot use these FILM weights: it is not a PyTorch weights file") as err:
        load_film_weights(tmp_path / "junk.pt")
    assert "weights_only" not in str(err.value)


# ------------------------------------------------------------------- geometry and timing


@pytest.mark.parametrize("size", [(W, H), (64, 64), (13, 7)])
def test_any_size_is_padded_and_cropped_back(port_export, tiny_net, size):
    a, b = _photo("coffee", size), _photo("coffee", size, shift=2.0)
    frames = _frames(FilmEngine(port_export, time_mode="exact", device=DEVICE), (a, b), [0.3, 0.6])
    assert frames.shape == (2, size[1], size[0], 3) and frames.dtype == np.float32
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    for frame, t in zip(frames, [0.3, 0.6]):
        np.testing.assert_allclose(frame, _net_frame(tiny_net, a, b, t), atol=1e-5)


@pytest.mark.parametrize("time_mode", ["exact", "bisect"])
def test_same_inputs_give_the_same_bytes(port_export, pair, time_mode):
    times = TimelineSpec(12, 1.0, 0.0, "smoothstep").segment_times()
    first = _frames(FilmEngine(port_export, time_mode=time_mode, device=DEVICE), pair, times)
    again = _frames(FilmEngine(port_export, time_mode=time_mode, device=DEVICE), pair, times)
    assert first.tobytes() == again.tobytes()


@pytest.mark.parametrize("time_mode", ["exact", "bisect"])
def test_batching_times_matches_one_at_a_time(port_export, pair, time_mode):
    times = TimelineSpec(8, 1.0, 0.0, "smoothstep").segment_times()  # 7 uneven times
    one = _frames(FilmEngine(port_export, time_mode=time_mode, batch=1, device=DEVICE), pair, times)
    for batch in (3, 8):
        batched = FilmEngine(port_export, time_mode=time_mode, batch=batch, device=DEVICE)
        np.testing.assert_allclose(_frames(batched, pair, times),
                                   one, atol=1e-5)


def test_bisection_plan_reaches_every_time_from_made_frames():
    for times in (TimelineSpec(24, 3.0, 0.0, e).segment_times() for e in ("linear", "smoothstep", "sinh")):
        plan = bisection_plan(times)
        points = [0.0, *times, 1.0]
        made = {0, len(times) + 1}
        for step in plan:
            assert step.lo in made and step.hi in made and step.lo < step.index < step.hi
            assert math.isclose(points[step.lo] + step.dt * (points[step.hi] - points[step.lo]), points[step.index])
            assert 0.25 <= step.dt <= 0.75
            made.add(step.index)
        assert made == set(range(len(times) + 2)) and len(plan) == len(times)
    # Times on a power-of-two grid are pure midpoints, as in the official tool.
    assert {s.dt for s in bisection_plan([k / 8 for k in range(1, 8)])} == {0.5}


class _CrossFade:
    """Stands in for the network: frame ``dt`` of a pair is ``(1 - dt) x0 + dt x1``.

    It keeps a weak reference to every batch it returns, so a test can count how many
    of them the engine still holds (a batch lives while any of its frames does)."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.outputs: list[weakref.ref] = []

    def __call__(self, x0: torch.Tensor, x1: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        dt = dt.view(-1, 1, 1, 1)
        out = (1 - dt) * x0 + dt * x1
        self.outputs.append(weakref.ref(out))
        return out

    def alive(self) -> int:
        return sum(ref() is not None for ref in self.outputs)


@pytest.mark.parametrize("batch", [1, 4])
def test_bisection_lands_on_the_asked_times_in_order(port_export, batch):
    """With a cross-fade for a network, frame k of a bisection must be the cross-fade at
    t_k exactly: this checks the relative times, the order and the streaming."""
    engine = FilmEngine(port_export, batch=batch, device=DEVICE)
    engine.runner = runner = _CrossFade()
    times = TimelineSpec(24, 3.0, 0.0, "smoothstep").segment_times()  # depth 10
    a, b = np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32)
    held = 0
    means = []
    for frame in engine.interpolate(a, b, times):
        means.append(float(frame.mean()))
        held = max(held, runner.alive())
    np.testing.assert_allclose(means, times, atol=1e-6)
    assert 2 <= held <= 11  # about depth (10 here) network outputs held at once, not the whole segment (71)


def test_a_midpoint_is_the_same_in_both_time_modes(port_export, pair):
    exact = _frames(FilmEngine(port_export, time_mode="exact", device=DEVICE), pair, [0.5])
    bisect = _frames(FilmEngine(port_export, time_mode="bisect", device=DEVICE), pair, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(bisect[1], exact[0], atol=1e-6)


def test_half_precision_runs_and_stays_close(port_export, pair):
    full = _frames(FilmEngine(port_export, time_mode="exact", device=DEVICE), pair, [0.5])
    half = _frames(FilmEngine(port_export, time_mode="exact", dtype="bfloat16", batch=2, device=DEVICE), pair,
                   [0.5])
    assert half.dtype == np.float32 and np.abs(half - full).max() < 0.1


def test_blocks_match_the_whole_frame_where_the_network_sees_enough(tmp_path):
    """Blocks are exact for a network whose receptive radius ``r`` fits in the quarter of
    the overlap that the blend discards. With the flow heads zeroed, FILM has no motion
    and is a local CNN, so ``r`` can be measured by an impulse; then ``block_overlap`` =
    4 r (on the 8-pixel grid) must give the unsplit frame to float rounding (1e-5). With
    motion, FILM's coarse flow levels see the whole block, so no tolerance holds for
    arbitrary random weights: that case is documented, not asserted."""
    net = random_film(moving=False)
    a, b = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1)), torch.zeros(1, 3, 256, 256)
    with torch.no_grad():
        base = net(a, b, torch.tensor([[0.5]]))
        a[..., 128, 128] += 0.5
        changed = (net(a, b, torch.tensor([[0.5]])) != base)[0].any(0).nonzero()
    radius = int((changed - 128).abs().max())
    assert 0 < radius < 64
    overlap = -(-4 * radius // 8) * 8
    path = save_film_weights(net, tmp_path / "still.safetensors")
    x0, x1 = _photo("astronaut", (400, 282)), _photo("chelsea", (400, 282))
    times = [0.3, 0.6]
    whole = _frames(FilmEngine(path, time_mode="exact", block_size=0, device=DEVICE), (x0, x1), times)
    blocked_engine = FilmEngine(path, time_mode="exact", block_size=2 * overlap, block_overlap=overlap,
                                device=DEVICE)
    assert len(blocked_engine.runner._blocks(288, 400)) == 6  # 3 x 2 blocks of the padded frame
    blocked = _frames(blocked_engine, (x0, x1), times)
    np.testing.assert_allclose(blocked, whole, atol=1e-5)
    # Too little overlap for the radius: the seams show (the margin is what makes it exact).
    thin = _frames(FilmEngine(path, time_mode="exact", block_size=2 * overlap, block_overlap=8, device=DEVICE),
                   (x0, x1), times)
    assert np.abs(thin - whole).max() > 1e-4
    for spans in (block_spans(400, 208, 104, 8), block_spans(3840, 2560, 256, 64)):
        assert spans[0][0] == 0 and all(s1 - s0 in (208, 2560) for s0, s1 in spans)
        assert all(p[1] - n[0] >= (104 if p[1] - p[0] == 208 else 256) for p, n in zip(spans, spans[1:]))


# ------------------------------------------------------------------- errors and the stage


def test_missing_weights_say_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTWALK_CACHE", str(tmp_path / "empty cache"))
    for model, hint in (("film", "artwalk models download film"), ("film-fp16", "artwalk models download film-fp16"),
                        (str(tmp_path / "nowhere.pt"), "nowhere.pt")):
        with pytest.raises(WeightsMissingError) as err:
            FilmEngine(model, device=DEVICE)
        assert hint in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def keyframes_run(tmp_path_factory) -> Path:
    """A run folder with stage 1 done: three real images conformed to 96 x 64."""
    from diffusion_models import KeyframeConfig
    from diffusion_models import run as run_keyframes

    root = tmp_path_factory.mktemp("film run")
    images = root / "in"
    images.mkdir()
    for k, src in enumerate(sorted(EXAMPLES.glob("0*"))[:3], start=1):
        small_copy(src, images / f"art {k}.png", 120)
    run_keyframes(KeyframeConfig(images, root / "out", width=96, height=64, progress=False))
    return root / "out"


def test_cli_with_missing_weights_is_one_error_line(keyframes_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(keyframes_run, run_dir)
    proc = run_cli("-m", "frame_interpolation", str(run_dir), "--engine", "film", "--model", "missing")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing" in errors[0] and "Traceback" not in proc.stderr, proc.stderr


def test_stage_writes_every_motion_frame_with_film(keyframes_run, port_export, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(keyframes_run, run_dir)
    proc = run_cli("-m", "frame_interpolation", str(run_dir), "--engine", "film", "--model", str(port_export),
                   "--fps", "8", "-I", "0.5", "-F", "0.25", "--batch", "2", "--quiet", check=True)
    assert proc.stderr == ""
    manifest = json.loads((run_dir / "frames" / "manifest.json").read_text())
    n, big_n, hold = 3, 4, 2  # 3 keyframes, N = 0.5 s * 8 fps, H = round(0.25 * 8)
    motion = [f for f in manifest["frames"] if f["kind"] == "motion"]
    assert len(motion) == (n - 1) * (big_n - 1)
    assert len(manifest["timeline"]) == n * hold + (n - 1) * (big_n - 1)
    assert manifest["engine"]["engine"] == "film" and manifest["engine"]["time_mode"] == "bisect"
    from artwalk.framestore import FrameReader, pixels_sha256

    with FrameReader(run_dir) as reader:
        for f in motion:
            img = reader.u8(f)
            assert img.shape == (64, 96, 3) and pixels_sha256(img) == f["sha256"]


def test_out_of_gpu_memory_is_one_line_that_says_what_to_lower(port_export, pair):
    engine = FilmEngine(port_export, time_mode="exact", device=DEVICE)
    conv = next(m for m in engine.runner.net.modules() if isinstance(m, torch.nn.Conv2d))

    def out_of_memory(module, args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = conv.register_forward_pre_hook(out_of_memory)
    try:
        with pytest.raises(GpuMemoryError, match=r"^film on a \d+x\d+ block, batch 1: out of GPU memory; "
                                                 r"lower --batch"):
            _frames(engine, pair, [0.5])
    finally:
        hook.remove()
