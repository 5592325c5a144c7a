//! The Motorola MC146818 real-time clock and its 128 bytes of CMOS RAM, at index port 0x70
//! (bit 7 of a write masks NMI) and data port 0x71.
//!
//! The clock keeps the calendar in binary internally and shows it in BCD or binary, 12 or 24
//! hours, as register B asks. It runs off the machine's virtual time from a start date the
//! machine gives ([`Rtc::new`] takes a Unix time): update cycles happen once a virtual second on
//! the divider's phase, periodic interrupts at the rate register A selects, both computed from
//! the time handed in, never ticked. The IRQ8 output is [`Rtc::irq_level`]; register C must be
//! read to drop it, as on the chip.
//!
//! Port offsets are the ISA port numbers (see [`PORTS`]).
//!
//! Simplified: daylight-saving (register B DSE) is ignored, the square-wave output is not
//! modelled (it is not wired on a PC), the century byte 0x32 counts on when the year wraps (as
//! QEMU's does; the MC146818 has no century), and after a guest writes an impossible date the
//! next day change first brings it into range.

use crate::{from_bcd, read_bytes, to_bcd, warn_once, write_bytes, PortDevice, Timed, NS_PER_SEC};

/// The ports this device decodes, as (first port, count). Offsets are port numbers.
pub const PORTS: &[(u16, u16)] = &[(0x70, 2)];

/// Size of the CMOS RAM, registers included.
pub const CMOS_SIZE: usize = 128;

/// CMOS index of the century byte (as ACPI's FADT and SeaBIOS name it).
pub const CENTURY: u8 = 0x32;

const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_SQWE: u8 = 0x08;
const B_DM_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const B_DSE: u8 = 0x01;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;

/// The 32.768 kHz time base: its ticks per second.
const DIVIDER_HZ: u64 = 32_768;

/// UIP is high for 244 us before an update cycle and during the 1984 us of the cycle; the new
/// time shows when it falls. A guest that sees UIP clear has at least 244 us to read.
const UIP_WINDOW_NS: u64 = 244_000 + 1_984_000;

/// The calendar, as the clock holds it: binary, 24-hour, full year.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcTime {
    /// Year, 0-9999.
    pub year: u16,
    /// Month, 1-12.
    pub month: u8,
    /// Day of the month, 1-31.
    pub day: u8,
    /// Day of the week, 1-7 with Sunday 1 (the PC BIOS convention).
    pub weekday: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub minute: u8,
    /// Second, 0-59.
    pub second: u8,
}

