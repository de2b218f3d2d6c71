"""The migration timing model shared by the emulator and the planner (docs/timing-model.md).

The emulator steps `Precopy` in emulated time and shares node links between transfers with
`max_min_fair`; the planner uses `solo_migration` for estimates and `drain_lower_bounds` for the
physical limit a schedule is measured against. Everything here is a pure function of its
arguments: no I/O, no clock, randomness only through a `random.Random` the caller passes in.

This module imports only the Python standard library and the standard-library-only leaf
`pvetool.units` (nothing else from pvetool), so the emulator can use it without depending on the
code it checks.

Units are in the names: `_s` seconds, `_bytes` bytes, `_Bps` bytes per second, `_KiBps` KiB/s
(PVE's bwlimit unit), `link_bits_per_s` for nominal link speeds.

Calibration (tests/unit/test_timing.py::test_calibration_pve9_log): the recorded PVE 9 task
`qmigrate_online_pve9_ha_ok.log` (12.6 GiB configured memory, 11.7 GiB transferred, whole task
00:00:20, QEMU downtime 59 ms, secure: migration over a unix socket through the SSH tunnel) is
reproduced by `solo_migration` with the default TimingParams and this scenario:
B = 0.88 x 12.6 GiB of non-zero RAM, the "moderate" dirty profile (40 MiB/s, 1 GiB working set),
secure, no local disks, and a constant per-stream rate of 0.88e9 B/s for that host pair (its SSH
stream is faster than the 0.6e9 B/s default secure cap; the log's average is 806.6 MiB/s =
0.846e9 B/s, its steady state about 1 GiB/s). Result: duration 19.9 s, 11.64 GiB sent, QEMU
downtime 60.7 ms, one full pass plus stop-and-copy in the second.
The QEMU downtime depends on where the last pass meets the step grid (a stand-in for QEMU's
iteration granularity): under this model it lies between about D/r x step_s and the downtime
limit, plus device_state_s (for this scenario 34..130 ms), so one log pins it only to that range.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pvetool.units import GiB, KiB, MiB, TiB

# QEMU's auto-converge (upstream migration/ram.c: migration_trigger_throttle,
# mig_throttle_guest_down): evaluated at a bitmap sync (end of a pass) once at least 1 s passed
# since the last evaluation; a period that dirtied > 50 % of what it transferred counts
# (`++rs->dirty_rate_high_cnt >= 2`); the second such period, consecutive or not, starts the
# throttle at 20 % (then +10 %, at most 99 %) and resets the count. A low period does not reset
# it. Passes shorter than 1 s are merged into the next period, as QEMU does.
AUTO_CONVERGE_PERIOD_S: float = 1.0
AUTO_CONVERGE_DIRTY_RATIO: float = 0.5
AUTO_CONVERGE_HIGH_PERIODS: int = 2
THROTTLE_INITIAL: float = 0.2
THROTTLE_INCREMENT: float = 0.1
THROTTLE_MAX: float = 0.99

# Planning horizon of a pre-copy: a `Precopy` built without `give_up_s` (the planner's, and
# `solo_migration`) that has not converged after this many seconds per GiB of RAM is reported
# `aborted`, meaning "does not converge in any useful time". PVE itself never gives up
# (QemuMigrate.pm phase2 has no time limit); the emulator passes `give_up_s=math.inf`.
CONVERGENCE_HORIZON_S_PER_GIB: float = 800.0

# Tolerance for "this boundary is reached" in emulated seconds (float sums of dt).
_TIME_EPS_S: float = 1e-9


def _check_non_negative(name: str, value: float) -> None:
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class DirtyProfile:
    """How a guest dirties its memory while it is being migrated."""

    rate_Bps: float  # D, bytes dirtied per second
    wss_bytes: float  # W, writable working set (cap on what can be dirty at once)

    def __post_init__(self) -> None:
        _check_non_negative("rate_Bps", self.rate_Bps)
        _check_non_negative("wss_bytes", self.wss_bytes)


DIRTY_PROFILES: dict[str, DirtyProfile] = {
    "idle": DirtyProfile(rate_Bps=2 * MiB, wss_bytes=256 * MiB),
    "moderate": DirtyProfile(rate_Bps=40 * MiB, wss_bytes=1 * GiB),
    "hot": DirtyProfile(rate_Bps=400 * MiB, wss_bytes=4 * GiB),
}


@dataclass(frozen=True)
class TimingParams:
    """Parameters of the timing model; defaults from docs/timing-model.md (*est* = estimate)."""

    t_pre_s: float = 1.5
    t_start_s: float = 2.0
    t_start_secure_extra_s: float = 0.5
    t_res_s: float = 0.15
    t_post_s: float = 1.5
    device_state_s: float = 0.03
    stream_cap_secure_Bps: float = 0.6e9
    stream_cap_insecure_Bps: float = 2.5e9
    downtime_limit_s: float = 0.1
    downtime_limit_max_s: float = 2000.0
    step_s: float = 0.1  # fluid step of emulated time
    poll_s: float = 1.0  # PVE polls query-migrate every second...
    poll_fast_s: float = 0.1  # ...and every 100 ms once remaining < the average per poll
    stall_polls: int = 5  # more than this many counted polls -> double the limit
    # PVE never gives up on a slow migration (QemuMigrate.pm phase2). 0 = never (PVE); a value
    # > 0 is an emulator fault: abort after this many seconds per GiB of RAM.
    abort_s_per_gib: float = 0.0
    ha_crm_max_s: float = 10.0
    ha_lrm_max_s: float = 10.0
    ha_default_workers: int = 4
    lxc_shutdown_min_s: float = 2.0
    lxc_shutdown_max_s: float = 20.0
    lxc_shutdown_timeout_s: float = 180.0
    lxc_move_s: float = 1.0
    lxc_start_min_s: float = 1.0
    lxc_start_max_s: float = 3.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"timing parameter {f.name} must be an integer, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"timing parameter {f.name} must be a number, got {value!r}")
            _check_non_negative(f.name, value)
        for name in (
            "stream_cap_secure_Bps",
            "stream_cap_insecure_Bps",
            "downtime_limit_s",
            "step_s",
            "poll_s",
            "poll_fast_s",
            "ha_default_workers",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"timing parameter {name} must be > 0, got {getattr(self, name)}")
        if self.downtime_limit_max_s < self.downtime_limit_s:
            raise ValueError(
                f"downtime_limit_max_s ({self.downtime_limit_max_s}) must be >= "
                f"downtime_limit_s ({self.downtime_limit_s})"
            )
        for low, high in (
            ("lxc_shutdown_min_s", "lxc_shutdown_max_s"),
            ("lxc_start_min_s", "lxc_start_max_s"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low)}) must be <= {high} ({getattr(self, high)})"
                )

    def replace(self, **overrides: float) -> TimingParams:
        """A copy with some parameters changed; an unknown name is a ValueError naming it."""
        fields_by_name = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - set(fields_by_name))
        if unknown:
            raise ValueError(
                f"unknown timing parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(fields_by_name)}"
            )
        clean: dict[str, float] = {}
        for name, value in overrides.items():
            if isinstance(fields_by_name[name].default, int) and isinstance(value, float):
                # Integer parameters accept 5.0 (e.g. from a YAML file) but not 5.5.
                if not value.is_integer():
                    raise ValueError(f"timing parameter {name} must be an integer, got {value}")
                clean[name] = int(value)
            else:
                clean[name] = value
        return dataclasses.replace(self, **clean)  # type: ignore[arg-type]


# --- links and per-flow caps -----------------------------------------------------------------

# (nominal link bits/s, measured goodput bytes/s) anchors from the doc; TCP/IP + Ethernet framing
# leaves ~93 % of the line rate. Efficiency is interpolated in log(speed) between anchors and
# held constant outside them (2.5 GbE -> 0.2925e9, 40 GbE -> 4.64e9, 100 GbE -> 11.6e9).
_GOODPUT_ANCHORS: tuple[tuple[float, float], ...] = (
    (1e9, 0.117e9),
    (10e9, 1.17e9),
    (25e9, 2.9e9),
)


def link_goodput_Bps(link_bits_per_s: float) -> float:
    """Usable bytes/second of a node link of the given nominal speed (each direction)."""
    _check_non_negative("link_bits_per_s", link_bits_per_s)
    if link_bits_per_s == 0:
        return 0.0
    for bits, goodput in _GOODPUT_ANCHORS:
        if link_bits_per_s == bits:
            return goodput
    effs = [(bits, goodput * 8 / bits) for bits, goodput in _GOODPUT_ANCHORS]
    if link_bits_per_s <= effs[0][0]:
        eff = effs[0][1]
    elif link_bits_per_s >= effs[-1][0]:
        eff = effs[-1][1]
    else:
        eff = effs[-1][1]
        for (b0, e0), (b1, e1) in zip(effs, effs[1:], strict=False):
            if b0 <= link_bits_per_s <= b1:
                frac = math.log(link_bits_per_s / b0) / math.log(b1 / b0)
                eff = e0 + (e1 - e0) * frac
                break
    return link_bits_per_s / 8 * eff


def stream_cap_Bps(params: TimingParams, secure: bool, bwlimit_KiBps: float | None = None) -> float:
    """Per-migration cap: one QEMU stream (or SSH stream if secure), bounded by PVE's bwlimit."""
    cap = params.stream_cap_secure_Bps if secure else params.stream_cap_insecure_Bps
    if bwlimit_KiBps is not None and bwlimit_KiBps > 0:
        cap = min(cap, bwlimit_KiBps * KiB)
    return cap


