//! The Intel 8254 programmable interval timer (ports 0x40-0x43) and system control port B
//! (port 0x61), which owns channel 2's gate, the speaker enable, and reads back channel 2's
//! output and the refresh toggle.
//!
//! The counters run at 1.193182 MHz off the virtual time handed in with every access; nothing
//! is ticked. Each channel's count element is computed from when it was loaded, so a read at any
//! time gives the value the chip would have. Channel 0's output drives IRQ0: the machine asks
//! [`Timed::next_deadline`] when it next rises and [`Pit::irq0_edges`] how many rising edges
//! happened since it last asked (it pulses IRQ0 once if there were any; missed edges merge as
//! they would at an edge-triggered PIC input).
//!
//! Port offsets are the ISA port numbers (see [`PORTS`]).

use crate::{from_bcd, read_bytes, to_bcd, write_bytes, PortDevice, Timed, NS_PER_SEC};

/// The ports this device decodes, as (first port, count). Offsets are port numbers.
pub const PORTS: &[(u16, u16)] = &[(0x40, 4), (0x61, 1)];

/// The 8254's input clock on a PC.
pub const PIT_HZ: u64 = 1_193_182;

/// Half-period of the DRAM refresh request that port 0x61 bit 4 shows: on the AT the BIOS
/// programs channel 1 for a 15.085 us refresh cycle, and later chipsets keep the toggle at that
/// rate without channel 1. BIOS and Linux delay loops count its toggles.
const REFRESH_TOGGLE_NS: u64 = 15_085;

/// PIT input clock ticks elapsed at virtual time `ns`.
fn tick_at(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PIT_HZ) / u128::from(NS_PER_SEC)) as u64
}

/// The first virtual time at which `tick_at` reaches `tick`.
fn ns_at(tick: u64) -> u64 {
    let ns = (u128::from(tick) * u128::from(NS_PER_SEC)).div_ceil(u128::from(PIT_HZ));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// How the counter register is read and written (control word bits 5:4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Least significant byte only.
    Lsb,
    /// Most significant byte only.
    Msb,
    /// LSB then MSB.
    #[default]
    LsbMsb,
}

impl Access {
    fn bits(self) -> u8 {
        match self {
            Access::Lsb => 1,
            Access::Msb => 2,
            Access::LsbMsb => 3,
        }
    }
}

/// What the count element is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Run {
    /// Not loaded since the control word (or, in modes 1 and 5, waiting for a gate trigger).
    #[default]
    Idle,
    /// Counting since input tick `start` (the tick at which the count element was loaded).
    Counting {
        /// Input clock tick at which the count was loaded.
        start: u64,
    },
    /// Stopped by the gate (or, in mode 0, by the first byte of a new count) after `elapsed`
    /// ticks of counting.
    Paused {
        /// Ticks counted before the stop.
        elapsed: u64,
    },
}

/// A latched count being read out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountLatch {
    /// The latched count, as the guest sees it (BCD in BCD mode).
    pub value: u16,
    /// The MSB is next (LSB/MSB access after the LSB was read).
    pub msb_next: bool,
}

/// The guest-visible state of one counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelState {
    /// Counter mode 0-5.
    pub mode: u8,
    /// BCD counting.
    pub bcd: bool,
    /// Register access mode.
    pub access: Access,
    /// Count register: the last count written (0 means the maximum count).
    pub count_register: u16,
    /// The count the current cycle runs with, 1-65536 (1-10000 in BCD).
    pub active_count: u32,
    /// A count has been written since the control word.
    pub has_count: bool,
    /// In modes 2 and 3 a count written while counting takes effect at the end of the current
    /// period: the input tick at which that happens.
    pub reload_at: Option<u64>,
    /// The count element's run state.
    pub run: Run,
    /// The gate input.
    pub gate: bool,
    /// Status NULL COUNT: a count was written but not yet loaded into the count element.
    pub null_count: bool,
    /// LSB/MSB writes: the LSB has been written and the MSB is next.
    pub write_msb_next: bool,
    /// The LSB written first in LSB/MSB mode.
    pub write_lsb: u8,
    /// LSB/MSB reads of the live counter: the MSB is next.
    pub read_msb_next: bool,
    /// A count latched by a latch or read-back command, until it is read.
    pub count_latch: Option<CountLatch>,
    /// A status byte latched by a read-back command, until it is read.
    pub status_latch: Option<u8>,
}

