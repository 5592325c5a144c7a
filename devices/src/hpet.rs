//! The HPET at 0xFED00000: a 64-bit main counter at 100 MHz (period 10 ns, like QEMU) and three
//! comparators, one-shot or periodic, edge or level, 32- or 64-bit. FSB delivery is not
//! supported (capability 0). Legacy replacement (GEN_CONF bit 1) routes timer 0 to ISA IRQ0
//! (IO-APIC pin 2) and timer 1 to IRQ8 instead of the PIT and the RTC; otherwise each timer
//! goes to the IO-APIC pin its route field names, out of 2, 8 and 16-23 (the capability mask
//! QEMU's pc gives).
//!
//! The ACPI HPET table must say: base 0xFED00000, 3 comparators, legacy-replacement capable,
//! vendor 0x8086, minimum tick 100.

use crate::{MmioDevice, Timed};

/// The MMIO base.
pub const HPET_BASE: u64 = 0xfed0_0000;
/// The MMIO window's size.
pub const HPET_WINDOW: u64 = 0x400;
/// Number of comparators.
pub const TIMERS: usize = 3;
/// Nanoseconds per main-counter tick.
const TICK_NS: u64 = 10;
/// IO-APIC pins a timer may be routed to: 2, 8, 16-23.
const INT_ROUTE_CAP: u64 = 0x00ff_0104;

const ENABLE_CNF: u64 = 1 << 0;
const LEG_RT_CNF: u64 = 1 << 1;
const TN_LEVEL: u64 = 1 << 1;
const TN_INT_ENB: u64 = 1 << 2;
const TN_PERIODIC: u64 = 1 << 3;
const TN_PER_CAP: u64 = 1 << 4;
const TN_SIZE_CAP: u64 = 1 << 5;
const TN_VAL_SET: u64 = 1 << 6;
const TN_32BIT: u64 = 1 << 8;
const TN_ROUTE_MASK: u64 = 0x1f << 9;
/// The bits of a timer's configuration the guest may write.
const TN_WRITABLE: u64 = TN_LEVEL | TN_INT_ENB | TN_PERIODIC | TN_VAL_SET | TN_32BIT | TN_ROUTE_MASK;

/// One comparator's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HpetTimerState {
    /// Configuration and capabilities.
    pub config: u64,
    /// Comparator value.
    pub cmp: u64,
    /// Period, for periodic mode.
    pub period: u64,
    /// Virtual time of the next match, if the counter runs and the comparator is armed.
    pub fire_at: Option<u64>,
    /// Rising edges not yet handed to the interrupt controllers (edge mode).
    pub edges: u32,
}

/// The guest-visible state of the HPET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HpetState {
    /// General configuration.
    pub config: u64,
    /// General interrupt status (level-triggered timers).
    pub isr: u64,
    /// The main counter's value at `counter_time` (its value while stopped).
    pub counter: u64,
    /// Virtual time at which `counter` held.
    pub counter_time: u64,
    /// The comparators.
    pub timers: [HpetTimerState; TIMERS],
}

/// The HPET.
#[derive(Clone, Debug)]
pub struct Hpet {
    s: HpetState,
}

impl Default for Hpet {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a timer's interrupt goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpetRoute {
    /// Legacy replacement: this ISA IRQ (0 or 8), on both the 8259A and the IO-APIC.
    Isa(u8),
    /// An IO-APIC pin.
    IoApic(u8),
}

impl Hpet {
    /// Stopped, counter 0, all comparators disabled.
    pub fn new() -> Self {
        let timer = HpetTimerState {
            config: TN_PER_CAP | TN_SIZE_CAP | (INT_ROUTE_CAP << 32),
            cmp: u64::MAX,
            period: 0,
            fire_at: None,
            edges: 0,
        };
        Hpet {
            s: HpetState {
                config: 0,
                isr: 0,
                counter: 0,
                counter_time: 0,
                timers: [timer.clone(), timer.clone(), timer],
            },
        }
    }

    /// Back to the power-on state.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The guest-visible state.
    pub fn state(&self) -> HpetState {
        self.s.clone()
    }

    /// Takes back a state from [`Hpet::state`].
    pub fn restore(&mut self, s: HpetState) {
        self.s = s;
    }

    fn running(&self) -> bool {
        self.s.config & ENABLE_CNF != 0
    }

    /// Whether legacy replacement is on: the PIT's and RTC's interrupt lines are disconnected.
    pub fn legacy(&self) -> bool {
        self.s.config & LEG_RT_CNF != 0
    }

    fn counter(&self, now: u64) -> u64 {
        if self.running() {
            self.s.counter.wrapping_add(now.saturating_sub(self.s.counter_time) / TICK_NS)
        } else {
            self.s.counter
        }
    }

    /// Where timer `n`'s interrupt goes, if it is enabled.
    pub fn route(&self, n: usize) -> Option<HpetRoute> {
        let t = self.s.timers.get(n)?;
        if self.legacy() && n < 2 {
            return Some(HpetRoute::Isa(if n == 0 { 0 } else { 8 }));
        }
        (t.config & TN_INT_ENB != 0).then_some(HpetRoute::IoApic(((t.config & TN_ROUTE_MASK) >> 9) as u8))
    }