def fixed_time_s(params: TimingParams, secure: bool) -> float:
    """Serial fixed cost of one qemu migration: T_pre + T_start (+ secure) + T_res + T_post."""
    start_s = params.t_start_s + (params.t_start_secure_extra_s if secure else 0.0)
    return params.t_pre_s + start_s + params.t_res_s + params.t_post_s


# --- fluid pre-copy --------------------------------------------------------------------------


@dataclass
class PrecopyEvent:
    """Something the emulator writes a task-log line for.

    kind: "auto-converge" (value = new throttle fraction 0.2..0.99), "downtime-capped" (value =
    the maximum limit in s; qemu-server logs "capping downtime limit to maximum possible" just
    before the "downtime-limit" event that reaches it), "downtime-limit" (value = new limit in s),
    "stop-and-copy" (value = final bytes), "aborted" (value = elapsed s; only with a give-up
    deadline, which PVE does not have).
    """

    kind: str
    value: float
    at_s: float  # elapsed pre-copy seconds when it happened


class Precopy:
    """Fluid RAM pre-copy of one migration; the caller steps it with the bandwidth it gets.

    Model (docs/timing-model.md, made precise):

    - Sending: `min(rem, r*dt)` bytes leave per step; memory is dirtied at D*(1-throttle) up to W.
    - A pass ends when its bytes are sent (the rest of the step goes on with the next pass, so no
      bandwidth is lost at pass boundaries): the bytes dirtied meanwhile become the next pass.
    - Stop-and-copy: checked at the end of every `step()` call, at every pass end and at least
      every `params.step_s` of elapsed time (on a grid aligned to the start): when
      `rem + dirtied <= r * downtime_limit`, the migration finishes with
      `final_bytes = rem + dirtied`; those bytes are added to `sent_bytes` (QEMU's final
      "transferred" includes them) and take `stop_copy_s(r)` of guest pause.
    - Auto-converge: see AUTO_CONVERGE_* above.
    - PVE's poll loop (qemu-server `src/PVE/QemuMigrate.pm` `phase2`, 9.2.6 l.1438-1576): it
      polls `query-migrate` every `poll_s`; from the first poll on which QEMU's `ram.remaining`
      (the current pass, `rem`) is below the average bytes transferred per poll so far
      (`$avglstat = $last_mem_transferred / $i`, l.1447, l.1525) it polls every `poll_fast_s`
      for good. Only polls on which `ram.transferred` changed are evaluated (l.1515-1518): such
      a poll counts when `rem` grew since the last evaluated poll or is 0 (l.1563-1565); more
      than `stall_polls` counted polls double the downtime limit (l.1568-1571,
      `increase_migrate_downtime`, capped at `downtime_limit_max_s`) and reset the count.
      Progress never resets it.
    - No give-up: PVE's loop ends only on QEMU's `completed`/`failed`/`cancelled` or on query
      errors, never on time, so a slow migration escalates its downtime limit until it
      converges (at worst with a pause of up to 2000 s). The deadline after which the
      pre-copy is `aborted` is `give_up_s` if given (`math.inf`: never, as on PVE; what the
      emulator uses), else `abort_s_per_gib` (an emulator fault) or the planning horizon
      `CONVERGENCE_HORIZON_S_PER_GIB` per GiB of RAM.
    - `step(0, dt)` only dirties memory (and polls): the migration had no bandwidth then.

    Steps may be of any length: a long step is cut internally at the grid, pass ends, polls and
    a deadline, so stepping 1.0 s once equals stepping 0.1 s ten times.
    After `finished` or `aborted`, `step()` does nothing and returns no events.
    """

    def __init__(
        self,
        ram_bytes: float,
        dirty_rate_Bps: float,
        wss_bytes: float,
        params: TimingParams,
        downtime_limit_s: float | None = None,
        give_up_s: float | None = None,
    ) -> None:
        _check_non_negative("ram_bytes", ram_bytes)
        _check_non_negative("dirty_rate_Bps", dirty_rate_Bps)
        _check_non_negative("wss_bytes", wss_bytes)
        limit_s = params.downtime_limit_s if downtime_limit_s is None else downtime_limit_s
        if not limit_s > 0:
            raise ValueError(f"downtime_limit_s must be > 0, got {limit_s}")
        self._params = params
        self.ram_bytes = float(ram_bytes)
        self.dirty_rate_Bps = float(dirty_rate_Bps)
        self.wss_bytes = float(wss_bytes)
        self._rem_bytes = float(ram_bytes)
        self._dirtied_bytes = 0.0
        self._sent_bytes = 0.0
        self._elapsed_s = 0.0
        self._throttle = 0.0
        self._limit_s = float(limit_s)
        self._passes = 0
        self._escalations = 0
        self._finished = False
        self._aborted = False
        self._final_bytes = 0.0
        if give_up_s is not None:
            _check_non_negative("give_up_s", give_up_s)
            self._deadline_s = float(give_up_s)
        else:
            per_gib_s = params.abort_s_per_gib or CONVERGENCE_HORIZON_S_PER_GIB
            self._deadline_s = per_gib_s * self.ram_bytes / GiB
        # current pass
        self._pass_bytes = float(ram_bytes)
        # auto-converge period (one or more passes, >= AUTO_CONVERGE_PERIOD_S)
        self._period_s = 0.0
        self._period_sent_bytes = 0.0
        self._period_dirtied_bytes = 0.0
        self._high_periods = 0
        # PVE polling
        self._polls = 0
        self._next_poll_s = params.poll_s
        self._poll_interval_s = params.poll_s
        self._last_poll_sent_bytes = 0.0  # $last_mem_transferred
        self._last_rem_bytes = 0.0  # $lastrem (0 = undef)
        self._stalled_polls = 0  # $downtimecounter

    # read-only state for the emulator's task-log lines and the planner's estimates
    @property
    def remaining_bytes(self) -> float:
        """Bytes left in the current pass."""
        return self._rem_bytes

    @property
    def dirtied_bytes(self) -> float:
        """Dirty bytes accumulated for the next pass."""
        return self._dirtied_bytes

    @property
    def sent_bytes(self) -> float:
        """Bytes on the wire so far (QEMU's "transferred"); includes final_bytes once finished."""
        return self._sent_bytes

    @property
    def elapsed_s(self) -> float:
        return self._elapsed_s

    @property
    def throttle(self) -> float:
        """Auto-converge CPU throttle, 0..0.99."""
        return self._throttle

    @property
    def downtime_limit_s(self) -> float:
        return self._limit_s

    @property
    def passes(self) -> int:
        """Completed passes (pass 1 is the bulk copy of B)."""
        return self._passes

    @property
    def escalations(self) -> int:
        """How many times PVE doubled the downtime limit."""
        return self._escalations

    @property
    def finished(self) -> bool:
        """Stop-and-copy reached (final_bytes set)."""
        return self._finished

    @property
    def aborted(self) -> bool:
        """Gave up at the deadline (`give_up_s` or the `abort_s_per_gib` fault); PVE never does."""
        return self._aborted

    @property
    def polls(self) -> int:
        """PVE's query-migrate polls so far."""
        return self._polls

    @property
    def stalled_polls(self) -> int:
        """qemu-server's `$downtimecounter`: counted polls since the last escalation."""
        return self._stalled_polls

    @property
    def poll_interval_s(self) -> float:
        """PVE's current query-migrate interval: poll_s, or poll_fast_s near the end."""
        return self._poll_interval_s

    def next_poll_after_s(self, elapsed_s: float) -> float:
        """Elapsed seconds of the first PVE poll at or after `elapsed_s` (when PVE sees the
        migration completed, once QEMU finished its stop-and-copy)."""
        t_s = self._next_poll_s
        while t_s < elapsed_s - _TIME_EPS_S:
            t_s += self._poll_interval_s
        return t_s

    @property
    def final_bytes(self) -> float:
        """Bytes sent during stop-and-copy (0 until finished)."""
        return self._final_bytes

    def stop_copy_s(self, rate_Bps: float) -> float:
        """Guest pause for stop-and-copy at this rate: final_bytes / rate + device state."""
        if not rate_Bps > 0:
            raise ValueError(f"stop-and-copy needs a rate > 0, got {rate_Bps}")
        return self._final_bytes / rate_Bps + self._params.device_state_s

    def step(self, rate_Bps: float, dt_s: float) -> list[PrecopyEvent]:
        """Advance by dt_s seconds at rate_Bps; return what happened (in order)."""
        _check_non_negative("rate_Bps", rate_Bps)
        _check_non_negative("dt_s", dt_s)
        if math.isinf(dt_s):
            raise ValueError("dt_s must be finite")
        events: list[PrecopyEvent] = []
        if self._finished or self._aborted or dt_s == 0:
            return events
        p = self._params
        end_s = self._elapsed_s + dt_s
        while True:
            now_s = self._elapsed_s
            next_grid_s = (math.floor(now_s / p.step_s + _TIME_EPS_S) + 1) * p.step_s
            next_poll_s = self._next_poll_s
            target_s = min(end_s, next_grid_s, next_poll_s, max(self._deadline_s, now_s))
            h_s = target_s - now_s
            pass_ends = False
            if rate_Bps > 0 and self._rem_bytes <= rate_Bps * h_s:
                h_s = self._rem_bytes / rate_Bps
                pass_ends = True
                target_s = now_s + h_s
            self._advance(rate_Bps, h_s, pass_ends)
            self._elapsed_s = target_s

            if self._rem_bytes + self._dirtied_bytes <= rate_Bps * self._limit_s:
                self._finish(events)
                break
            if pass_ends:
                self._end_pass(events)
            if self._elapsed_s >= next_poll_s - _TIME_EPS_S:
                self._poll(events)
            if self._elapsed_s >= self._deadline_s - _TIME_EPS_S:
                self._aborted = True
                events.append(PrecopyEvent("aborted", self._elapsed_s, self._elapsed_s))
                break
            if self._elapsed_s >= end_s - _TIME_EPS_S:
                break
        return events

    def _advance(self, rate_Bps: float, h_s: float, pass_ends: bool) -> None:
        send_bytes = self._rem_bytes if pass_ends else min(self._rem_bytes, rate_Bps * h_s)
        self._rem_bytes -= send_bytes
        self._sent_bytes += send_bytes
        dirty_Bps = self.dirty_rate_Bps * (1.0 - self._throttle)
        self._dirtied_bytes = min(self.wss_bytes, self._dirtied_bytes + dirty_Bps * h_s)
        self._period_s += h_s

    def _finish(self, events: list[PrecopyEvent]) -> None:
        self._final_bytes = self._rem_bytes + self._dirtied_bytes
        self._sent_bytes += self._final_bytes
        self._rem_bytes = 0.0
        self._dirtied_bytes = 0.0
        self._finished = True
        events.append(PrecopyEvent("stop-and-copy", self._final_bytes, self._elapsed_s))

    def _end_pass(self, events: list[PrecopyEvent]) -> None:
        self._period_sent_bytes += self._pass_bytes
        self._period_dirtied_bytes += self._dirtied_bytes
        if self._period_s >= AUTO_CONVERGE_PERIOD_S - _TIME_EPS_S:
            high = self._period_dirtied_bytes > AUTO_CONVERGE_DIRTY_RATIO * self._period_sent_bytes
            if high:
                self._high_periods += 1  # not reset by a low period (QEMU ram.c)
            if high and self._high_periods >= AUTO_CONVERGE_HIGH_PERIODS:
                self._high_periods = 0
                if self._throttle == 0:
                    new = THROTTLE_INITIAL
                else:
                    new = min(THROTTLE_MAX, round(self._throttle + THROTTLE_INCREMENT, 6))
                if new != self._throttle:
                    self._throttle = new
                    events.append(PrecopyEvent("auto-converge", new, self._elapsed_s))
            self._period_s = 0.0
            self._period_sent_bytes = 0.0
            self._period_dirtied_bytes = 0.0
        self._rem_bytes = self._dirtied_bytes
        self._pass_bytes = self._rem_bytes
        self._dirtied_bytes = 0.0
        self._passes += 1

    def _poll(self, events: list[PrecopyEvent]) -> None:
        # qemu-server src/PVE/QemuMigrate.pm phase2 (9.2.6 l.1445-1575), one query-migrate.
        self._polls += 1
        avg_per_poll = self._last_poll_sent_bytes / self._polls  # $avglstat, l.1447
        sent = self._sent_bytes
        rem = self._rem_bytes  # QEMU's ram.remaining: the current pass
        if sent != self._last_poll_sent_bytes:  # l.1515-1518: only when transferred changed
            if avg_per_poll and rem < avg_per_poll:  # l.1525: from now on every 100 ms
                self._poll_interval_s = self._params.poll_fast_s
            if (self._last_rem_bytes and rem > self._last_rem_bytes) or rem == 0:
                self._stalled_polls += 1  # l.1563-1565, never reset by progress
            self._last_rem_bytes = rem
            if self._stalled_polls > self._params.stall_polls:
                self._stalled_polls = 0
                self._increase_downtime(events)
        self._last_poll_sent_bytes = sent
        self._next_poll_s += self._poll_interval_s

    def _increase_downtime(self, events: list[PrecopyEvent]) -> None:
        # QemuMigrate.pm increase_migrate_downtime / cap_migrate_downtime (l.1177-1212): at the
        # maximum nothing happens; else double, capped (logged once) at the maximum.
        limit_max_s = self._params.downtime_limit_max_s
        if self._limit_s >= limit_max_s:
            return
        new_limit_s = self._limit_s * 2
        if new_limit_s > limit_max_s:
            new_limit_s = limit_max_s
            events.append(PrecopyEvent("downtime-capped", limit_max_s, self._elapsed_s))
        self._limit_s = new_limit_s
        self._escalations += 1
        events.append(PrecopyEvent("downtime-limit", new_limit_s, self._elapsed_s))