impl ChannelState {
    /// The count's modulus: the counter wraps through 0 to 65535 (9999 in BCD).
    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            65_536
        }
    }

    /// The count a register value stands for: 0 is the maximum count.
    fn count_of(&self, raw: u16) -> u32 {
        let n = if self.bcd {
            let digits = u32::from(from_bcd(raw as u8)) + 100 * u32::from(from_bcd((raw >> 8) as u8));
            digits % 10_000
        } else {
            u32::from(raw)
        };
        if n == 0 {
            self.modulus() as u32
        } else {
            n
        }
    }

    fn elapsed(&self, tick: u64) -> Option<u64> {
        match self.run {
            Run::Idle => None,
            Run::Counting { start } => Some(tick.saturating_sub(start)),
            Run::Paused { elapsed } => Some(elapsed),
        }
    }

    /// Applies a pending mode 2/3 reload that is due by `tick`.
    fn settle(&mut self, tick: u64) {
        let Some(at) = self.reload_at else { return };
        if matches!(self.run, Run::Counting { .. }) && tick >= at {
            self.active_count = self.count_of(self.count_register);
            self.run = Run::Counting { start: at };
            self.reload_at = None;
            self.null_count = false;
        }
    }

    /// The count element's value at `tick`, in binary.
    fn counter(&self, tick: u64) -> u64 {
        let n = u64::from(self.active_count.max(1));
        let m = self.modulus();
        let Some(e) = self.elapsed(tick) else {
            return u64::from(self.count_of(self.count_register)) % m;
        };
        match self.mode {
            2 => (n - e % n) % m,
            3 => {
                // Counts down by two through each half of the period; an odd count loads one
                // less and spends the extra clock in the high half.
                let half = n.div_ceil(2);
                let q = e % n;
                let q = if q < half { q } else { q - half };
                ((n - 2 * q) & !1) % m
            }
            // Modes 0, 1, 4, 5 count down once and wrap on.
            _ => (n + m - e % m) % m,
        }
    }

    /// The OUT pin at `tick`.
    fn out(&self, tick: u64) -> bool {
        let n = u64::from(self.active_count.max(1));
        match (self.run, self.mode) {
            // Mode 0 starts low after the control word; every other mode starts high.
            (Run::Idle, mode) => mode != 0,
            // A low gate forces OUT high in modes 2 and 3.
            (Run::Paused { .. }, 2 | 3) => true,
            _ => {
                let e = self.elapsed(tick).unwrap_or(0);
                match self.mode {
                    0 | 1 => e >= n,
                    2 => e % n != n - 1,
                    3 => e % n < n.div_ceil(2),
                    _ => e != n, // 4, 5: low for one clock when the count reaches zero
                }
            }
        }
    }

    /// Rising edges of OUT in the counting interval (e0, e1] ticks after the load, for the
    /// current cycle.
    fn rises_between(&self, e0: u64, e1: u64) -> u64 {
        let n = u64::from(self.active_count.max(1));
        match self.mode {
            0 | 1 => u64::from(e0 < n && n <= e1),
            2 | 3 => e1 / n - e0 / n,
            _ => u64::from(e0 < n + 1 && n < e1),
        }
    }

    /// The first rising edge strictly after `e` ticks into the current cycle.
    fn next_rise_after(&self, e: u64) -> Option<u64> {
        let n = u64::from(self.active_count.max(1));
        match self.mode {
            0 | 1 => (e < n).then_some(n),
            2 | 3 => Some((e / n + 1) * n),
            _ => (e < n + 1).then_some(n + 1),
        }
    }

    /// Rising edges of OUT in the tick interval (from, to], including a pending reload.
    fn rises(&self, from: u64, to: u64) -> u64 {
        let Run::Counting { start } = self.run else {
            return 0;
        };
        if to <= from {
            return 0;
        }
        match self.reload_at {
            Some(at) if at < to => {
                let before = if from < at {
                    self.rises_between(from.saturating_sub(start), at.saturating_sub(start))
                } else {
                    0
                };
                let mut next = self.clone();
                next.settle(at);
                before + next.rises(from.max(at), to)
            }
            _ => self.rises_between(from.saturating_sub(start), to.saturating_sub(start)),
        }
    }

    /// The input tick of the next rising edge of OUT after `tick`.
    fn next_rise(&self, tick: u64) -> Option<u64> {
        let Run::Counting { start } = self.run else {
            return None;
        };
        let e = tick.saturating_sub(start);
        let candidate = self.next_rise_after(e).map(|r| start + r);
        match self.reload_at {
            Some(at) if candidate.is_none_or(|c| c > at) => {
                let mut next = self.clone();
                next.settle(at);
                next.next_rise(tick.max(at))
            }
            _ => candidate,
        }
    }

    /// Starts counting the count register's value from the next input clock (the 8254 loads
    /// the count element on the clock after the write or trigger).
    fn load(&mut self, tick: u64) {
        self.active_count = self.count_of(self.count_register);
        self.reload_at = None;
        self.null_count = false;
        self.run = if self.gate || matches!(self.mode, 1 | 5) {
            Run::Counting { start: tick + 1 }
        } else {
            Run::Paused { elapsed: 0 }
        };
    }

    fn write_control(&mut self, val: u8) {
        self.access = match (val >> 4) & 3 {
            1 => Access::Lsb,
            2 => Access::Msb,
            _ => Access::LsbMsb,
        };
        // Modes 6 and 7 are aliases of 2 and 3.
        self.mode = match (val >> 1) & 7 {
            6 => 2,
            7 => 3,
            m => m,
        };
        self.bcd = val & 1 != 0;
        self.run = Run::Idle;
        self.has_count = false;
        self.reload_at = None;
        self.null_count = true;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.count_latch = None;
        self.status_latch = None;
    }

    fn write_count(&mut self, val: u8, tick: u64) {
        let raw = match self.access {
            Access::Lsb => u16::from(val),
            Access::Msb => u16::from(val) << 8,
            Access::LsbMsb if !self.write_msb_next => {
                self.write_lsb = val;
                self.write_msb_next = true;
                if self.mode == 0 {
                    // Mode 0: the first byte stops the count and drives OUT low.
                    self.run = Run::Idle;
                }
                return;
            }
            Access::LsbMsb => {
                self.write_msb_next = false;
                u16::from(self.write_lsb) | (u16::from(val) << 8)
            }
        };
        self.count_register = raw;
        self.has_count = true;
        self.null_count = true;
        match self.mode {
            0 | 4 => self.load(tick),
            // Modes 1 and 5 wait for a gate trigger; a running cycle keeps its count.
            1 | 5 => {}
            _ => match self.run {
                // Once the count element is loaded, a new count waits for the period's end;
                // before that clock it simply replaces the count about to be loaded.
                Run::Counting { start } if tick >= start => {
                    // The new count takes over at the end of the current period.
                    let n = u64::from(self.active_count.max(1));
                    let e = tick.saturating_sub(start);
                    self.reload_at = Some(start + (e / n + 1) * n);
                }
                _ => self.load(tick),
            },
        }
    }

    fn set_gate(&mut self, level: bool, tick: u64) {
        if level == self.gate {
            return;
        }
        self.gate = level;
        if level {
            match (self.mode, self.run) {
                (0 | 4, Run::Paused { elapsed }) => {
                    self.run = Run::Counting { start: tick.saturating_sub(elapsed) };
                }
                // A rising gate (re)triggers modes 1 and 5 and restarts modes 2 and 3.
                (1 | 5, _) if self.has_count => self.load(tick),
                (2 | 3, Run::Paused { .. } | Run::Counting { .. }) => self.load(tick),
                _ => {}
            }
        } else if let (0 | 2 | 3 | 4, Run::Counting { start }) = (self.mode, self.run) {
            self.reload_at = None;
            self.run = Run::Paused { elapsed: tick.saturating_sub(start) };
        }
    }

    /// The value the guest reads for the count: binary, or four BCD digits.
    fn visible_count(&self, tick: u64) -> u16 {
        let v = self.counter(tick);
        if self.bcd {
            let v = v % 10_000;
            u16::from(to_bcd((v % 100) as u8)) | (u16::from(to_bcd((v / 100) as u8)) << 8)
        } else {
            v as u16
        }
    }

    fn status(&self, tick: u64) -> u8 {
        (u8::from(self.out(tick)) << 7)
            | (u8::from(self.null_count) << 6)
            | (self.access.bits() << 4)
            | (self.mode << 1)
            | u8::from(self.bcd)
    }

    fn latch_count(&mut self, tick: u64) {
        // A second latch before the first is read is ignored.
        if self.count_latch.is_none() {
            self.count_latch = Some(CountLatch { value: self.visible_count(tick), msb_next: false });
        }
    }

    fn read(&mut self, tick: u64) -> u8 {
        if let Some(status) = self.status_latch.take() {
            return status;
        }
        if let Some(latch) = self.count_latch.as_mut() {
            let (byte, done) = match self.access {
                Access::Lsb => (latch.value as u8, true),
                Access::Msb => ((latch.value >> 8) as u8, true),
                Access::LsbMsb if !latch.msb_next => {
                    latch.msb_next = true;
                    (latch.value as u8, false)
                }
                Access::LsbMsb => ((latch.value >> 8) as u8, true),
            };
            if done {
                self.count_latch = None;
            }
            return byte;
        }
        let value = self.visible_count(tick);
        match self.access {
            Access::Lsb => value as u8,
            Access::Msb => (value >> 8) as u8,
            Access::LsbMsb => {
                self.read_msb_next = !self.read_msb_next;
                if self.read_msb_next {
                    value as u8
                } else {
                    (value >> 8) as u8
                }
            }
        }
    }
}

