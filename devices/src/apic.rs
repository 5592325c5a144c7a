//! The local APIC of the one CPU, in xAPIC mode (MMIO at `IA32_APIC_BASE`, 0xFEE00000 at reset).
//!
//! Registers as in the SDM vol. 3 ch. 11: ID, version (0x50014 like QEMU: version 0x14, six
//! LVT entries), TPR/APR/PPR, EOI, LDR/DFR, SVR, the ISR/TMR/IRR bitmaps, ESR, ICR, the LVT
//! (timer, thermal, performance counters, LINT0, LINT1, error) and the timer (divide
//! configuration, initial and current count; one-shot, periodic and TSC-deadline modes).
//!
//! The timer counts at a 1 GHz bus clock, the machine's virtual nanosecond, divided by the
//! divide configuration; the TSC also counts virtual nanoseconds, so a TSC deadline is a
//! virtual time once the CPU has taken its TSC offset off.
//!
//! LINT0 comes up as ExtINT, unmasked (QEMU does the same for the BSP): the 8259A reaches the
//! CPU through the APIC in virtual-wire mode, as a PC boots. [`LocalApic::accepts_pic`] says
//! whether the machine should pass the PIC's INTR on.

use crate::{warn_once, MmioDevice, Timed};

/// The xAPIC MMIO window's size.
pub const APIC_WINDOW: u64 = 0x1000;
/// IA32_APIC_BASE's global enable bit.
pub const BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE's bootstrap-processor bit.
pub const BASE_BSP: u64 = 1 << 8;

const LVT_TIMER: usize = 0;
const LVT_LINT0: usize = 3;
const LVT_ERROR: usize = 5;
const LVT_MASKED: u32 = 1 << 16;
const SVR_ENABLE: u32 = 1 << 8;
const TIMER_PERIODIC: u32 = 1 << 17;
const TIMER_TSC_DEADLINE: u32 = 2 << 17;
const TIMER_MODE_MASK: u32 = 3 << 17;
/// ESR: a vector below 16 was received.
const ESR_RECV_ILLEGAL: u32 = 1 << 6;
/// ESR: a vector below 16 was sent.
const ESR_SEND_ILLEGAL: u32 = 1 << 5;

/// The guest-visible state of the local APIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalApicState {
    /// IA32_APIC_BASE (base address, global enable, BSP).
    pub base: u64,
    /// APIC ID (bits 31:24 of the ID register).
    pub id: u8,
    /// Task priority.
    pub tpr: u8,
    /// Logical destination register.
    pub ldr: u32,
    /// Destination format register.
    pub dfr: u32,
    /// Spurious-interrupt vector register.
    pub svr: u32,
    /// In-service bitmap.
    pub isr: [u32; 8],
    /// Trigger-mode bitmap (level = 1) of accepted interrupts.
    pub tmr: [u32; 8],
    /// Interrupt-request bitmap.
    pub irr: [u32; 8],
    /// Error status as the last ESR write latched it, and the errors since.
    pub esr: u32,
    /// Errors collected since the last ESR write.
    pub esr_pending: u32,
    /// Interrupt command register, low and high halves.
    pub icr: [u32; 2],
    /// LVT: timer, thermal, perf, LINT0, LINT1, error.
    pub lvt: [u32; 6],
    /// Timer divide configuration register.
    pub divide: u32,
    /// Timer initial count.
    pub initial_count: u32,
    /// Virtual time at which the initial count was loaded.
    pub timer_start: u64,
    /// Virtual time of the next timer expiry, if armed.
    pub timer_next: Option<u64>,
    /// The TSC deadline as a virtual time (0 = disarmed), as `IA32_TSC_DEADLINE` holds it.
    pub tsc_deadline: u64,
}

/// The local APIC.
#[derive(Clone, Debug)]
pub struct LocalApic {
    s: LocalApicState,
    /// Vectors of level-triggered interrupts the guest EOI'd, for the IO-APIC's remote IRR.
    eoi_broadcast: Vec<u8>,
}