impl Default for RtcTime {
    fn default() -> Self {
        RtcTime::from_unix(0)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl RtcTime {
    /// The calendar time `secs` seconds after the Unix epoch (years wrap at 10000).
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        RtcTime {
            year: year.rem_euclid(10_000) as u16,
            month,
            day,
            weekday: (days + 4).rem_euclid(7) as u8 + 1,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// Seconds since the Unix epoch, when the fields make a valid date and time.
    pub fn to_unix(&self) -> Option<i64> {
        let year = i64::from(self.year);
        let valid = (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60;
        valid.then(|| {
            days_from_civil(year, self.month, self.day) * 86_400
                + i64::from(self.hour) * 3600
                + i64::from(self.minute) * 60
                + i64::from(self.second)
        })
    }

    /// Moves the clock on by `secs` seconds, carrying into the date like the chip.
    fn add_seconds(&mut self, secs: u64) {
        let total = u64::from(self.second) + secs;
        self.second = (total % 60) as u8;
        let total = u64::from(self.minute) + total / 60;
        self.minute = (total % 60) as u8;
        let total = u64::from(self.hour) + total / 60;
        self.hour = (total % 24) as u8;
        let days = total / 24;
        if days > 0 {
            self.add_days(days);
        }
    }

    fn add_days(&mut self, days: u64) {
        self.weekday = ((u64::from(self.weekday) + 6 + days % 7) % 7 + 1) as u8;
        let year = i64::from(self.year);
        // A date a guest wrote out of range is first brought into range.
        let month = self.month.clamp(1, 12);
        let day = self.day.clamp(1, days_in_month(year, month));
        let days = i64::try_from(days).unwrap_or(i64::MAX / 2).min(1 << 40);
        let (y, m, d) = civil_from_days(days_from_civil(year, month, day) + days);
        self.year = y.rem_euclid(10_000) as u16;
        self.month = m;
        self.day = d;
    }
}

/// The guest-visible state of the RTC and CMOS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtcState {
    /// CMOS RAM. Bytes 0x00-0x0D (clock registers) and 0x32 (century) are kept in the fields
    /// below; their slots here are unused.
    pub cmos: [u8; CMOS_SIZE],
    /// The register selected through port 0x70.
    pub index: u8,
    /// Port 0x70 bit 7: NMI masked.
    pub nmi_masked: bool,
    /// The calendar as of `last_ns`.
    pub time: RtcTime,
    /// Alarm seconds, minutes, hours, as written (0xC0-0xFF is "don't care").
    pub alarm: [u8; 3],
    /// Register A bits 6-0 (divider and rate select).
    pub reg_a: u8,
    /// Register B.
    pub reg_b: u8,
    /// Register C flags PF, AF, UF.
    pub flags: u8,
    /// The divider's phase: update cycles complete where `now + phase_ns` is a whole second.
    pub phase_ns: u64,
    /// The virtual time up to which the clock has been brought.
    pub last_ns: u64,
}

impl Default for RtcState {
    fn default() -> Self {
        RtcState {
            cmos: [0; CMOS_SIZE],
            index: 0,
            nmi_masked: false,
            time: RtcTime::default(),
            alarm: [0; 3],
            // 32.768 kHz time base, 1024 Hz periodic rate: what BIOSes program.
            reg_a: 0x26,
            reg_b: B_24H,
            flags: 0,
            phase_ns: 0,
            last_ns: 0,
        }
    }
}

/// The MC146818 RTC with its CMOS RAM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rtc {
    state: RtcState,
}

impl Rtc {
    /// A clock that reads `start_unix` (seconds since the Unix epoch, UTC or local time as the
    /// machine likes) at virtual time 0, running, BCD, 24-hour.
    pub fn new(start_unix: i64) -> Self {
        let mut rtc = Rtc::default();
        rtc.state.time = RtcTime::from_unix(start_unix);
        rtc
    }

    /// A copy of the guest-visible state.
    pub fn state(&self) -> RtcState {
        self.state.clone()
    }

    /// Replaces the guest-visible state (snapshot restore).
    pub fn restore(&mut self, state: RtcState) {
        self.state = state;
    }

    /// What the chip's RESET pin does (a machine reset): interrupt enables and flags clear;
    /// the clock and the CMOS keep running on their battery.
    pub fn reset(&mut self) {
        self.state.reg_b &= !(B_PIE | B_AIE | B_UIE | B_SQWE);
        self.state.flags = 0;
    }

    /// The IRQ8 output (register C's IRQF), as of the last access or advance.
    pub fn irq_level(&self) -> bool {
        self.state.flags & self.state.reg_b & (C_PF | C_AF | C_UF) != 0
    }

    /// Whether the guest has masked NMI through port 0x70 bit 7.
    pub fn nmi_masked(&self) -> bool {
        self.state.nmi_masked
    }

    /// The calendar at `now_ns`.
    pub fn time(&mut self, now_ns: u64) -> RtcTime {
        self.sync(now_ns);
        self.state.time
    }

    /// A CMOS byte, as the guest would read it at the last time seen (register C is not
    /// cleared by this look).
    pub fn cmos_byte(&self, index: u8) -> u8 {
        match index & 0x7f {
            REG_C => self.reg_c(),
            i => self.peek(i),
        }
    }

    /// Writes a CMOS byte as the guest would (for the machine's configuration bytes: floppy
    /// and disk types, equipment, boot order, CPU count...).
    pub fn set_cmos_byte(&mut self, index: u8, val: u8) {
        let now = self.state.last_ns;
        self.write_register(index & 0x7f, val, now);
    }

    /// Fills the memory-size bytes from the RAM size, split around the PCI hole the way QEMU's
    /// PC does it (all of it below 4 GiB up to 3.5 GiB, else 3 GiB below and the rest above).
    pub fn set_memory_size(&mut self, bytes: u64) {
        let below = if bytes >= 0xe000_0000 { 0xc000_0000 } else { bytes };
        self.set_memory_layout(below, bytes - below);
    }

    /// Fills the memory-size bytes that BIOSes (SeaBIOS among them) read: base memory at
    /// 0x15/0x16 (640 KiB), extended memory above 1 MiB in KiB at 0x17/0x18 and 0x30/0x31
    /// (at most 65535), memory between 16 MiB and 4 GiB in 64 KiB units at 0x34/0x35, memory
    /// above 4 GiB in 64 KiB units at 0x5B-0x5D; then the standard checksum at 0x2E/0x2F.
    pub fn set_memory_layout(&mut self, below_4g: u64, above_4g: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        let cmos = &mut self.state.cmos;
        let mut put16 = |lo: usize, v: u64| {
            cmos[lo] = v as u8;
            cmos[lo + 1] = (v >> 8) as u8;
        };
        put16(0x15, 640);
        let ext = (below_4g.saturating_sub(MIB) / KIB).min(0xffff);
        put16(0x17, ext);
        put16(0x30, ext);
        put16(0x34, (below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xffff));
        let high = (above_4g / (64 * KIB)).min(0xff_ffff);
        cmos[0x5b] = high as u8;
        cmos[0x5c] = (high >> 8) as u8;
        cmos[0x5d] = (high >> 16) as u8;
        self.update_checksum();
    }

    /// Recomputes the IBM AT checksum of bytes 0x10-0x2D, stored big-endian at 0x2E/0x2F.
    pub fn update_checksum(&mut self) {
        let sum: u16 = self.state.cmos[0x10..=0x2d].iter().map(|&b| u16::from(b)).sum();
        self.state.cmos[0x2e] = (sum >> 8) as u8;
        self.state.cmos[0x2f] = sum as u8;
    }

    fn running(&self) -> bool {
        // Divider 000, 001, 010 run (the PC uses 010, 32.768 kHz); 11x holds the chain in
        // reset; 011-101 are test modes in which the clock does not count.
        matches!((self.state.reg_a >> 4) & 7, 0..=2)
    }

    fn binary(&self) -> bool {
        self.state.reg_b & B_DM_BINARY != 0
    }

    fn encode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.state.reg_b & B_24H != 0 {
            return self.encode(hour);
        }
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | if hour >= 12 { 0x80 } else { 0 }
    }

    fn decode_hour(&self, raw: u8) -> u8 {
        if self.state.reg_b & B_24H != 0 {
            return self.decode(raw & 0x7f);
        }
        let h = self.decode(raw & 0x7f) % 12;
        if raw & 0x80 != 0 {
            h + 12
        } else {
            h
        }
    }

    /// Divider ticks (32.768 kHz) at virtual time `ns`, on the divider's phase.
    fn divider_tick(&self, ns: u64) -> u64 {
        let t = u128::from(ns) + u128::from(self.state.phase_ns);
        (t * u128::from(DIVIDER_HZ) / u128::from(NS_PER_SEC)) as u64
    }

    /// The virtual time at which divider tick `tick` happens.
    fn divider_ns(&self, tick: u64) -> u64 {
        let t = (u128::from(tick) * u128::from(NS_PER_SEC)).div_ceil(u128::from(DIVIDER_HZ));
        u64::try_from(t).unwrap_or(u64::MAX).saturating_sub(self.state.phase_ns)
    }

    /// The periodic interrupt's period in divider ticks (register A RS3-0).
    fn periodic_ticks(&self) -> Option<u64> {
        match self.state.reg_a & 0x0f {
            0 => None,
            // Rates 1 and 2 repeat rates 8 and 9 with the 32.768 kHz time base.
            1 => Some(128),
            2 => Some(256),
            rs => Some(1 << (rs - 1)),
        }
    }

    fn alarm_matches(&self) -> bool {
        let t = self.state.time;
        let now = [self.encode(t.second), self.encode(t.minute), self.encode_hour(t.hour)];
        self.state.alarm.iter().zip(now).all(|(&a, v)| a & 0xc0 == 0xc0 || a == v)
    }

    /// Brings the clock up to `now_ns`: update cycles move the calendar on and set UF (and
    /// AF on an alarm match), the periodic divider sets PF.
    fn sync(&mut self, now_ns: u64) {
        let now = now_ns.max(self.state.last_ns);
        if now == self.state.last_ns {
            return;
        }
        if self.running() {
            let t0 = self.divider_tick(self.state.last_ns);
            let t1 = self.divider_tick(now);
            if self.periodic_ticks().is_some_and(|p| t1 / p > t0 / p) {
                self.state.flags |= C_PF;
            }
            let updates = t1 / DIVIDER_HZ - t0 / DIVIDER_HZ;
            // SET stops update cycles: the calendar stands still while the guest sets it.
            if updates > 0 && self.state.reg_b & B_SET == 0 {
                self.run_updates(updates);
            }
        }
        self.state.last_ns = now;
    }

    fn run_updates(&mut self, n: u64) {
        self.state.flags |= C_UF;
        if self.state.flags & C_AF != 0 {
            self.state.time.add_seconds(n);
            return;
        }
        // The alarm compares time of day only, so the last day's updates decide AF.
        let skip = n.saturating_sub(86_400);
        self.state.time.add_seconds(skip);
        for done in skip..n {
            self.state.time.add_seconds(1);
            if self.alarm_matches() {
                self.state.flags |= C_AF;
                self.state.time.add_seconds(n - done - 1);
                return;
            }
        }
    }

    fn uip(&self, now: u64) -> bool {
        if !self.running() || self.state.reg_b & B_SET != 0 {
            return false;
        }
        let phase = (u128::from(now) + u128::from(self.state.phase_ns)) % u128::from(NS_PER_SEC);
        phase >= u128::from(NS_PER_SEC - UIP_WINDOW_NS)
    }

    fn reg_c(&self) -> u8 {
        self.state.flags | if self.irq_level() { C_IRQF } else { 0 }
    }

    /// A register's value without side effects.
    fn peek(&self, index: u8) -> u8 {
        let t = self.state.time;
        match index {
            0x00 => self.encode(t.second),
            0x01 => self.state.alarm[0],
            0x02 => self.encode(t.minute),
            0x03 => self.state.alarm[1],
            0x04 => self.encode_hour(t.hour),
            0x05 => self.state.alarm[2],
            0x06 => self.encode(t.weekday),
            0x07 => self.encode(t.day),
            0x08 => self.encode(t.month),
            0x09 => self.encode((t.year % 100) as u8),
            REG_A => self.state.reg_a | if self.uip(self.state.last_ns) { A_UIP } else { 0 },
            REG_B => self.state.reg_b,
            REG_C => self.reg_c(),
            REG_D => D_VRT,
            CENTURY => self.encode((t.year / 100) as u8),
            i => self.state.cmos[usize::from(i & 0x7f)],
        }
    }

    fn read_register(&mut self, index: u8, now: u64) -> u8 {
        self.sync(now);
        let val = self.peek(index);
        if index == REG_C {
            // Reading C clears the flags and with them IRQF and the IRQ8 output.
            self.state.flags = 0;
        }
        val
    }

    fn write_register(&mut self, index: u8, val: u8, now: u64) {
        self.sync(now);
        match index {
            0x00 => self.state.time.second = self.decode(val),
            0x01 => self.state.alarm[0] = val,
            0x02 => self.state.time.minute = self.decode(val),
            0x03 => self.state.alarm[1] = val,
            0x04 => self.state.time.hour = self.decode_hour(val),
            0x05 => self.state.alarm[2] = val,
            0x06 => self.state.time.weekday = self.decode(val),
            0x07 => self.state.time.day = self.decode(val),
            0x08 => self.state.time.month = self.decode(val),
            0x09 => {
                let yy = u16::from(self.decode(val) % 100);
                self.state.time.year = self.state.time.year / 100 * 100 + yy;
            }
            CENTURY => {
                let cc = u16::from(self.decode(val) % 100);
                self.state.time.year = cc * 100 + self.state.time.year % 100;
            }
            REG_A => {
                let was_running = self.running();
                self.state.reg_a = val & !A_UIP;
                if !self.running() && (val >> 4) & 7 != 6 && (val >> 4) & 7 != 7 {
                    warn_once!("rtc: register A selects a divider test mode ({:#x})", val);
                }
                if !was_running && self.running() {
                    // Leaving divider reset: the first update cycle comes half a second later.
                    let half = NS_PER_SEC / 2;
                    self.state.phase_ns = (NS_PER_SEC - (now % NS_PER_SEC + half) % NS_PER_SEC) % NS_PER_SEC;
                }
            }
            REG_B => {
                // Setting SET clears UIE.
                let val = if val & B_SET != 0 { val & !B_UIE } else { val };
                if val & B_DSE != 0 {
                    warn_once!("rtc: daylight saving (register B DSE) is not implemented");
                }
                self.state.reg_b = val;
            }
            // C and D are read-only.
            REG_C | REG_D => {}
            i => self.state.cmos[usize::from(i & 0x7f)] = val,
        }
    }
}

impl PortDevice for Rtc {
    fn port_read(&mut self, offset: u16, size: u8, now_ns: u64) -> u32 {
        read_bytes(offset, size, |port| match port {
            // The index register is write-only.
            0x70 => 0xff,
            0x71 => self.read_register(self.state.index, now_ns),
            _ => 0xff,
        })
    }