/// The guest-visible state of the PIT and port 0x61.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PitState {
    /// The three counters.
    pub channels: [ChannelState; 3],
    /// Port 0x61 bits 0-3 as written (timer 2 gate, speaker data enable, parity and channel
    /// check enables).
    pub port_b: u8,
    /// Channel 0 rising edges counted and not yet taken by the machine.
    pub irq0_edges: u64,
    /// The input tick up to which channel 0's edges have been counted.
    pub irq0_counted_to: u64,
    /// The latest input tick seen (time never runs backwards for the device).
    pub last_tick: u64,
}

impl Default for PitState {
    fn default() -> Self {
        let mut channels: [ChannelState; 3] = Default::default();
        // Channels 0 and 1 have their gates tied high on the PC; channel 2's is port 0x61
        // bit 0, clear at reset.
        channels[0].gate = true;
        channels[1].gate = true;
        PitState { channels, port_b: 0, irq0_edges: 0, irq0_counted_to: 0, last_tick: 0 }
    }
}

/// The 8254 PIT with port 0x61.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pit {
    state: PitState,
}

impl Pit {
    /// A timer in its reset state: no channel programmed, channel 2's gate low.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the guest-visible state.
    pub fn state(&self) -> PitState {
        self.state.clone()
    }

    /// Replaces the guest-visible state (snapshot restore).
    pub fn restore(&mut self, state: PitState) {
        self.state = state;
    }