# --- one migration alone ---------------------------------------------------------------------


@dataclass(frozen=True)
class SoloResult:
    """One qemu migration alone at a constant rate."""

    duration_s: float  # whole migration incl. fixed phases, local disks and stop-and-copy
    precopy_s: float  # RAM pre-copy until stop-and-copy (or abort)
    sent_bytes: float  # RAM bytes on the wire incl. stop-and-copy (QEMU's "transferred")
    downtime_s: float  # stop-and-copy + t_res (guest-visible); 0 if aborted
    escalations: int
    max_throttle: float
    aborted: bool
    logged_downtime_s: float = 0.0  # what the task log reports: QEMU's stop-and-copy time
    passes: int = 0
    disk_s: float = 0.0  # local-disk mirror before the RAM phase


# Chunk for stepping a solo pre-copy; Precopy cuts it internally, so this is only a loop size.
_SOLO_CHUNK_S: float = 60.0


def solo_migration(
    ram_bytes: float,
    dirty: DirtyProfile,
    rate_Bps: float,
    params: TimingParams,
    secure: bool,
    local_disk_bytes: float = 0.0,
) -> SoloResult:
    """One qemu migration alone at a constant rate.

    fixed phases + local disks (disk bytes / rate, before RAM) + pre-copy + stop-and-copy, or
    until PVE's next query-migrate poll sees the end when that comes later. An aborted
    migration costs its fixed phases, disks and the pre-copy until the abort.
    """
    if not rate_Bps > 0 or math.isinf(rate_Bps):
        raise ValueError(f"rate_Bps must be finite and > 0, got {rate_Bps}")
    _check_non_negative("local_disk_bytes", local_disk_bytes)
    precopy = Precopy(ram_bytes, dirty.rate_Bps, dirty.wss_bytes, params)
    max_throttle = 0.0
    while not (precopy.finished or precopy.aborted):
        precopy.step(rate_Bps, _SOLO_CHUNK_S)
        # The throttle only rises during one migration, so the last value is the maximum.
        max_throttle = max(max_throttle, precopy.throttle)
    disk_s = local_disk_bytes / rate_Bps
    stop_copy_s = 0.0 if precopy.aborted else precopy.stop_copy_s(rate_Bps)
    downtime_s = 0.0 if precopy.aborted else stop_copy_s + params.t_res_s
    # PVE sees "completed" only at its next query-migrate poll (QemuMigrate.pm phase2).
    seen_s = stop_copy_s
    if not precopy.aborted:
        end_s = precopy.elapsed_s + stop_copy_s
        seen_s = max(stop_copy_s, precopy.next_poll_after_s(end_s) - precopy.elapsed_s)
    return SoloResult(
        duration_s=fixed_time_s(params, secure) + disk_s + precopy.elapsed_s + seen_s,
        precopy_s=precopy.elapsed_s,
        sent_bytes=precopy.sent_bytes,
        downtime_s=downtime_s,
        escalations=precopy.escalations,
        max_throttle=max_throttle,
        aborted=precopy.aborted,
        logged_downtime_s=stop_copy_s,
        passes=precopy.passes,
        disk_s=disk_s,
    )