    fn port_write(&mut self, offset: u16, size: u8, val: u32, now_ns: u64) {
        write_bytes(offset, size, val, |port, byte| match port {
            0x70 => {
                self.state.index = byte & 0x7f;
                self.state.nmi_masked = byte & 0x80 != 0;
            }
            0x71 => self.write_register(self.state.index, byte, now_ns),
            _ => {}
        });
    }
}

impl Timed for Rtc {
    fn advance(&mut self, now_ns: u64) {
        self.sync(now_ns);
    }

    /// When IRQ8 may next rise: the next periodic tick or update cycle whose interrupt is
    /// enabled. While IRQ8 is high nothing more can happen until register C is read.
    fn next_deadline(&self, now_ns: u64) -> Option<u64> {
        if self.irq_level() || !self.running() {
            return None;
        }
        let t = self.divider_tick(now_ns.max(self.state.last_ns));
        let b = self.state.reg_b;
        let periodic = self.periodic_ticks().filter(|_| b & B_PIE != 0).map(|p| self.divider_ns((t / p + 1) * p));
        let update =
            (b & (B_UIE | B_AIE) != 0 && b & B_SET == 0).then(|| self.divider_ns((t / DIVIDER_HZ + 1) * DIVIDER_HZ));
        match (periodic, update) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-02-28 23:59:58 UTC, a Wednesday.
    const START: i64 = 1_709_164_798;
    const MS: u64 = 1_000_000;

    fn read(rtc: &mut Rtc, index: u8, now: u64) -> u8 {
        rtc.port_write(0x70, 1, u32::from(index), now);
        rtc.port_read(0x71, 1, now) as u8
    }

    fn write(rtc: &mut Rtc, index: u8, val: u8, now: u64) {
        rtc.port_write(0x70, 1, u32::from(index), now);
        rtc.port_write(0x71, 1, u32::from(val), now);
    }

    #[test]
    fn unix_conversion_round_trips() {
        let t = RtcTime::from_unix(START);
        assert_eq!(t, RtcTime { year: 2024, month: 2, day: 28, weekday: 4, hour: 23, minute: 59, second: 58 });
        assert_eq!(t.to_unix(), Some(START));
        assert_eq!(RtcTime::from_unix(0).weekday, 5, "1970-01-01 was a Thursday");
        assert_eq!(RtcTime::from_unix(-1).year, 1969);
    }

    #[test]
    fn time_reads_in_bcd_24h_by_default() {
        let mut rtc = Rtc::new(START);
        assert_eq!(read(&mut rtc, 0x00, 0), 0x58);
        assert_eq!(read(&mut rtc, 0x02, 0), 0x59);
        assert_eq!(read(&mut rtc, 0x04, 0), 0x23);
        assert_eq!(read(&mut rtc, 0x06, 0), 0x04);
        assert_eq!(read(&mut rtc, 0x07, 0), 0x28);
        assert_eq!(read(&mut rtc, 0x08, 0), 0x02);
        assert_eq!(read(&mut rtc, 0x09, 0), 0x24);
        assert_eq!(read(&mut rtc, CENTURY, 0), 0x20);
        assert_eq!(read(&mut rtc, REG_A, 0), 0x26);
        assert_eq!(read(&mut rtc, REG_B, 0), 0x02);
        assert_eq!(read(&mut rtc, REG_D, 0), 0x80);
    }

    #[test]
    fn clock_runs_on_virtual_time_into_a_leap_day() {
        let mut rtc = Rtc::new(START);
        let t = rtc.time(2 * NS_PER_SEC);
        assert_eq!((t.month, t.day, t.hour, t.minute, t.second, t.weekday), (2, 29, 0, 0, 0, 5));
        let t = rtc.time(2 * NS_PER_SEC + 86_400 * NS_PER_SEC);
        assert_eq!((t.month, t.day), (3, 1));
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut rtc = Rtc::new(START);
        write(&mut rtc, REG_B, B_DM_BINARY, 0);
        assert_eq!(read(&mut rtc, 0x00, 0), 58);
        assert_eq!(read(&mut rtc, 0x04, 0), 0x80 | 11, "23:00 is 11 PM");
        write(&mut rtc, REG_B, 0, 0);
        assert_eq!(read(&mut rtc, 0x04, 0), 0x91, "11 PM in BCD");
        // Writing 12 AM in 12-hour BCD means hour 0.
        write(&mut rtc, 0x04, 0x12, 0);
        assert_eq!(rtc.time(0).hour, 0);
        write(&mut rtc, 0x04, 0x92, 0);
        assert_eq!(rtc.time(0).hour, 12);
    }

    #[test]
    fn set_bit_freezes_the_clock_for_setting() {
        let mut rtc = Rtc::new(START);
        write(&mut rtc, REG_B, B_SET | B_UIE | B_24H, 0);
        assert_eq!(read(&mut rtc, REG_B, 0) & B_UIE, 0, "SET clears UIE");
        write(&mut rtc, 0x00, 0x30, 0);
        write(&mut rtc, 0x02, 0x15, 0);
        write(&mut rtc, 0x04, 0x10, 0);
        write(&mut rtc, 0x09, 0x99, 0);
        assert_eq!(read(&mut rtc, 0x00, 5 * NS_PER_SEC), 0x30);
        write(&mut rtc, REG_B, B_24H, 5 * NS_PER_SEC);
        assert_eq!(read(&mut rtc, 0x00, 6 * NS_PER_SEC), 0x31);
        assert_eq!(rtc.time(6 * NS_PER_SEC).year, 2099);
    }

    #[test]
    fn year_wrap_carries_into_the_century_byte() {
        let mut rtc = Rtc::new(946_684_799); // 1999-12-31 23:59:59
        assert_eq!(read(&mut rtc, CENTURY, 0), 0x19);
        assert_eq!(read(&mut rtc, 0x09, NS_PER_SEC), 0x00);
        assert_eq!(read(&mut rtc, CENTURY, NS_PER_SEC), 0x20);
        assert_eq!(read(&mut rtc, 0x08, NS_PER_SEC), 0x01);
    }

    #[test]
    fn uip_is_set_just_before_each_update() {
        let mut rtc = Rtc::new(START);
        assert_eq!(read(&mut rtc, REG_A, 500 * MS) & A_UIP, 0);
        assert_eq!(read(&mut rtc, REG_A, NS_PER_SEC - 1_000_000) & A_UIP, A_UIP);
        assert_eq!(read(&mut rtc, 0x00, NS_PER_SEC - 1_000_000), 0x58, "old time during UIP");
        assert_eq!(read(&mut rtc, REG_A, NS_PER_SEC) & A_UIP, 0);
        assert_eq!(read(&mut rtc, 0x00, NS_PER_SEC), 0x59);
    }

    #[test]
    fn update_ended_interrupt_and_register_c_clear() {
        let mut rtc = Rtc::new(START);
        write(&mut rtc, REG_B, B_UIE | B_24H, 100 * MS);
        assert!(!rtc.irq_level());
        assert_eq!(rtc.next_deadline(100 * MS), Some(NS_PER_SEC));
        rtc.advance(NS_PER_SEC);
        assert!(rtc.irq_level());
        assert_eq!(rtc.next_deadline(NS_PER_SEC), None, "IRQF stays until C is read");
        assert_eq!(read(&mut rtc, REG_C, NS_PER_SEC), C_IRQF | C_PF | C_UF);
        assert!(!rtc.irq_level());
        assert_eq!(read(&mut rtc, REG_C, NS_PER_SEC), 0);
    }

    #[test]
    fn flags_are_set_even_with_interrupts_disabled() {
        let mut rtc = Rtc::new(START);
        // The alarm registers hold 00:00:00, which the clock passes at midnight.
        assert_eq!(read(&mut rtc, REG_C, 3 * NS_PER_SEC), C_PF | C_AF | C_UF);
        assert!(!rtc.irq_level());
        // Enabling an interrupt whose flag is already up raises IRQ8 at once.
        rtc.advance(4 * NS_PER_SEC);
        write(&mut rtc, REG_B, B_UIE | B_24H, 4 * NS_PER_SEC);
        assert!(rtc.irq_level());
    }

    #[test]
    fn periodic_interrupt_at_1024_hz() {
        let mut rtc = Rtc::new(START);
        write(&mut rtc, REG_B, B_PIE | B_24H, 0);
        let period = NS_PER_SEC / 1024; // 976562.5 ns
        let first = rtc.next_deadline(0).expect("periodic deadline");
        assert_eq!(first, period + 1);
        rtc.advance(first - 1);
        assert!(!rtc.irq_level());
        rtc.advance(first);
        assert!(rtc.irq_level());
        assert_eq!(read(&mut rtc, REG_C, first) & C_PF, C_PF);
        assert_eq!(rtc.next_deadline(first), Some(NS_PER_SEC / 512));
        // Rate 15 is 2 Hz; rate 3 is 8192 Hz.
        write(&mut rtc, REG_A, 0x2f, first);
        assert_eq!(rtc.next_deadline(first), Some(NS_PER_SEC / 2));
        write(&mut rtc, REG_A, 0x20, first);
        assert_eq!(rtc.next_deadline(first), None, "rate 0 disables the periodic interrupt");
    }

    #[test]
    fn alarm_interrupt_with_dont_care_fields() {
        let mut rtc = Rtc::new(START);
        // Alarm at hh:mm:05 for any hour and minute.
        write(&mut rtc, 0x01, 0x05, 0);
        write(&mut rtc, 0x03, 0xc0, 0);
        write(&mut rtc, 0x05, 0xff, 0);
        write(&mut rtc, REG_B, B_AIE | B_24H, 0);
        rtc.advance(6 * NS_PER_SEC);
        assert!(!rtc.irq_level(), "00:00:04");
        rtc.advance(7 * NS_PER_SEC);
        assert!(rtc.irq_level(), "00:00:05");
        assert_eq!(read(&mut rtc, REG_C, 7 * NS_PER_SEC), C_IRQF | C_AF | C_UF | C_PF);
        // Across a long gap the alarm is still seen.
        rtc.advance(7 * NS_PER_SEC + 3 * 86_400 * NS_PER_SEC);
        assert!(rtc.irq_level());
    }

    #[test]
    fn divider_reset_stops_the_clock_and_restarts_half_a_second_later() {
        let mut rtc = Rtc::new(START);
        write(&mut rtc, REG_A, 0x70, 0);
        assert_eq!(read(&mut rtc, 0x00, 10 * NS_PER_SEC), 0x58);
        write(&mut rtc, REG_A, 0x26, 10 * NS_PER_SEC);
        assert_eq!(read(&mut rtc, 0x00, 10 * NS_PER_SEC + 499 * MS), 0x58);
        assert_eq!(read(&mut rtc, 0x00, 10 * NS_PER_SEC + 500 * MS), 0x59);
        assert_eq!(read(&mut rtc, 0x00, 11 * NS_PER_SEC + 500 * MS), 0x00);
    }

    #[test]
    fn nmi_mask_and_write_only_index() {
        let mut rtc = Rtc::new(START);
        rtc.port_write(0x70, 1, 0x8f, 0);
        assert!(rtc.nmi_masked());
        assert_eq!(rtc.port_read(0x70, 1, 0), 0xff);
        rtc.port_write(0x70, 1, 0x0f, 0);
        assert!(!rtc.nmi_masked());
    }

    #[test]
    fn cmos_ram_holds_bytes_and_registers_c_d_are_read_only() {
        let mut rtc = Rtc::new(START);
        write(&mut rtc, 0x40, 0xa5, 0);
        assert_eq!(read(&mut rtc, 0x40, 0), 0xa5);
        write(&mut rtc, REG_D, 0x00, 0);
        assert_eq!(read(&mut rtc, REG_D, 0), 0x80);
        write(&mut rtc, REG_C, 0xff, 0);
        assert_eq!(read(&mut rtc, REG_C, 0), 0);
    }

    #[test]
    fn memory_size_bytes_follow_qemu_layout() {
        let mut rtc = Rtc::new(START);
        rtc.set_memory_size(512 << 20);
        let c = |i| rtc.cmos_byte(i);
        assert_eq!((c(0x15), c(0x16)), (0x80, 0x02), "640 KiB base memory");
        assert_eq!((c(0x17), c(0x18)), (0xff, 0xff), "extended memory saturates");
        assert_eq!((c(0x30), c(0x31)), (0xff, 0xff));
        let over16 = ((512u64 - 16) << 20) / 65536;
        assert_eq!(u64::from(c(0x34)) | u64::from(c(0x35)) << 8, over16);
        assert_eq!((c(0x5b), c(0x5c), c(0x5d)), (0, 0, 0));

        let mut rtc = Rtc::new(START);
        rtc.set_memory_size(32 << 20);
        assert_eq!(u16::from(rtc.cmos_byte(0x17)) | u16::from(rtc.cmos_byte(0x18)) << 8, 31 * 1024);

        let mut rtc = Rtc::new(START);
        rtc.set_memory_size(8 << 30);
        let below = u64::from(rtc.cmos_byte(0x34)) | u64::from(rtc.cmos_byte(0x35)) << 8;
        assert_eq!(below, (0xc000_0000 - (16 << 20)) / 65536);
        let above =
            u64::from(rtc.cmos_byte(0x5b)) | u64::from(rtc.cmos_byte(0x5c)) << 8 | u64::from(rtc.cmos_byte(0x5d)) << 16;
        assert_eq!(above, ((8u64 << 30) - 0xc000_0000) / 65536);
        let sum: u16 = (0x10..=0x2d).map(|i| u16::from(rtc.cmos_byte(i))).sum();
        assert_eq!(u16::from(rtc.cmos_byte(0x2e)) << 8 | u16::from(rtc.cmos_byte(0x2f)), sum);
    }

    #[test]
    fn impossible_dates_do_not_panic() {
        let mut rtc = Rtc::new(START);
        write(&mut rtc, REG_B, B_DM_BINARY | B_24H, 0);
        for (i, v) in [(0x00, 0xff), (0x02, 0xff), (0x04, 0xff), (0x06, 0), (0x07, 0xff), (0x08, 0xff)] {
            write(&mut rtc, i, v, 0);
        }
        let t = rtc.time(100_000 * NS_PER_SEC);
        assert!(t.second < 60 && t.minute < 60 && t.hour < 24);
        assert!((1..=12).contains(&t.month) && (1..=7).contains(&t.weekday));
    }

    #[test]
    fn reset_clears_interrupt_enables_but_keeps_time() {
        let mut rtc = Rtc::new(START);
        write(&mut rtc, REG_B, B_PIE | B_UIE | B_24H, 0);
        rtc.advance(NS_PER_SEC);
        rtc.reset();
        assert!(!rtc.irq_level());
        assert_eq!(read(&mut rtc, REG_B, NS_PER_SEC), B_24H);
        assert_eq!(read(&mut rtc, 0x00, NS_PER_SEC), 0x59);
    }
}