    /// Resets the timer (machine reset).
    pub fn reset(&mut self) {
        self.state = PitState::default();
    }

    /// Moves the device to `now_ns`: counts channel 0's edges and applies due reloads.
    fn sync(&mut self, now_ns: u64) -> u64 {
        let tick = tick_at(now_ns).max(self.state.last_tick);
        self.state.last_tick = tick;
        let from = self.state.irq0_counted_to;
        if tick > from {
            self.state.irq0_edges += self.state.channels[0].rises(from, tick);
            self.state.irq0_counted_to = tick;
        }
        for ch in &mut self.state.channels {
            ch.settle(tick);
        }
        tick
    }

    /// Rising edges of channel 0's output (IRQ0) since the last call, counted up to `now_ns`.
    pub fn irq0_edges(&mut self, now_ns: u64) -> u64 {
        self.sync(now_ns);
        std::mem::take(&mut self.state.irq0_edges)
    }

    /// The OUT pin of `channel` (0-2) at `now_ns`.
    pub fn out(&mut self, channel: usize, now_ns: u64) -> bool {
        let tick = self.sync(now_ns);
        self.state.channels.get(channel).is_some_and(|ch| ch.out(tick))
    }

    /// Drives the gate input of `channel` (0-2). On a PC only channel 2's gate moves, through
    /// port 0x61; this is for machines wired otherwise and for tests.
    pub fn set_gate(&mut self, channel: usize, level: bool, now_ns: u64) {
        let tick = self.sync(now_ns);
        if let Some(ch) = self.state.channels.get_mut(channel) {
            ch.set_gate(level, tick);
        }
    }