impl Default for LocalApic {
    fn default() -> Self {
        Self::new()
    }
}

fn bit_set(map: &mut [u32; 8], v: u8, on: bool) {
    let (w, b) = (usize::from(v / 32), u32::from(v % 32));
    if on {
        map[w] |= 1 << b;
    } else {
        map[w] &= !(1 << b);
    }
}

fn bit_get(map: &[u32; 8], v: u8) -> bool {
    map[usize::from(v / 32)] & (1 << (v % 32)) != 0
}

/// The highest vector set in `map`.
fn highest(map: &[u32; 8]) -> Option<u8> {
    (0..8).rev().find(|&w| map[w] != 0).map(|w| (w as u32 * 32 + 31 - map[w].leading_zeros()) as u8)
}

impl LocalApic {
    /// The APIC as the CPU's reset leaves it: at 0xFEE00000, globally enabled, BSP, software
    /// disabled, LINT0 in ExtINT (virtual wire).
    pub fn new() -> Self {
        let mut a = LocalApic {
            s: LocalApicState {
                base: 0xfee0_0000 | BASE_ENABLE | BASE_BSP,
                id: 0,
                tpr: 0,
                ldr: 0,
                dfr: 0xffff_ffff,
                svr: 0xff,
                isr: [0; 8],
                tmr: [0; 8],
                irr: [0; 8],
                esr: 0,
                esr_pending: 0,
                icr: [0; 2],
                lvt: [LVT_MASKED; 6],
                divide: 0,
                initial_count: 0,
                timer_start: 0,
                timer_next: None,
                tsc_deadline: 0,
            },
            eoi_broadcast: Vec::new(),
        };
        a.s.lvt[LVT_LINT0] = 0x700;
        a
    }

    /// Back to the reset state (the base MSR too).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The guest-visible state.
    pub fn state(&self) -> LocalApicState {
        self.s.clone()
    }

    /// Takes back a state from [`LocalApic::state`].
    pub fn restore(&mut self, s: LocalApicState) {
        self.s = s;
        self.eoi_broadcast.clear();
    }

    /// IA32_APIC_BASE as the guest reads it.
    pub fn base_msr(&self) -> u64 {
        self.s.base
    }

    /// A WRMSR to IA32_APIC_BASE. Clearing the global enable resets the APIC's registers
    /// (the SDM: it is as if the APIC were reset, and stays off until re-enabled).
    pub fn set_base_msr(&mut self, v: u64) {
        let v = v & (0x000f_ffff_ffff_f000 | BASE_ENABLE | BASE_BSP);
        if v & BASE_ENABLE == 0 {
            let mut fresh = Self::new();
            fresh.s.lvt[LVT_LINT0] = LVT_MASKED;
            fresh.s.base = v;
            *self = fresh;
        } else {
            self.s.base = v;
        }
    }

    /// Whether the APIC is globally enabled (IA32_APIC_BASE bit 11): its MMIO window is
    /// mapped and it stands between the PIC and the CPU.
    pub fn hw_enabled(&self) -> bool {
        self.s.base & BASE_ENABLE != 0
    }

    /// The MMIO window's physical address.
    pub fn mmio_base(&self) -> u64 {
        self.s.base & 0x000f_ffff_ffff_f000
    }

    fn sw_enabled(&self) -> bool {
        self.s.svr & SVR_ENABLE != 0
    }

    /// Whether the 8259A's INTR reaches the CPU: with the APIC globally disabled it goes
    /// straight there, otherwise through LINT0 when that is unmasked ExtINT.
    pub fn accepts_pic(&self) -> bool {
        let lint0 = self.s.lvt[LVT_LINT0];
        !self.hw_enabled() || (lint0 & LVT_MASKED == 0 && (lint0 >> 8) & 7 == 7)
    }

