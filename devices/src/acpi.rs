//! The ACPI power-management block of the PIIX4 (QEMU's `PIIX4_PM`), at the ports QEMU uses.
//!
//! The FADT must match these numbers:
//! - PM1a_EVT_BLK = [`PM_BASE`] (0x600), 4 bytes: PM1_STS at 0x600, PM1_EN at 0x602.
//! - PM1a_CNT_BLK = 0x604, 2 bytes: SCI_EN (bit 0, set from reset: the ACPI mode is on and
//!   there is no SMI_CMD to switch it, so SMI_CMD = 0), SLP_TYP (bits 12:10), SLP_EN (bit 13).
//! - PM_TMR_BLK = 0x608, 4 bytes: the 24-bit PM timer at 3.579545 MHz (TMR_VAL_EXT = 0).
//! - GPE0_BLK = [`GPE0_BASE`] (0xAFE0), 4 bytes (GPE0_BLK_LEN = 4): reads zeros.
//! - SCI_INT = [`SCI_IRQ`] (9), level-triggered, active high (the MADT's override for IRQ 9
//!   says level/high as QEMU's does).
//! - RESET_REG = I/O port 0xCF9, RESET_VALUE = 0x06 (the machine decodes it).
//! - \_S5 = SLP_TYP 0, as in QEMU's DSDT (`Name (_S5, Package () { 0, 0, 0, 0 })`): writing
//!   SLP_EN with SLP_TYP 0 asks the machine to power off ([`SystemRequest::PowerOff`]).

use crate::{read_bytes, warn_once, write_bytes, PortDevice, SystemRequest, Timed, NS_PER_SEC};

/// The PM block's base port (PMBASE).
pub const PM_BASE: u16 = 0x600;
/// Length of the PM block the machine maps at [`PM_BASE`].
pub const PM_LEN: u16 = 0x0c;
/// The GPE0 block's base port.
pub const GPE0_BASE: u16 = 0xafe0;
/// The GPE0 block's length.
pub const GPE0_LEN: u16 = 4;
/// The ISA IRQ of the SCI.
pub const SCI_IRQ: u8 = 9;
/// The PM timer's rate in Hz.
pub const PM_TIMER_HZ: u64 = 3_579_545;

const TMR_STS: u16 = 1 << 0;
const PWRBTN_STS: u16 = 1 << 8;
const WAK_STS: u16 = 1 << 15;
/// GBL_EN and RTC_EN: the guest may enable the global-lock and RTC-alarm events (their
/// status bits never set here: no firmware takes the global lock, no RTC wake).
const GBL_EN: u16 = 1 << 5;
const RTC_EN: u16 = 1 << 10;
const SCI_EN: u16 = 1 << 0;
const SLP_EN: u16 = 1 << 13;
/// SLP_TYP for S5 in the DSDT.
pub const SLP_TYP_S5: u16 = 0;

/// The guest-visible state of the PM block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiPmState {
    /// PM1_STS.
    pub sts: u16,
    /// PM1_EN.
    pub en: u16,
    /// PM1_CNT (without the write-only SLP_EN).
    pub cnt: u16,
    /// PM-timer value (in ticks, all bits) at the last look, for TMR_STS.
    pub last_ticks: u64,
}

/// The PM block.
#[derive(Clone, Debug)]
pub struct AcpiPm {
    s: AcpiPmState,
    request: Option<SystemRequest>,
}

impl Default for AcpiPm {
    fn default() -> Self {
        Self::new()
    }
}

/// The PM timer's tick count at `now_ns`.
fn ticks(now_ns: u64) -> u64 {
    (u128::from(now_ns) * u128::from(PM_TIMER_HZ) / u128::from(NS_PER_SEC)) as u64
}

impl AcpiPm {
    /// The block as at power-on (SCI_EN set).
    pub fn new() -> Self {
        AcpiPm { s: AcpiPmState { sts: 0, en: 0, cnt: SCI_EN, last_ticks: 0 }, request: None }
    }

    /// Back to the power-on state (the timer keeps counting virtual time).
    pub fn reset(&mut self) {
        let last = self.s.last_ticks;
        *self = Self::new();
        self.s.last_ticks = last;
    }

    /// The guest-visible state.
    pub fn state(&self) -> AcpiPmState {
        self.s.clone()
    }

    /// Takes back a state from [`AcpiPm::state`].
    pub fn restore(&mut self, s: AcpiPmState) {
        self.s = s;
        self.request = None;
    }

    /// The power-off request a PM1_CNT write made, if any.
    pub fn take_request(&mut self) -> Option<SystemRequest> {
        self.request.take()
    }

    /// The SCI's level: an enabled event is pending.
    pub fn sci_level(&self) -> bool {
        self.s.sts & self.s.en & (TMR_STS | PWRBTN_STS) != 0
    }

    /// The power button was pressed (a host-side event).
    pub fn press_power_button(&mut self) {
        self.s.sts |= PWRBTN_STS;
    }