    /// The speaker tone: `Some(hz)` while port 0x61 gates channel 2 onto the speaker and the
    /// channel runs a square wave.
    pub fn speaker_hz(&self) -> Option<u32> {
        let ch = &self.state.channels[2];
        let on = self.state.port_b & 0x03 == 0x03;
        (on && ch.mode == 3 && matches!(ch.run, Run::Counting { .. }))
            .then(|| (PIT_HZ / u64::from(ch.active_count.max(1))) as u32)
    }

    fn read_port(&mut self, port: u16, now_ns: u64) -> u8 {
        let tick = self.sync(now_ns);
        match port {
            0x40..=0x42 => self.state.channels[usize::from(port - 0x40)].read(tick),
            // The control word register is write-only.
            0x43 => 0xff,
            0x61 => {
                let refresh = (now_ns / REFRESH_TOGGLE_NS) & 1 == 1;
                let out2 = self.state.channels[2].out(tick);
                (self.state.port_b & 0x0f) | (u8::from(refresh) << 4) | (u8::from(out2) << 5)
            }
            _ => 0xff,
        }
    }

    fn write_port(&mut self, port: u16, val: u8, now_ns: u64) {
        let tick = self.sync(now_ns);
        match port {
            0x40..=0x42 => self.state.channels[usize::from(port - 0x40)].write_count(val, tick),
            0x43 => self.write_control(val, tick),
            0x61 => {
                self.state.port_b = val & 0x0f;
                self.state.channels[2].set_gate(val & 1 != 0, tick);
            }
            _ => {}
        }
    }

    fn write_control(&mut self, val: u8, tick: u64) {
        let select = usize::from(val >> 6);
        if select == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear latches status, bits 1-3
            // select counters 0-2.
            for (i, ch) in self.state.channels.iter_mut().enumerate() {
                if val & (2 << i) == 0 {
                    continue;
                }
                if val & 0x20 == 0 {
                    ch.latch_count(tick);
                }
                if val & 0x10 == 0 && ch.status_latch.is_none() {
                    ch.status_latch = Some(ch.status(tick));
                }
            }
            return;
        }
        let ch = &mut self.state.channels[select];
        if val & 0x30 == 0 {
            ch.latch_count(tick);
        } else {
            ch.write_control(val);
        }
    }
}

impl PortDevice for Pit {
    fn port_read(&mut self, offset: u16, size: u8, now_ns: u64) -> u32 {
        read_bytes(offset, size, |port| self.read_port(port, now_ns))
    }

    fn port_write(&mut self, offset: u16, size: u8, val: u32, now_ns: u64) {
        write_bytes(offset, size, val, |port, byte| self.write_port(port, byte, now_ns));
    }
}

impl Timed for Pit {
    fn advance(&mut self, now_ns: u64) {
        self.sync(now_ns);
    }

    /// When channel 0's output next rises (IRQ0). Channels 1 and 2 drive nothing that
    /// interrupts.
    fn next_deadline(&self, now_ns: u64) -> Option<u64> {
        let tick = tick_at(now_ns).max(self.state.last_tick);
        self.state.channels[0].next_rise(tick).map(ns_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Virtual time of input tick `t` (the first nanosecond at which it has happened).
    fn t(tick: u64) -> u64 {
        ns_at(tick)
    }

    fn out(pit: &mut Pit, port: u16, val: u8, now: u64) {
        pit.port_write(port, 1, u32::from(val), now);
    }

    fn inb(pit: &mut Pit, port: u16, now: u64) -> u8 {
        pit.port_read(port, 1, now) as u8
    }

    /// Programs `channel` for `mode` with a 16-bit binary count at `now`.
    fn program(pit: &mut Pit, channel: u8, mode: u8, count: u16, now: u64) {
        out(pit, 0x43, (channel << 6) | 0x30 | (mode << 1), now);
        out(pit, 0x40 + u16::from(channel), count as u8, now);
        out(pit, 0x40 + u16::from(channel), (count >> 8) as u8, now);
    }

    fn latch(pit: &mut Pit, channel: u8, now: u64) -> u16 {
        out(pit, 0x43, channel << 6, now);
        let lo = inb(pit, 0x40 + u16::from(channel), now);
        let hi = inb(pit, 0x40 + u16::from(channel), now);
        u16::from(lo) | (u16::from(hi) << 8)
    }

    #[test]
    fn tick_conversion_is_exact_at_one_second() {
        assert_eq!(tick_at(NS_PER_SEC), PIT_HZ);
        assert_eq!(tick_at(ns_at(12345)), 12345);
        assert_eq!(tick_at(ns_at(12345) - 1), 12344);
    }

    #[test]
    fn mode0_counts_down_and_raises_out_at_terminal_count() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 100, t(1000));
        assert!(!pit.out(0, t(1000)), "mode 0 OUT starts low");
        // Loaded on the next clock: 100 at tick 1001, 90 at tick 1011.
        assert_eq!(latch(&mut pit, 0, t(1011)), 90);
        assert!(!pit.out(0, t(1100)));
        assert!(pit.out(0, t(1101)), "OUT rises N+1 clocks after the write");
        // The counter wraps on and OUT stays high.
        assert_eq!(latch(&mut pit, 0, t(1102)), 0xffff);
        assert!(pit.out(0, t(90_000)));
        assert_eq!(pit.irq0_edges(t(90_000)), 1);
        assert_eq!(pit.irq0_edges(t(200_000)), 0);
    }

