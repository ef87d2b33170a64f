"""User calibration: efficiencies measured by `planner validate --calibrate` (one device) or
derived from a measured run (`planner calibration add`), and link bandwidths measured by
nccl-tests or `planner validate --distributed --calibrate` (`planner calibration link`), reused
by later estimates on the same hardware (and said so in their assumptions).

Stored as JSON at $PLANNER_CALIBRATION, or ~/.config/planner/calibration.json (XDG), or a path
given with --calibration. Pure stdlib: estimates read it without torch.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

from planner.errors import SpecError
from planner.fileio import write_text_atomic
from planner.results import frozen
from planner.units import MAX_INT
from planner.vocab import ATTENTION_KERNELS, KERNELS, LINK_LEVELS

ENV = "PLANNER_CALIBRATION"


def default_path() -> Path:
    env = os.environ
    return _path_for(env.get(ENV), env.get("XDG_CONFIG_HOME"), env.get("HOME"))


@lru_cache(maxsize=8)
def _path_for(explicit: str | None, xdg: str | None, home: str | None) -> Path:
    """The path for these environment values (cached: every estimate asks)."""
    if explicit:
        return Path(explicit).expanduser()
    base = xdg or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "planner" / "calibration.json"


@frozen
class Calibration:
    hardware: str  # profile name ("cpu" for a CPU run)
    precision: str
    params: int
    shape: str  # human-readable: "llama3-8b-shrunk: 4 layers, d_model 512, ..."
    seq_len: int
    micro_batch_size: int
    measured_mfu: float
    measured_hfu: float
    predicted_mfu: float
    date: str  # ISO date of the run
    device_name: str
    # The step-time model's version that predicted predicted_mfu (step_time.PERF_MODEL_VERSION;
    # None: written before versions were stored) and the run's kernels (eager, or fused under
    # torch.compile). A calibration from another version corrects a model that is gone.
    model_version: int | None = None
    kernels: str | None = None
    # From a measured multi-device run (`planner calibration add`): the factor on the
    # compute constants that reproduces its step time with the model's communication and
    # bubble kept (None: a one-device `validate` run, whose measured / predicted MFU is it),
    # and where it came from ("planner measure run ID, 16 devices, layout ...").
    compute_scale: float | None = None
    source: str | None = None
    # The link calibrations the compute factor was fit with ("scale_out 0.71"; None: the
    # model's default links), so that one fit before a link was measured is not stacked on it.
    links: str | None = None
    # The run's fused attention kernel as the fit took it (vocab.ATTENTION_KERNELS; None: not
    # recorded, before --attention-kernel existed, or a validate run's SDPA choice), so that
    # an estimate with another kernel says the factor is applied on top of it.
    attention_kernel: str | None = None

    def describe(self) -> str:
        kernels = f", {self.kernels} kernels" if self.kernels else ""
        if self.attention_kernel:
            kernels += f", {self.attention_kernel} attention kernel"
        run = f" ({self.source})" if self.source else ""
        measured = (f"MFU {self.measured_mfu:.1%}" if self.compute_scale is not None else
                    f"HFU {self.measured_hfu:.1%}")  # validate's one-device runs: no recompute
        return (f"calibrated on {self.date} from a run of {self.shape} "
                f"({self.params / 1e6:.1f}M params, seq {self.seq_len}{kernels}) on "
                f"{self.device_name}{run}: "
                f"{measured} (model predicted MFU {self.predicted_mfu:.1%})")

    @property
    def scale(self) -> float:
        """x the model's compute speed this calibration applies."""
        if self.compute_scale is not None:
            return self.compute_scale
        return self.measured_mfu / self.predicted_mfu


LEVELS = LINK_LEVELS