    /// The task-priority register (CR8 is its bits 7:4).
    pub fn tpr(&self) -> u8 {
        self.s.tpr
    }

    /// Sets the task-priority register.
    pub fn set_tpr(&mut self, v: u8) {
        self.s.tpr = v;
    }

    fn ppr(&self) -> u8 {
        let isrv = highest(&self.s.isr).unwrap_or(0);
        if self.s.tpr >> 4 >= isrv >> 4 {
            self.s.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// An interrupt message for this APIC (from the IO-APIC, an IPI or the local LVT):
    /// `vector`, level-triggered or edge.
    pub fn accept(&mut self, vector: u8, level: bool) {
        if !self.hw_enabled() {
            return;
        }
        if vector < 16 {
            self.error(ESR_RECV_ILLEGAL);
            return;
        }
        bit_set(&mut self.s.irr, vector, true);
        bit_set(&mut self.s.tmr, vector, level);
    }

    fn error(&mut self, bits: u32) {
        self.s.esr_pending |= bits;
        let lvt = self.s.lvt[LVT_ERROR];
        if lvt & LVT_MASKED == 0 && self.sw_enabled() {
            let v = lvt as u8;
            if v >= 16 {
                bit_set(&mut self.s.irr, v, true);
                bit_set(&mut self.s.tmr, v, false);
            }
        }
    }

    /// Whether the APIC has a fixed interrupt for the CPU above its processor priority.
    pub fn has_interrupt(&self) -> bool {
        if !self.hw_enabled() || !self.sw_enabled() {
            return false;
        }
        highest(&self.s.irr).is_some_and(|v| v >> 4 > self.ppr() >> 4)
    }

    /// The interrupt-acknowledge cycle: the highest requested vector moves to in-service.
    /// With nothing deliverable left (the TPR rose meanwhile), the spurious vector.
    pub fn acknowledge(&mut self) -> u8 {
        if self.has_interrupt() {
            if let Some(v) = highest(&self.s.irr) {
                bit_set(&mut self.s.irr, v, false);
                bit_set(&mut self.s.isr, v, true);
                return v;
            }
        }
        self.s.svr as u8
    }

    /// Vectors of level-triggered interrupts EOI'd since the last call: the IO-APIC clears
    /// the remote IRR of entries with these vectors.
    pub fn take_eoi_broadcast(&mut self) -> Option<u8> {
        self.eoi_broadcast.pop()
    }

    fn eoi(&mut self) {
        if let Some(v) = highest(&self.s.isr) {
            bit_set(&mut self.s.isr, v, false);
            if bit_get(&self.s.tmr, v) {
                if self.eoi_broadcast.len() < 256 {
                    self.eoi_broadcast.push(v);
                }
                bit_set(&mut self.s.tmr, v, false);
            }
        }
    }

    /// IA32_TSC_DEADLINE as a virtual time (0: disarmed).
    pub fn tsc_deadline(&self) -> u64 {
        self.s.tsc_deadline
    }

    /// A WRMSR to IA32_TSC_DEADLINE, already turned into virtual time; ignored unless the
    /// timer is in TSC-deadline mode.
    pub fn set_tsc_deadline(&mut self, at_ns: u64, now_ns: u64) {
        if self.s.lvt[LVT_TIMER] & TIMER_MODE_MASK != TIMER_TSC_DEADLINE {
            return;
        }
        self.s.tsc_deadline = at_ns;
        self.s.timer_next = (at_ns != 0).then_some(at_ns.max(now_ns));
    }

    fn divisor(&self) -> u64 {
        let d = (self.s.divide & 3) | ((self.s.divide >> 1) & 4);
        if d == 7 {
            1
        } else {
            2 << d
        }
    }

    fn period_ns(&self) -> u64 {
        u64::from(self.s.initial_count) * self.divisor()
    }

    fn current_count(&self, now: u64) -> u32 {
        let mode = self.s.lvt[LVT_TIMER] & TIMER_MODE_MASK;
        if self.s.initial_count == 0 || mode == TIMER_TSC_DEADLINE {
            return 0;
        }
        let ticks = now.saturating_sub(self.s.timer_start) / self.divisor();
        let init = u64::from(self.s.initial_count);
        if mode == TIMER_PERIODIC {
            (init - ticks % init) as u32
        } else {
            init.saturating_sub(ticks) as u32
        }
    }

    fn fire_timer(&mut self) {
        let lvt = self.s.lvt[LVT_TIMER];
        if lvt & LVT_MASKED == 0 {
            self.accept(lvt as u8, false);
        }
    }

    fn read_reg(&self, reg: u64, now: u64) -> u32 {
        let s = &self.s;
        match reg {
            0x20 => u32::from(s.id) << 24,
            0x30 => 0x0005_0014,
            0x80 => u32::from(s.tpr),
            0x90 => 0,
            0xa0 => u32::from(self.ppr()),
            0xd0 => s.ldr,
            0xe0 => s.dfr,
            0xf0 => s.svr,
            0x100..=0x170 => s.isr[((reg - 0x100) / 0x10) as usize],
            0x180..=0x1f0 => s.tmr[((reg - 0x180) / 0x10) as usize],
            0x200..=0x270 => s.irr[((reg - 0x200) / 0x10) as usize],
            0x280 => s.esr,
            0x300 => s.icr[0],
            0x310 => s.icr[1],
            0x320..=0x370 => s.lvt[((reg - 0x320) / 0x10) as usize],
            0x380 => s.initial_count,
            0x390 => self.current_count(now),
            0x3e0 => s.divide,
            _ => 0,
        }
    }

    fn write_reg(&mut self, reg: u64, v: u32, now: u64) {
        match reg {
            0x20 => self.s.id = (v >> 24) as u8,
            0x80 => self.s.tpr = v as u8,
            0xb0 => self.eoi(),
            0xd0 => self.s.ldr = v & 0xff00_0000,
            0xe0 => self.s.dfr = v | 0x0fff_ffff,
            0xf0 => {
                self.s.svr = v & 0x3ff;
                if v & SVR_ENABLE == 0 {
                    for l in &mut self.s.lvt {
                        *l |= LVT_MASKED;
                    }
                }
            }
            0x280 => {
                self.s.esr = std::mem::take(&mut self.s.esr_pending);
            }
            0x300 => {
                self.s.icr[0] = v & !(1 << 12);
                self.send_ipi(v);
            }
            0x310 => self.s.icr[1] = v & 0xff00_0000,
            0x320..=0x370 => {
                let i = ((reg - 0x320) / 0x10) as usize;
                let mut v = v;
                if !self.sw_enabled() {
                    v |= LVT_MASKED;
                }
                let old = self.s.lvt[i];
                self.s.lvt[i] = v;
                if i == LVT_TIMER && (old ^ v) & TIMER_MODE_MASK != 0 {
                    // A mode change disarms the timer (the SDM for TSC-deadline switches).
                    self.s.timer_next = None;
                    self.s.tsc_deadline = 0;
                    self.s.initial_count = 0;
                }
            }
            0x380 => {
                if self.s.lvt[LVT_TIMER] & TIMER_MODE_MASK == TIMER_TSC_DEADLINE {
                    return;
                }
                self.s.initial_count = v;
                self.s.timer_start = now;
                self.s.timer_next = (v != 0).then(|| now.saturating_add(self.period_ns()));
            }
            0x3e0 => {
                // Keep the counter's progress: restart the count from where it stands.
                let cur = self.current_count(now);
                self.s.divide = v & 0xb;
                if self.s.timer_next.is_some() && self.s.lvt[LVT_TIMER] & TIMER_MODE_MASK != TIMER_TSC_DEADLINE {
                    let left = u64::from(cur) * self.divisor();
                    self.s.timer_start = now.saturating_add(left).saturating_sub(self.period_ns());
                    self.s.timer_next = Some(now.saturating_add(left.max(1)));
                }
            }
            0x30 | 0x90 | 0xa0 | 0x100..=0x270 | 0x390 => {}
            _ => warn_once!("the guest wrote the reserved local APIC register {reg:#x}"),
        }
    }

    fn send_ipi(&mut self, lo: u32) {
        let vector = lo as u8;
        let mode = (lo >> 8) & 7;
        let shorthand = (lo >> 18) & 3;
        let level = lo & (1 << 15) != 0;
        let to_self = match shorthand {
            1 | 2 => true,
            3 => false,
            _ => {
                let dest = (self.s.icr[1] >> 24) as u8;
                if lo & (1 << 11) == 0 {
                    dest == self.s.id || dest == 0xff
                } else {
                    dest & (self.s.ldr >> 24) as u8 != 0
                }
            }
        };
        match mode {
            0 | 1 if to_self => {
                if vector < 16 {
                    self.error(ESR_SEND_ILLEGAL);
                } else {
                    self.accept(vector, false);
                }
            }
            0 | 1 => {}
            // INIT level de-assert and INIT/SIPI to other CPUs: there are none.
            5 | 6 if !level || !to_self => {}
            _ => warn_once!("the guest sent an IPI with delivery mode {mode} that this APIC does not model"),
        }
    }
}

impl MmioDevice for LocalApic {
    fn mmio_read(&mut self, offset: u64, size: u8, now_ns: u64) -> u64 {
        let reg = offset & 0xff0;
        let v = self.read_reg(reg, now_ns);
        let shift = 8 * (offset & 3);
        let mask = if size >= 4 { u64::from(u32::MAX) } else { (1u64 << (8 * u64::from(size))) - 1 };
        (u64::from(v) >> shift) & mask
    }

    fn mmio_write(&mut self, offset: u64, size: u8, val: u64, now_ns: u64) {
        if size < 4 || offset & 0xf != 0 {
            warn_once!("the guest wrote the local APIC with a {size}-byte access at {offset:#x}, which is ignored");
            return;
        }
        self.write_reg(offset & 0xff0, val as u32, now_ns);
    }
}

impl Timed for LocalApic {
    fn advance(&mut self, now_ns: u64) {
        let Some(at) = self.s.timer_next else { return };
        if at > now_ns {
            return;
        }
        self.fire_timer();
        let mode = self.s.lvt[LVT_TIMER] & TIMER_MODE_MASK;
        let period = self.period_ns();
        self.s.timer_next = if mode == TIMER_PERIODIC && period > 0 {
            // Periods missed while nobody looked coalesce into the one interrupt above.
            let missed = (now_ns - at) / period + 1;
            Some(at.saturating_add(missed.saturating_mul(period)))
        } else {
            if mode == TIMER_TSC_DEADLINE {
                self.s.tsc_deadline = 0;
            }
            None
        };
    }

    fn next_deadline(&self, now_ns: u64) -> Option<u64> {
        self.s.timer_next.map(|t| t.max(now_ns.saturating_add(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> LocalApic {
        let mut a = LocalApic::new();
        a.mmio_write(0xf0, 4, 0x1ff, 0);
        a
    }

    #[test]
    fn highest_vector_above_the_priority_class_is_delivered_first() {
        let mut a = enabled();
        a.accept(0x41, false);
        a.accept(0x62, false);
        assert!(a.has_interrupt());
        assert_eq!(a.acknowledge(), 0x62);
        // 0x41 is in a lower class than the in-service 0x62.
        assert!(!a.has_interrupt());
        assert_eq!(a.mmio_read(0xa0, 4, 0), 0x60);
        a.mmio_write(0xb0, 4, 0, 0);
        assert_eq!(a.acknowledge(), 0x41);
    }

    #[test]
    fn tpr_gates_delivery_by_class() {
        let mut a = enabled();
        a.accept(0x55, false);
        a.set_tpr(0x50);
        assert!(!a.has_interrupt());
        assert_eq!(a.acknowledge(), 0xff, "spurious vector when nothing is deliverable");
        a.set_tpr(0x4f);
        assert!(a.has_interrupt());
    }

    #[test]
    fn software_disabled_apic_delivers_nothing_but_passes_the_pic() {
        let mut a = LocalApic::new();
        a.accept(0x30, false);
        assert!(!a.has_interrupt());
        assert!(a.accepts_pic());
        a.set_base_msr(0xfee0_0000);
        assert!(!a.hw_enabled());
        assert!(a.accepts_pic());
    }

    #[test]
    fn level_eoi_is_broadcast_once() {
        let mut a = enabled();
        a.accept(0x70, true);
        assert_eq!(a.acknowledge(), 0x70);
        a.mmio_write(0xb0, 4, 0, 0);
        assert_eq!(a.take_eoi_broadcast(), Some(0x70));
        assert_eq!(a.take_eoi_broadcast(), None);
        a.accept(0x71, false);
        a.acknowledge();
        a.mmio_write(0xb0, 4, 0, 0);
        assert_eq!(a.take_eoi_broadcast(), None);
    }

    #[test]
    fn one_shot_timer_counts_down_with_the_divider_and_fires_once() {
        let mut a = enabled();
        a.mmio_write(0x3e0, 4, 0x3, 0); // divide by 16
        a.mmio_write(0x320, 4, 0x40, 0);
        a.mmio_write(0x380, 4, 100, 1000);
        assert_eq!(a.next_deadline(1000), Some(1000 + 1600));
        assert_eq!(a.mmio_read(0x390, 4, 1000 + 160), 90);
        a.advance(2600);
        assert_eq!(a.acknowledge(), 0x40);
        assert_eq!(a.next_deadline(2600), None);
        assert_eq!(a.mmio_read(0x390, 4, 5000), 0);
    }

    #[test]
    fn periodic_timer_reloads() {
        let mut a = enabled();
        a.mmio_write(0x3e0, 4, 0xb, 0); // divide by 1
        a.mmio_write(0x320, 4, u64::from(TIMER_PERIODIC | 0x40), 0);
        a.mmio_write(0x380, 4, 1000, 0);
        a.advance(1000);
        assert_eq!(a.next_deadline(1000), Some(2000));
        assert_eq!(a.mmio_read(0x390, 4, 1250), 750);
        a.advance(5500);
        assert_eq!(a.next_deadline(5500), Some(6000));
    }

    #[test]
    fn tsc_deadline_mode_fires_at_the_deadline_and_disarms() {
        let mut a = enabled();
        a.mmio_write(0x320, 4, u64::from(TIMER_TSC_DEADLINE | 0x50), 0);
        a.set_tsc_deadline(5000, 10);
        assert_eq!(a.next_deadline(10), Some(5000));
        a.advance(5000);
        assert_eq!(a.tsc_deadline(), 0);
        assert_eq!(a.acknowledge(), 0x50);
    }

    #[test]
    fn self_ipi_and_illegal_vectors() {
        let mut a = enabled();
        a.mmio_write(0x300, 4, (1 << 18) | 0x66, 0);
        assert_eq!(a.acknowledge(), 0x66);
        a.mmio_write(0x300, 4, (1 << 18) | 0x05, 0);
        a.mmio_write(0x280, 4, 0, 0);
        assert_eq!(a.mmio_read(0x280, 4, 0), u64::from(ESR_SEND_ILLEGAL));
        // INIT and SIPI to other CPUs go nowhere.
        a.mmio_write(0x300, 4, (3 << 18) | (5 << 8), 0);
        a.mmio_write(0x300, 4, (3 << 18) | (6 << 8) | 0x10, 0);
    }
}