    #[test]
    fn mode0_deadline_is_terminal_count() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 1000, 0);
        assert_eq!(pit.next_deadline(0), Some(t(1001)));
        pit.advance(t(1001));
        assert_eq!(pit.next_deadline(t(1001)), None);
    }

    #[test]
    fn mode2_rate_generator_gives_one_edge_per_period() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 1000, 0);
        // Start tick 1; OUT low for the clock where the count is 1, rising as it reloads.
        assert!(pit.out(0, t(1 + 998)));
        assert!(!pit.out(0, t(1 + 999)));
        assert!(pit.out(0, t(1 + 1000)));
        assert_eq!(latch(&mut pit, 0, t(1 + 1000)), 1000);
        assert_eq!(latch(&mut pit, 0, t(1 + 1250)), 750);
        assert_eq!(pit.next_deadline(t(1 + 1250)), Some(t(1 + 2000)));
        assert_eq!(pit.irq0_edges(t(1 + 10_000)), 10);
        assert_eq!(pit.irq0_edges(t(1 + 10_999)), 0);
        assert_eq!(pit.irq0_edges(t(1 + 11_000)), 1);
    }

    #[test]
    fn mode3_square_wave_halves_the_period() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 1000, 0);
        // Counts down by two through each half.
        assert_eq!(latch(&mut pit, 0, t(1 + 100)), 800);
        assert!(pit.out(0, t(1 + 499)));
        assert!(!pit.out(0, t(1 + 500)));
        assert_eq!(latch(&mut pit, 0, t(1 + 600)), 800);
        assert!(pit.out(0, t(1 + 1000)));
        // Odd count: high one clock longer.
        program(&mut pit, 1, 3, 5, t(10_000));
        let start = 10_001;
        let highs: Vec<bool> = (0..5).map(|i| pit.out(1, t(start + i))).collect();
        assert_eq!(highs, vec![true, true, true, false, false]);
    }

    #[test]
    fn bios_default_mode3_count_zero_is_18_2_hz() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 0, 0);
        assert_eq!(pit.irq0_edges(NS_PER_SEC), 18);
        let deadline = pit.next_deadline(NS_PER_SEC).expect("periodic");
        assert_eq!(deadline, t(1 + 19 * 65536));
    }

    #[test]
    fn mode4_strobe_pulses_once() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 4, 10, 0);
        assert!(pit.out(0, t(1 + 9)));
        assert!(!pit.out(0, t(1 + 10)));
        assert!(pit.out(0, t(1 + 11)));
        assert_eq!(pit.irq0_edges(t(100)), 1);
    }

    #[test]
    fn mode1_one_shot_waits_for_gate_trigger() {
        let mut pit = Pit::new();
        pit.set_gate(1, false, 0);
        program(&mut pit, 1, 1, 50, 0);
        assert!(pit.out(1, t(100)), "mode 1 OUT idles high");
        pit.set_gate(1, true, t(100));
        assert!(!pit.out(1, t(102)));
        assert!(pit.out(1, t(151)));
        // Retrigger restarts the one-shot.
        pit.set_gate(1, false, t(200));
        pit.set_gate(1, true, t(200));
        assert!(!pit.out(1, t(230)));
        assert!(pit.out(1, t(251)));
    }

    #[test]
    fn mode5_strobe_on_gate() {
        let mut pit = Pit::new();
        pit.set_gate(1, false, 0);
        program(&mut pit, 1, 5, 10, 0);
        pit.set_gate(1, true, t(5));
        assert!(!pit.out(1, t(6 + 10)));
        assert!(pit.out(1, t(6 + 11)));
    }

    #[test]
    fn gate_low_pauses_mode0_and_resumes() {
        let mut pit = Pit::new();
        // Channel 2's gate comes from port 0x61 bit 0.
        out(&mut pit, 0x61, 0x01, 0);
        program(&mut pit, 2, 0, 100, 0);
        out(&mut pit, 0x61, 0x00, t(51));
        assert_eq!(latch(&mut pit, 2, t(500)), 50);
        out(&mut pit, 0x61, 0x01, t(1000));
        assert_eq!(latch(&mut pit, 2, t(1010)), 40);
        assert_eq!(inb(&mut pit, 0x61, t(1049)) & 0x20, 0);
        assert_eq!(inb(&mut pit, 0x61, t(1050)) & 0x20, 0x20, "OUT2 readable at bit 5");
    }

    #[test]
    fn gate_restarts_mode2() {
        let mut pit = Pit::new();
        out(&mut pit, 0x61, 0x01, 0);
        program(&mut pit, 2, 2, 100, 0);
        out(&mut pit, 0x61, 0x00, t(31));
        assert!(pit.out(2, t(40)), "low gate forces OUT high");
        out(&mut pit, 0x61, 0x01, t(60));
        assert_eq!(latch(&mut pit, 2, t(61)), 100);
    }

    #[test]
    fn linux_style_calibration_sees_out2_rise() {
        // Linux pit_calibrate_tsc: gate high, speaker off, mode 0 on channel 2, poll bit 5.
        let mut pit = Pit::new();
        let v = inb(&mut pit, 0x61, 0);
        out(&mut pit, 0x61, (v & !0x02) | 0x01, 0);
        out(&mut pit, 0x43, 0xb0, 0);
        out(&mut pit, 0x42, (11932u16 & 0xff) as u8, 0);
        out(&mut pit, 0x42, (11932u16 >> 8) as u8, 0);
        let ten_ms = 10_000_000;
        assert_eq!(inb(&mut pit, 0x61, ten_ms - 10_000) & 0x20, 0);
        assert_eq!(inb(&mut pit, 0x61, ten_ms + 10_000) & 0x20, 0x20);
    }

    #[test]
    fn lsb_only_and_msb_only_access() {
        let mut pit = Pit::new();
        out(&mut pit, 0x43, 0x14, 0); // ch0, LSB, mode 2
        out(&mut pit, 0x40, 0x80, 0);
        assert_eq!(pit.state().channels[0].active_count, 0x80);
        assert_eq!(inb(&mut pit, 0x40, t(1)), 0x80);
        out(&mut pit, 0x43, 0x24, 0); // ch0, MSB, mode 2
        out(&mut pit, 0x40, 0x02, 0);
        assert_eq!(pit.state().channels[0].active_count, 0x200);
        assert_eq!(inb(&mut pit, 0x40, t(1)), 0x02);
    }

    #[test]
    fn bcd_counting() {
        let mut pit = Pit::new();
        out(&mut pit, 0x43, 0x31, 0); // ch0, LSB/MSB, mode 0, BCD
        out(&mut pit, 0x40, 0x00, 0);
        out(&mut pit, 0x40, 0x10, 0); // 1000 decimal
        assert_eq!(latch(&mut pit, 0, t(1 + 1)), 0x0999);
        assert!(pit.out(0, t(1 + 1000)));
        // After zero a BCD counter wraps to 9999.
        assert_eq!(latch(&mut pit, 0, t(1 + 1001)), 0x9999);
    }

    #[test]
    fn latch_freezes_value_until_read_and_second_latch_is_ignored() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 1000, 0);
        out(&mut pit, 0x43, 0x00, t(101));
        out(&mut pit, 0x43, 0x00, t(301));
        assert_eq!(inb(&mut pit, 0x40, t(500)), (900u16 & 0xff) as u8);
        assert_eq!(inb(&mut pit, 0x40, t(700)), (900u16 >> 8) as u8);
        // Unlatched reads are live.
        assert_eq!(latch(&mut pit, 0, t(801)), 200);
    }

    #[test]
    fn read_back_latches_status_then_count() {
        let mut pit = Pit::new();
        out(&mut pit, 0x61, 0x01, 0);
        program(&mut pit, 2, 0, 500, 0);
        // Read-back of channel 2: count and status.
        out(&mut pit, 0x43, 0xc8, t(101));
        let status = inb(&mut pit, 0x42, t(200));
        assert_eq!(status, 0x30, "OUT low, count loaded, LSB/MSB, mode 0, binary");
        assert_eq!(inb(&mut pit, 0x42, t(200)), (400u16 & 0xff) as u8);
        assert_eq!(inb(&mut pit, 0x42, t(200)), (400u16 >> 8) as u8);
        // Status alone, after terminal count.
        out(&mut pit, 0x43, 0xe8, t(1000));
        assert_eq!(inb(&mut pit, 0x42, t(1000)) & 0x80, 0x80);
    }

    #[test]
    fn null_count_until_loaded() {
        let mut pit = Pit::new();
        out(&mut pit, 0x43, 0x34, 0);
        out(&mut pit, 0x43, 0xe2, 0);
        assert_eq!(inb(&mut pit, 0x40, 0) & 0x40, 0x40);
        out(&mut pit, 0x40, 0x00, 0);
        out(&mut pit, 0x40, 0x10, 0);
        out(&mut pit, 0x43, 0xe2, 0);
        assert_eq!(inb(&mut pit, 0x40, 0) & 0x40, 0);
        // A new count in mode 2 waits for the end of the period: NULL COUNT until then.
        out(&mut pit, 0x40, 0x00, t(100));
        out(&mut pit, 0x40, 0x20, t(100));
        out(&mut pit, 0x43, 0xe2, t(100));
        assert_eq!(inb(&mut pit, 0x40, t(100)) & 0x40, 0x40);
        out(&mut pit, 0x43, 0xe2, t(1 + 0x1000));
        assert_eq!(inb(&mut pit, 0x40, t(1 + 0x1000)) & 0x40, 0);
    }

    #[test]
    fn mode2_new_count_takes_effect_at_end_of_period() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 1000, 0);
        out(&mut pit, 0x40, (100u16 & 0xff) as u8, t(500));
        out(&mut pit, 0x40, 0, t(500));
        assert_eq!(pit.next_deadline(t(500)), Some(t(1 + 1000)));
        assert_eq!(pit.irq0_edges(t(1 + 1000)), 1);
        assert_eq!(pit.next_deadline(t(1 + 1000)), Some(t(1 + 1100)));
        assert_eq!(pit.irq0_edges(t(1 + 2000)), 10);
    }

    #[test]
    fn edges_are_counted_across_a_reprogram() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 100, 0);
        program(&mut pit, 0, 2, 1000, t(1 + 550));
        assert_eq!(pit.irq0_edges(t(1 + 550)), 5);
    }

    #[test]
    fn port61_bits() {
        let mut pit = Pit::new();
        out(&mut pit, 0x61, 0xff, 0);
        let v = inb(&mut pit, 0x61, 0);
        assert_eq!(v & 0xcf, 0x0f, "bits 0-3 read back; 6-7 are clear");
        let a = inb(&mut pit, 0x61, 1000) & 0x10;
        let b = inb(&mut pit, 0x61, 1000 + REFRESH_TOGGLE_NS) & 0x10;
        assert_ne!(a, b, "refresh bit toggles");
    }

    #[test]
    fn speaker_tone_from_channel2() {
        let mut pit = Pit::new();
        assert_eq!(pit.speaker_hz(), None);
        program(&mut pit, 2, 3, 1193, 0);
        out(&mut pit, 0x61, 0x03, 0);
        assert_eq!(pit.speaker_hz(), Some(1000));
    }

    #[test]
    fn mode0_first_byte_stops_counting() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 10, 0);
        assert!(pit.out(0, t(100)));
        out(&mut pit, 0x40, 0x50, t(100));
        assert!(!pit.out(0, t(100)), "first byte of a new count drives OUT low");
        out(&mut pit, 0x40, 0x00, t(200));
        assert!(pit.out(0, t(201 + 0x50)));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 100, t(1000));
        assert_eq!(pit.irq0_edges(t(2001)), 10);
        assert_eq!(pit.irq0_edges(t(10)), 0);
        let _ = latch(&mut pit, 0, 0);
    }
}