@dataclass(frozen=True)
class LinkCalibration:
    """An achieved bus bandwidth measured on real hardware, as the fraction of one level's link
    rate the step-time model uses for it (PerfParams.scale_up_efficiency /
    scale_out_efficiency). Stored in the same file, marked ``kind: link``."""

    hardware: str  # profile name
    level: str  # one of LEVELS
    efficiency: float  # achieved bus bandwidth / link rate, as the model charges it
    bus_bandwidth_gb_per_s: float  # measured (nccl-tests busbw), at message_bytes
    message_bytes: int
    ranks: int
    nodes: int
    date: str
    device_name: str
    source: str  # "nccl-tests all_reduce_perf, results.txt" / "planner validate --distributed"
    capped: bool = False  # measured above the link rate (NCCL tree/NVLS/SHARP), stored at 1.0
    collective: str = "all_reduce"  # the measured collective (its factor and hops refit it)
    kind: str = "link"

    def __post_init__(self) -> None:  # a hand-edited file must not reach the model
        if self.level not in LEVELS:
            raise ValueError(f"link level {self.level!r} is not one of {', '.join(LEVELS)}")
        for name in ("efficiency", "bus_bandwidth_gb_per_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v <= 0 or (name == "efficiency" and v > 1):
                raise ValueError(f"link {name} {v!r} is not a number in "
                                 f"{'(0, 1]' if name == 'efficiency' else '(0, inf)'}")
        for name in ("message_bytes", "ranks", "nodes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 2**50:
                raise ValueError(f"link {name} {v!r} is not a whole number from 1 to 2**50")
        if self.collective not in ("all_reduce", "reduce_scatter", "all_gather") or \
                self.ranks % self.nodes or self.ranks < 2:
            raise ValueError(f"link row of {self.ranks} ranks on {self.nodes} nodes "
                             f"({self.collective}) is not a measured collective")

    def describe(self) -> str:
        where = "inside one scale-up domain" if self.level == "scale_up" else "across domains"
        cap = " (above the link rate; capped at it)" if self.capped else ""
        return (f"{self.efficiency:.3g} of the link rate {where}, from "
                f"{self.bus_bandwidth_gb_per_s:.1f} GB/s bus bandwidth{cap} measured on "
                f"{self.date} ({self.source}, {self.collective}: {self.ranks} ranks on "
                f"{self.nodes} node{'s' if self.nodes != 1 else ''}, "
                f"{self.message_bytes / 2**20:g} MiB "
                f"messages, {self.device_name})")


def load(path: Path | None = None) -> list[Calibration]:
    """All stored compute calibrations ([] when there is no file); re-read only when the file
    changes, since every estimate looks a calibration up."""
    return [r for r in _load_all(path) if isinstance(r, Calibration)]


def load_links(path: Path | None = None) -> list[LinkCalibration]:
    """All stored link calibrations."""
    return [r for r in _load_all(path) if isinstance(r, LinkCalibration)]


def _load_all(path: Path | None) -> list[Calibration | LinkCalibration]:
    path = path or default_path()
    try:
        st = os.stat(path)
    except OSError:
        return []
    return list(_load_at(path, st.st_mtime_ns, st.st_size))


@lru_cache(maxsize=8)
def _load_at(path: Path, mtime_ns: int, size: int) -> tuple[Calibration | LinkCalibration, ...]:
    from planner.catalog.yamlio import read_text

    # (not `planner calibration clear`: it reads the file first, and refuses one it cannot read)
    bad, fix = f"calibration file {path} is not valid", "fix it or delete the file"
    text = read_text(path, kind="calibration JSON")  # at most 4 MiB of UTF-8, or one line
    try:
        rows = json.loads(text)
    except RecursionError:
        raise SpecError(f"{bad}: nested too deeply to be a calibration file; {fix}") from None
    except ValueError as e:
        raise SpecError(f"{bad} JSON ({e}); {fix}") from None
    if not isinstance(rows, list):
        raise SpecError(f"{bad}: expected a JSON list of calibrations (got a JSON "
                        f"{type(rows).__name__}); {fix}")
    out: list[Calibration | LinkCalibration] = []
    for i, r in enumerate(rows, 1):
        try:
            out.append(_row(r))
        except (ValueError, TypeError, ArithmeticError) as e:  # 10**400: OverflowError
            raise SpecError(f"{bad}: row {i}: {e}; fix or remove that row") from None
    return tuple(out)


def _row(r: object) -> Calibration | LinkCalibration:
    """One stored row as a calibration; ValueError naming the key when it is not one."""
    if not isinstance(r, dict):
        raise ValueError(f"expected a JSON object (got a JSON {type(r).__name__})")
    cls = LinkCalibration if r.get("kind") == "link" else Calibration
    known = {f.name: f for f in fields(cls)}
    for key in r:
        if key not in known:
            raise ValueError(f"unknown key {key!r}")
    for name, f in known.items():
        if f.default is MISSING and name not in r:
            raise ValueError(f"missing key {name!r}")
    for name in TEXT_FIELDS[cls]:
        v = r.get(name)
        if not (v is None and known[name].default is None) and \
                not (isinstance(v, str) and v.strip()):
            raise ValueError(f"{name} must be non-empty text (got {v!r})")
    return LinkCalibration(**r) if cls is LinkCalibration else check(Calibration(**r))


TEXT_FIELDS = {
    Calibration: ("hardware", "precision", "shape", "date", "device_name", "source", "links"),
    LinkCalibration: ("hardware", "date", "device_name", "source"),
}
# A compute factor `planner calibration add` fits lies from MIN_SCALE up to where the
# efficiency caps stop its search (1 / the hardware's GEMM efficiency, under 3 on every shipped
# profile; 1 / attention efficiency, 2.2): MAX_SCALE leaves room for any profile's own figures.
MIN_SCALE = 1e-3
MAX_SCALE = 1e3
MAX_PARAMS = 10**15


def check(cal: Calibration) -> Calibration:
    """A compute calibration whose figures the model can use: whole-number sizes, MFU and HFU
    fractions of peak in (0, 1] (the model caps every efficiency at the peak), a compute factor
    from MIN_SCALE to MAX_SCALE, and named choices the model knows (a hand-edited file must
    not reach the model); ValueError naming the field otherwise."""
    for name, top in (("params", MAX_PARAMS), ("seq_len", MAX_INT),  # as every integer flag
                      ("micro_batch_size", MAX_INT)):
        v = getattr(cal, name)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top:
            raise ValueError(f"{name} must be a whole number from 1 to {top:,} (got {v!r})")
    for name in ("measured_mfu", "measured_hfu", "predicted_mfu"):
        v = getattr(cal, name)
        if not _real(v) or not 0 < v <= 1:
            raise ValueError(f"{name} must be a fraction of peak in (0, 1] (got {v!r})")
    if cal.compute_scale is not None and not (_real(cal.compute_scale) and
                                              MIN_SCALE <= cal.compute_scale <= MAX_SCALE):
        raise ValueError(f"compute_scale must be a number from {MIN_SCALE:g} to "
                         f"{MAX_SCALE:g} (got {cal.compute_scale!r})")
    if cal.compute_scale is None and not MIN_SCALE <= cal.scale <= MAX_SCALE:
        raise ValueError(f"measured_mfu / predicted_mfu must be from {MIN_SCALE:g} to "
                         f"{MAX_SCALE:g} (got {cal.measured_mfu!r} / {cal.predicted_mfu!r})")
    v = cal.model_version
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise ValueError(f"model_version must be a whole number >= 1 or null (got {v!r})")
    for name, valid in (("kernels", KERNELS), ("attention_kernel", ATTENTION_KERNELS)):
        value = getattr(cal, name)
        if value is not None and value not in valid:
            raise ValueError(f"{name} {value!r} is not one of {', '.join(valid)}")
    return cal


def _real(v: object) -> bool:
    """A finite number, not a bool (an int is finite at any size: 10**400 just compares)."""
    return not isinstance(v, bool) and (isinstance(v, int) or
                                        isinstance(v, float) and math.isfinite(v))


def _write(rows: list[Calibration | LinkCalibration], path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpecError(f"cannot create {path.parent}: {e.strerror}") from None
    write_text_atomic(path, json.dumps([asdict(r) for r in rows], indent=2) + "\n")


def _key(r: Calibration | LinkCalibration) -> tuple:
    return ((r.hardware, r.level) if isinstance(r, LinkCalibration) else
            (r.hardware, r.precision, r.shape))


def save(entry: Calibration | LinkCalibration, path: Path | None = None) -> Path:
    """Add a calibration, replacing one for the same hardware, precision and shape (a link
    calibration: the same hardware and level)."""
    path = path or default_path()
    if isinstance(entry, Calibration):
        try:
            check(entry)
        except ValueError as e:  # what the reader would refuse is never written
            raise SpecError(f"calibration not saved: {e}") from None
    rows = [r for r in _load_all(path) if type(r) is not type(entry) or _key(r) != _key(entry)]
    _write(rows + [entry], path)
    return path


def clear(path: Path | None = None, hardware: str | None = None) -> int:
    """Remove all calibrations (or those of one hardware); returns how many were removed."""
    path = path or default_path()
    rows = _load_all(path)
    keep = [r for r in rows if hardware is not None and r.hardware != hardware]
    if rows:
        _write(keep, path)
    return len(rows) - len(keep)


MAX_SIZE_RATIO = 10.0  # a calibration is not reused for a model 10x larger or smaller


def lookup(hardware: str, precision: str, params: float,
           path: Path | None = None) -> Calibration | None:
    """The calibration for this hardware and precision closest in model size, if one is
    within MAX_SIZE_RATIO of ``params`` (efficiency depends strongly on model size)."""
    def distance(r: Calibration) -> float:
        return abs(math.log(max(r.params, 1) / max(params, 1)))

    rows = [r for r in load(path) if r.hardware == hardware and r.precision == precision
            and distance(r) <= math.log(MAX_SIZE_RATIO)]
    return min(rows, key=distance) if rows else None


def lookup_links(hardware: str, path: Path | None = None) -> dict[str, LinkCalibration]:
    """The link calibrations of this hardware profile, by level."""
    return {r.level: r for r in load_links(path) if r.hardware == hardware}