    fn read_byte(&mut self, port: u16, now: u64) -> u8 {
        self.advance(now);
        let word = |v: u16, hi: bool| if hi { (v >> 8) as u8 } else { v as u8 };
        match port.wrapping_sub(PM_BASE) {
            o @ 0..=1 => word(self.s.sts, o == 1),
            o @ 2..=3 => word(self.s.en, o == 3),
            o @ 4..=5 => word(self.s.cnt, o == 5),
            o @ 8..=11 => ((ticks(now) & 0xff_ffff) >> (8 * (o - 8))) as u8,
            _ => 0xff,
        }
    }
}

impl PortDevice for AcpiPm {
    fn port_read(&mut self, offset: u16, size: u8, now_ns: u64) -> u32 {
        if offset >= GPE0_BASE {
            return 0;
        }
        read_bytes(offset, size, |p| self.read_byte(p, now_ns))
    }

    fn port_write(&mut self, offset: u16, size: u8, val: u32, now_ns: u64) {
        if offset >= GPE0_BASE {
            return;
        }
        self.advance(now_ns);
        // Status bits are write-one-to-clear; the two bytes of a word come as a pair.
        let mut bytes = [None::<u8>; 12];
        write_bytes(offset, size, val, |p, b| {
            if let Some(slot) = bytes.get_mut(usize::from(p.wrapping_sub(PM_BASE))) {
                *slot = Some(b);
            }
        });
        let merge = |old: u16, lo: Option<u8>, hi: Option<u8>| {
            let lo = lo.map_or(old & 0xff, u16::from);
            let hi = hi.map_or(old >> 8, u16::from);
            lo | (hi << 8)
        };
        if bytes[0].is_some() || bytes[1].is_some() {
            let clear = u16::from(bytes[0].unwrap_or(0)) | (u16::from(bytes[1].unwrap_or(0)) << 8);
            self.s.sts &= !(clear & (TMR_STS | PWRBTN_STS | WAK_STS));
        }
        if bytes[2].is_some() || bytes[3].is_some() {
            self.s.en = merge(self.s.en, bytes[2], bytes[3]) & (TMR_STS | PWRBTN_STS | GBL_EN | RTC_EN);
        }
        if bytes[4].is_some() || bytes[5].is_some() {
            let v = merge(self.s.cnt, bytes[4], bytes[5]);
            self.s.cnt = (v & !SLP_EN) | SCI_EN;
            if v & SLP_EN != 0 {
                let typ = (v >> 10) & 7;
                if typ == SLP_TYP_S5 {
                    self.request = Some(SystemRequest::PowerOff);
                } else {
                    warn_once!("the guest asked for sleep type {typ}, which is not supported (only S5, type 0)");
                }
            }
        }
    }
}

impl Timed for AcpiPm {
    fn advance(&mut self, now_ns: u64) {
        let t = ticks(now_ns);
        if t < self.s.last_ticks {
            return;
        }
        // TMR_STS: bit 23 of the counter changed.
        if t >> 23 != self.s.last_ticks >> 23 {
            self.s.sts |= TMR_STS;
        }
        self.s.last_ticks = t;
    }

    fn next_deadline(&self, now_ns: u64) -> Option<u64> {
        if self.s.en & TMR_STS == 0 || self.s.sts & TMR_STS != 0 {
            return None;
        }
        let next_tick = ((ticks(now_ns) >> 23) + 1) << 23;
        let ns = (u128::from(next_tick) * u128::from(NS_PER_SEC)).div_ceil(u128::from(PM_TIMER_HZ));
        Some(u64::try_from(ns).unwrap_or(u64::MAX).max(now_ns.saturating_add(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pm_timer_counts_at_3_58_mhz_and_wraps_at_24_bits() {
        let mut pm = AcpiPm::new();
        assert_eq!(pm.port_read(0x608, 4, 1_000_000_000), 3_579_545);
        let wrap_ns = (1u64 << 24) * NS_PER_SEC / PM_TIMER_HZ + 1000;
        assert!(pm.port_read(0x608, 4, wrap_ns) < 10_000);
    }

    #[test]
    fn s5_requests_power_off() {
        let mut pm = AcpiPm::new();
        pm.port_write(0x604, 2, (SLP_TYP_S5 << 10 | SLP_EN).into(), 0);
        assert_eq!(pm.take_request(), Some(SystemRequest::PowerOff));
        assert_eq!(pm.port_read(0x604, 2, 0) & u32::from(SLP_EN), 0);
        pm.port_write(0x604, 2, (1 << 10 | SLP_EN).into(), 0);
        assert_eq!(pm.take_request(), None);
    }

    #[test]
    fn timer_overflow_raises_sci_until_cleared() {
        let mut pm = AcpiPm::new();
        pm.port_write(0x602, 2, 1, 0);
        let d = pm.next_deadline(0).expect("armed");
        pm.advance(d);
        assert_eq!(ticks(d) >> 23, 1);
        assert!(pm.sci_level());
        pm.port_write(0x600, 2, 1, d);
        assert!(!pm.sci_level());
    }

    #[test]
    fn gpe0_reads_zero() {
        let mut pm = AcpiPm::new();
        assert_eq!(pm.port_read(GPE0_BASE, 4, 0), 0);
    }
}