# --- bandwidth sharing -----------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """One active transfer: the resources it crosses and its own cap."""

    resources: tuple[str, ...]  # e.g. ("up:pve1", "down:pve2")
    cap_Bps: float  # per-flow cap (stream cap / bwlimit)


def max_min_fair(flows: Sequence[Flow], capacity_Bps: Mapping[str, float]) -> list[float]:
    """Max-min fair rates by progressive filling, one per flow, in the order of `flows`.

    All unfrozen flows grow at the same level; a flow freezes when it reaches its cap or when a
    resource it crosses saturates. Event-driven with a heap, O((F*k + R) log R) for F flows of
    k resources each. A resource named by a flow must be in capacity_Bps (math.inf is allowed);
    a flow naming the same resource twice uses it once.
    """
    n_flows = len(flows)
    rates = [0.0] * n_flows
    if n_flows == 0:
        return rates
    flow_resources: list[tuple[str, ...]] = []
    members: dict[str, list[int]] = {}
    for i, flow in enumerate(flows):
        _check_non_negative("cap_Bps", flow.cap_Bps)
        resources = tuple(dict.fromkeys(flow.resources))
        flow_resources.append(resources)
        for name in resources:
            if name not in capacity_Bps:
                raise ValueError(f"flow {i} uses resource {name!r} that has no capacity")
            members.setdefault(name, []).append(i)

    unfrozen_count = {name: len(idx) for name, idx in members.items()}
    used_Bps = dict.fromkeys(members, 0.0)
    version = dict.fromkeys(members, 0)
    for name in members:
        _check_non_negative(f"capacity of {name}", capacity_Bps[name])

    def share(name: str, level: float) -> float:
        # The level at which this resource saturates, never below the current level.
        free = capacity_Bps[name] - used_Bps[name]
        return max(level, free / unfrozen_count[name])

    heap: list[tuple[float, int, str]] = [(share(name, 0.0), 0, name) for name in members]
    heapq.heapify(heap)
    by_cap = sorted(range(n_flows), key=lambda i: flows[i].cap_Bps)
    frozen = [False] * n_flows
    next_cap = 0
    level = 0.0
    remaining = n_flows

    def freeze(i: int, rate: float, saturated: str | None) -> None:
        nonlocal remaining
        frozen[i] = True
        rates[i] = rate
        remaining -= 1
        for name in flow_resources[i]:
            if name == saturated:
                continue
            used_Bps[name] += rate
            unfrozen_count[name] -= 1
            version[name] += 1
            if unfrozen_count[name] > 0:
                heapq.heappush(heap, (share(name, level), version[name], name))

    while remaining > 0:
        while next_cap < n_flows and frozen[by_cap[next_cap]]:
            next_cap += 1
        while heap and (heap[0][1] != version[heap[0][2]] or unfrozen_count[heap[0][2]] == 0):
            heapq.heappop(heap)
        cap_level = flows[by_cap[next_cap]].cap_Bps if next_cap < n_flows else math.inf
        res_level = heap[0][0] if heap else math.inf
        if cap_level <= res_level:
            level = max(level, cap_level)
            freeze(by_cap[next_cap], flows[by_cap[next_cap]].cap_Bps, None)
        else:
            _, _, name = heapq.heappop(heap)
            level = max(level, res_level)
            # Saturated: every unfrozen flow through it stops here at the common level.
            unfrozen_count[name] = 0
            version[name] += 1
            for i in members[name]:
                if not frozen[i]:
                    freeze(i, level, name)
            used_Bps[name] = capacity_Bps[name]
    return rates