    /// The level of a level-triggered timer's line (its status bit), `false` for edge timers.
    pub fn level(&self, n: usize) -> bool {
        let Some(t) = self.s.timers.get(n) else { return false };
        t.config & TN_LEVEL != 0 && t.config & TN_INT_ENB != 0 && self.s.isr & (1 << n) != 0
    }

    /// Whether timer `n` is level-triggered.
    pub fn level_triggered(&self, n: usize) -> bool {
        self.s.timers.get(n).is_some_and(|t| t.config & TN_LEVEL != 0)
    }

    /// Rising edges of edge-triggered timer `n` since the last call.
    pub fn take_edges(&mut self, n: usize) -> u32 {
        self.s.timers.get_mut(n).map_or(0, |t| std::mem::take(&mut t.edges))
    }

    /// Recomputes when timer `n` next matches, from the counter at `now`.
    fn arm(&mut self, n: usize, now: u64) {
        let counter = self.counter(now);
        let running = self.running();
        let t = &mut self.s.timers[n];
        if !running {
            t.fire_at = None;
            return;
        }
        let ticks = if t.config & TN_32BIT != 0 {
            u64::from((t.cmp as u32).wrapping_sub(counter as u32))
        } else {
            t.cmp.wrapping_sub(counter)
        };
        // A 64-bit comparator just behind the counter matches after 2^64 ticks: never.
        t.fire_at = ticks.checked_mul(TICK_NS).and_then(|d| now.checked_add(d));
    }

    fn fire(&mut self, n: usize) {
        let t = &mut self.s.timers[n];
        if t.config & TN_INT_ENB == 0 {
            return;
        }
        if t.config & TN_LEVEL != 0 {
            self.s.isr |= 1 << n;
        } else {
            t.edges = t.edges.saturating_add(1);
        }
    }