# --- lower bounds of a drain -----------------------------------------------------------------


@dataclass(frozen=True)
class LbGuest:
    """One guest leaving the drained node, for the lower bound."""

    ram_bytes: float  # non-zero RAM to send (B)
    local_disk_bytes: float
    dirty: DirtyProfile
    rate_cap_Bps: float  # r_i = min(stream_cap, bwlimit, uplink(source), downlink(target))
    kind: str = "qemu"  # "qemu" (live or offline) or "lxc" (restart): its fixed lead and tail


@dataclass(frozen=True)
class LowerBounds:
    lb_pure_s: float
    lb_dirty_s: float
    bound_by: str  # "uplink" or "stream" (which term of the max bounds LB_dirty)
    # max(LB_dirty, lead + sum of the dirty B_i / uplink + tail): the uplink carries nothing
    # before the first migration's fixed lead is over, and the last one still has its tail
    lb_link_s: float = 0.0


def drain_lower_bounds(
    guests: Sequence[LbGuest], uplink_Bps: float, params: TimingParams, secure: bool
) -> LowerBounds:
    """Physical lower bounds of draining one node (docs/timing-model.md).

    LB_pure  = max(sum B_i / uplink, max_i (T_fixed + B_i / r_i)), B_i = RAM + local disk bytes.
    LB_dirty = the same with B_i = the bytes guest i sends when it migrates alone at r_i (its
    pre-copy RAM bytes incl. stop-and-copy, plus its disks). On a tie bound_by is "uplink".
    LB_link  = max(LB_dirty, min_i lead_i + sum B_i (dirty) / uplink + min_i tail_i): no byte
    leaves before some migration is past its fixed lead (qemu: T_pre + T_start; lxc restart:
    the shortest shutdown), and the migration that sends the last byte still has its fixed
    tail (qemu: T_res + T_post; lxc: move + the shortest start). Still a lower bound, tighter
    when many small guests share the uplink.
    """
    if not uplink_Bps > 0:
        raise ValueError(f"uplink_Bps must be > 0, got {uplink_Bps}")
    t_fixed_s = fixed_time_s(params, secure)
    pure_bytes: list[float] = []
    dirty_bytes: list[float] = []
    for i, guest in enumerate(guests):
        if not guest.rate_cap_Bps > 0:
            raise ValueError(f"guest {i}: rate_cap_Bps must be > 0, got {guest.rate_cap_Bps}")
        pure_bytes.append(guest.ram_bytes + guest.local_disk_bytes)
        solo = solo_migration(guest.ram_bytes, guest.dirty, guest.rate_cap_Bps, params, secure)
        dirty_bytes.append(solo.sent_bytes + guest.local_disk_bytes)

    def bound(sizes: list[float]) -> tuple[float, float]:
        uplink_s = sum(sizes) / uplink_Bps
        stream_s = max(
            (t_fixed_s + b / g.rate_cap_Bps for b, g in zip(sizes, guests, strict=True)),
            default=0.0,
        )
        return uplink_s, stream_s

    pure_uplink_s, pure_stream_s = bound(pure_bytes)
    dirty_uplink_s, dirty_stream_s = bound(dirty_bytes)
    lb_dirty_s = max(dirty_uplink_s, dirty_stream_s)
    tail_qemu_s = params.t_res_s + params.t_post_s
    lead_lxc_s = params.t_pre_s / 2 + params.lxc_shutdown_min_s  # prepare, then the shutdown
    leads = [lead_lxc_s if g.kind == "lxc" else t_fixed_s - tail_qemu_s for g in guests]
    tails = [
        params.lxc_move_s + params.lxc_start_min_s if g.kind == "lxc" else tail_qemu_s
        for g in guests
    ]
    link_s = min(leads, default=0.0) + dirty_uplink_s + min(tails, default=0.0)
    return LowerBounds(
        lb_pure_s=max(pure_uplink_s, pure_stream_s),
        lb_dirty_s=lb_dirty_s,
        bound_by="uplink" if dirty_uplink_s >= dirty_stream_s else "stream",
        lb_link_s=max(lb_dirty_s, link_s) if guests else 0.0,
    )


# --- LXC restart and HA delays ---------------------------------------------------------------


def lxc_restart_times(rng: random.Random, params: TimingParams) -> tuple[float, float, float]:
    """(shutdown_s, move_s, start_s) of an LXC restart migration; all of it is downtime."""
    shutdown_s = min(
        rng.uniform(params.lxc_shutdown_min_s, params.lxc_shutdown_max_s),
        params.lxc_shutdown_timeout_s,
    )
    start_s = rng.uniform(params.lxc_start_min_s, params.lxc_start_max_s)
    return shutdown_s, params.lxc_move_s, start_s


def ha_delay_s(rng: random.Random, params: TimingParams) -> float:
    """Delay before the HA stack starts a requested migration: CRM loop + LRM loop."""
    return rng.uniform(0.0, params.ha_crm_max_s) + rng.uniform(0.0, params.ha_lrm_max_s)


__all__ = [
    "AUTO_CONVERGE_DIRTY_RATIO",
    "AUTO_CONVERGE_HIGH_PERIODS",
    "AUTO_CONVERGE_PERIOD_S",
    "CONVERGENCE_HORIZON_S_PER_GIB",
    "DIRTY_PROFILES",
    "GiB",
    "KiB",
    "MiB",
    "THROTTLE_INCREMENT",
    "THROTTLE_INITIAL",
    "THROTTLE_MAX",
    "TiB",
    "DirtyProfile",
    "Flow",
    "LbGuest",
    "LowerBounds",
    "Precopy",
    "PrecopyEvent",
    "SoloResult",
    "TimingParams",
    "drain_lower_bounds",
    "fit_dirty_profile",
    "fixed_time_s",
    "ha_delay_s",
    "link_goodput_Bps",
    "lxc_restart_times",
    "max_min_fair",
    "profile_from_cpu",
    "solo_migration",
    "stream_cap_Bps",
]