    fn read_reg(&self, reg: u64, now: u64) -> u64 {
        match reg {
            0x000 => (TICK_NS * 1_000_000) << 32 | 0x8086 << 16 | 1 << 15 | 1 << 13 | ((TIMERS as u64 - 1) << 8) | 1,
            0x010 => self.s.config,
            0x020 => self.s.isr,
            0x0f0 => self.counter(now),
            0x100..=0x15f => {
                let n = ((reg - 0x100) / 0x20) as usize;
                let t = &self.s.timers[n];
                match reg & 0x1f {
                    0x00 => t.config,
                    0x08 => t.cmp,
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    fn write_reg(&mut self, reg: u64, val: u64, mask: u64, now: u64) {
        let merge = |old: u64| (old & !mask) | (val & mask);
        match reg {
            0x010 => {
                let was = self.running();
                let counter = self.counter(now);
                self.s.config = merge(self.s.config) & (ENABLE_CNF | LEG_RT_CNF);
                if was != self.running() {
                    self.s.counter = counter;
                    self.s.counter_time = now;
                }
                for n in 0..TIMERS {
                    self.arm(n, now);
                }
            }
            0x020 => self.s.isr &= !(val & mask),
            0x0f0 => {
                if self.running() {
                    crate::warn_once!("the guest wrote the HPET's main counter while it runs; ignored");
                    return;
                }
                self.s.counter = merge(self.s.counter);
                self.s.counter_time = now;
            }
            0x100..=0x15f => {
                let n = ((reg - 0x100) / 0x20) as usize;
                match reg & 0x1f {
                    0x00 => {
                        let t = &mut self.s.timers[n];
                        let new = merge(t.config);
                        t.config = (t.config & !TN_WRITABLE) | (new & TN_WRITABLE);
                        if t.config & TN_LEVEL == 0 {
                            self.s.isr &= !(1 << n);
                        }
                    }
                    0x08 => {
                        let t = &mut self.s.timers[n];
                        let mut new = merge(t.cmp);
                        if t.config & TN_32BIT != 0 {
                            new &= 0xffff_ffff;
                        }
                        // QEMU's rule: in periodic mode a write sets the period, and the
                        // comparator too only with VAL_SET.
                        if t.config & TN_PERIODIC == 0 || t.config & TN_VAL_SET != 0 {
                            t.cmp = new;
                        }
                        t.period = new;
                        t.config &= !TN_VAL_SET;
                    }
                    _ => return,
                }
                self.arm(n, now);
            }
            _ => {}
        }
    }
}

impl MmioDevice for Hpet {
    fn mmio_read(&mut self, offset: u64, size: u8, now_ns: u64) -> u64 {
        let v = self.read_reg(offset & !7, now_ns);
        let shift = 8 * (offset & 7);
        let mask = if size >= 8 { u64::MAX } else { (1u64 << (8 * u64::from(size))) - 1 };
        (v >> shift) & mask
    }

    fn mmio_write(&mut self, offset: u64, size: u8, val: u64, now_ns: u64) {
        self.advance(now_ns);
        let shift = 8 * (offset & 7);
        let mask = if size >= 8 { u64::MAX } else { ((1u64 << (8 * u64::from(size))) - 1) << shift };
        self.write_reg(offset & !7, val << shift, mask, now_ns);
    }
}

impl Timed for Hpet {
    fn advance(&mut self, now_ns: u64) {
        for n in 0..TIMERS {
            let Some(at) = self.s.timers[n].fire_at else { continue };
            if at > now_ns {
                continue;
            }
            self.fire(n);
            let t = &mut self.s.timers[n];
            let wide = t.config & TN_32BIT == 0;
            if t.config & TN_PERIODIC != 0 && t.period != 0 {
                // Missed periods coalesce into the one interrupt above.
                let step = t.period.saturating_mul(TICK_NS);
                let missed = (now_ns - at) / step + 1;
                t.cmp = t.cmp.wrapping_add(t.period.wrapping_mul(missed));
                if !wide {
                    t.cmp &= 0xffff_ffff;
                }
                t.fire_at = at.checked_add(step.saturating_mul(missed));
            } else if !wide {
                // A 32-bit comparator matches again when the counter wraps.
                t.fire_at = at.checked_add((1u64 << 32) * TICK_NS);
            } else {
                t.fire_at = None;
            }
        }
    }

    fn next_deadline(&self, now_ns: u64) -> Option<u64> {
        self.s.timers.iter().filter_map(|t| t.fire_at).min().map(|t| t.max(now_ns.saturating_add(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_say_three_timers_at_100_mhz_with_legacy_route() {
        let mut h = Hpet::new();
        let cap = h.mmio_read(0, 8, 0);
        assert_eq!(cap >> 32, 10_000_000);
        assert_eq!((cap >> 8) & 0x1f, 2);
        assert_ne!(cap & (1 << 15), 0);
        assert_eq!(h.mmio_read(0x100, 8, 0) & (1 << 15), 0, "no FSB delivery");
    }

    #[test]
    fn counter_runs_only_while_enabled() {
        let mut h = Hpet::new();
        h.mmio_write(0x10, 4, 1, 1000);
        assert_eq!(h.mmio_read(0xf0, 8, 2000), 100);
        h.mmio_write(0x10, 4, 0, 3000);
        assert_eq!(h.mmio_read(0xf0, 4, 9000), 200);
    }

    #[test]
    fn one_shot_edge_timer_fires_at_the_comparator() {
        let mut h = Hpet::new();
        h.mmio_write(0x100, 4, TN_INT_ENB | (16 << 9), 0);
        h.mmio_write(0x108, 8, 50, 0);
        h.mmio_write(0x10, 4, 1, 0);
        assert_eq!(h.next_deadline(0), Some(500));
        h.advance(500);
        assert_eq!(h.take_edges(0), 1);
        assert_eq!(h.route(0), Some(HpetRoute::IoApic(16)));
        assert_eq!(h.next_deadline(500), None);
    }

    #[test]
    fn periodic_timer_reloads_by_its_period() {
        let mut h = Hpet::new();
        h.mmio_write(0x100, 4, TN_INT_ENB | TN_PERIODIC | TN_VAL_SET, 0);
        h.mmio_write(0x108, 8, 100, 0);
        h.mmio_write(0x108, 8, 100, 0);
        h.mmio_write(0x10, 4, 3, 0); // enabled, legacy route
        assert_eq!(h.route(0), Some(HpetRoute::Isa(0)));
        h.advance(1000);
        assert_eq!(h.next_deadline(1000), Some(2000));
        h.advance(5500);
        assert_eq!(h.take_edges(0), 2);
        assert_eq!(h.mmio_read(0x108, 8, 5500), 600);
    }

    #[test]
    fn level_timer_holds_its_status_until_cleared() {
        let mut h = Hpet::new();
        h.mmio_write(0x120, 4, TN_INT_ENB | TN_LEVEL | (20 << 9), 0);
        h.mmio_write(0x128, 8, 10, 0);
        h.mmio_write(0x10, 4, 1, 0);
        h.advance(100);
        assert!(h.level(1));
        h.mmio_write(0x20, 4, 2, 100);
        assert!(!h.level(1));
    }

    #[test]
    fn comparator_behind_a_32_bit_counter_matches_after_the_wrap() {
        let mut h = Hpet::new();
        h.mmio_write(0xf0, 8, 0xffff_fff0, 0);
        h.mmio_write(0x140, 4, TN_INT_ENB | TN_32BIT, 0);
        h.mmio_write(0x148, 4, 0x10, 0);
        h.mmio_write(0x10, 4, 1, 0);
        assert_eq!(h.next_deadline(0), Some(0x20 * TICK_NS));
        h.advance(0x20 * TICK_NS);
        assert_eq!(h.take_edges(2), 1);
        // A 64-bit comparator behind the counter never matches.
        let mut h = Hpet::new();
        h.mmio_write(0xf0, 8, 1000, 0);
        h.mmio_write(0x100, 4, TN_INT_ENB, 0);
        h.mmio_write(0x108, 8, 10, 0);
        h.mmio_write(0x10, 4, 1, 0);
        assert_eq!(h.next_deadline(0), None);
    }
}