def link_bits_for_goodput(goodput_Bps: float) -> float:
    """The nominal link speed (bits/s) whose usable bytes/second is `goodput_Bps`: the inverse
    of `link_goodput_Bps` (monotonic), for links learned from measured migration rates."""
    _check_non_negative("goodput_Bps", goodput_Bps)
    if goodput_Bps == 0:
        return 0.0
    low, high = 1.0, 1e13
    for _ in range(100):  # bisection in log space: well below 1e-6 relative error
        mid = math.sqrt(low * high)
        if link_goodput_Bps(mid) < goodput_Bps:
            low = mid
        else:
            high = mid
    return high


def fit_dirty_profile(
    ram_bytes: float,
    sent_bytes: float,
    rate_Bps: float,
    params: TimingParams,
    *,
    converged_hardly: bool = False,
) -> str:
    """The dirty profile (a key of `DIRTY_PROFILES`) that best explains a guest's own finished
    migration: the one whose pre-copy, from `ram_bytes` of RAM at the `rate_Bps` that migration
    ran at, sends closest to the `sent_bytes` it really sent (ratio in log space).

    What a guest re-sends is what it dirtied while it was sent; the planner has no better
    witness (PVE reports no dirty rate, and CPU load says little: a busy guest may compute in
    its caches, an almost idle one may stream writes). `converged_hardly` (QEMU's dirty rate
    exceeded the transfer rate at some poll, or PVE had to raise the downtime limit) means
    "hot" whatever the bytes say. `ram_bytes` should be the figure the planner will predict
    with (the guest's used memory), so an error in it is absorbed here, not doubled.
    Client side only: the emulator does not use it.
    """
    if converged_hardly:
        return "hot"
    if not (ram_bytes > 0 and sent_bytes > 0 and rate_Bps > 0) or math.isinf(rate_Bps):
        raise ValueError("ram_bytes, sent_bytes and rate_Bps must be finite and > 0")
    best, best_err = "idle", math.inf
    for name, profile in DIRTY_PROFILES.items():
        solo = solo_migration(ram_bytes, profile, rate_Bps, params, secure=True)
        err = abs(math.log(max(solo.sent_bytes, 1.0) / sent_bytes))
        if err < best_err:
            best, best_err = name, err
    return best


# The CPU-load prior (`profile_from_cpu`). Dirtying memory takes CPU time, so a guest that uses
# little CPU cannot dirty much; the converse does not hold (a compute-bound guest can dirty
# almost nothing), so the prior errs towards "hot" (slower predictions), never towards "idle".
CPU_PRIOR_MODERATE: float = 0.06
CPU_PRIOR_HOT: float = 0.25


def profile_from_cpu(cpu_fraction: float) -> str:
    """The dirty profile guessed from a guest's CPU load (a fraction of its vCPUs, as
    /cluster/resources reports it) when nothing better is known."""
    if cpu_fraction >= CPU_PRIOR_HOT:
        return "hot"
    if cpu_fraction >= CPU_PRIOR_MODERATE:
        return "moderate"
    return "idle"
