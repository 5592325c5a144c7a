//! The PC chipset as plain state machines (design principle 7).
//!
//! A device knows its registers, not the bus: the machine maps it at a port or MMIO base and
//! hands it the offset of each access. Interrupt lines and the clock are handed in by the
//! machine; the guest-visible state of each device is a separate plain struct (`PicState`,
//! `PitState`, ...) that the device hands out with `state()` and takes back with `restore()`,
//! so snapshots and tests need nothing else. Unmapped reads return all ones; that is the
//! machine's job, not the devices'.
//!
//! Modules:
//! - [`pic`]: the 8259A master/slave pair with the ELCR registers (IRQ 0-15, the INTA cycle).
//! - [`pit`]: the 8254 interval timer (3 channels) and system control port B (0x61).
//! - [`rtc`]: the MC146818 real-time clock and the 128 bytes of CMOS.
//! - [`uart`]: a 16550A serial port.
//! - [`i8042`]: the keyboard controller with a PS/2 keyboard and a PS/2 mouse behind it.
//! - [`port92`]: system control port A (fast A20, fast reset).
//! - [`post`]: the port 0x80 POST code latch.
//! - [`debug`]: the 0xE9 debug console and QEMU's isa-debug-exit, for test guests.
//! - [`apic`]: the CPU's local APIC (xAPIC) with its timer.
//! - [`ioapic`]: the IO-APIC (24 pins) at 0xFEC00000.
//! - [`hpet`]: the HPET (3 comparators, 100 MHz) at 0xFED00000.
//! - [`acpi`]: the PIIX4 ACPI PM block (PM timer, PM1 events, S5 power-off) at 0x600.
//! - [`vga`]: the VGA's register file (the legacy memory window is RAM; `display` draws it).
//!
//! # Ports and offsets
//!
//! Devices that sit at fixed ISA ports and decode several scattered ports (PIC, PIT with port
//! 0x61, RTC, i8042) take the port number itself as the offset and list the ranges they decode
//! in a `PORTS` constant; the machine maps each range with offset = port. Relocatable devices
//! (the UART) take the offset from their base. Wider accesses to byte-wide devices act as
//! consecutive byte accesses, as on the ISA bus. Single-register devices (port 0x92, POST) ignore
//! the offset: they take the low byte of a write and show their register in every byte of a read.
//!
//! # Time
//!
//! Time is virtual and the machine owns it (principle 10): every port access, MMIO access and
//! host-side input carries `now_ns`, the virtual time of the access, and no device reads a host
//! clock. Devices that change their outputs by themselves as time passes (timers, the UART's
//! receive timeout, the keyboard controller's output buffer refill) implement [`Timed`]: the
//! machine asks `next_deadline(now)` when to come back and calls `advance(now)` when that time
//! has come. Interrupt outputs are levels the machine reads after each access or advance
//! (`irq_level()` and similar) and hands to the [`pic::Pic`]; the PIT's channel 0 instead counts
//! its rising edges, because a periodic timer can rise many times between two looks.

pub mod acpi;
pub mod apic;
pub mod debug;
pub mod hpet;
pub mod i8042;
pub mod ioapic;
pub mod pic;
pub mod pit;
pub mod port92;
pub mod post;
pub mod rtc;
#[cfg(test)]
mod test_sink;
pub mod uart;
pub mod vga;

/// A device reached through x86 I/O ports.
///
/// The access carries its virtual time because timers (the PIT's counters, the RTC's
/// update-in-progress bit, the UART's receive timeout) answer differently as time passes, and
/// a device must not read a clock of its own.
pub trait PortDevice {
    /// Reads `size` bytes (1, 2 or 4) at `offset` at virtual time `now_ns`.
    fn port_read(&mut self, offset: u16, size: u8, now_ns: u64) -> u32;
    /// Writes the low `size` bytes of `val` at `offset` at virtual time `now_ns`.
    fn port_write(&mut self, offset: u16, size: u8, val: u32, now_ns: u64);
}

/// A device reached through memory-mapped registers.
///
/// Like [`PortDevice`], accesses carry their virtual time (the local APIC and HPET timers).
pub trait MmioDevice {
    /// Reads `size` bytes (1, 2, 4 or 8) at `offset` from the region's base at `now_ns`.
    fn mmio_read(&mut self, offset: u64, size: u8, now_ns: u64) -> u64;
    /// Writes the low `size` bytes of `val` at `offset` from the region's base at `now_ns`.
    fn mmio_write(&mut self, offset: u64, size: u8, val: u64, now_ns: u64);
}

/// A device whose outputs change by themselves as virtual time passes.
pub trait Timed {
    /// Brings the device up to `now_ns`: expired timers fire, flags and interrupt outputs take
    /// the values they have at that time. Times earlier than one already seen are treated as
    /// that time.
    fn advance(&mut self, now_ns: u64);

    /// The earliest virtual time after `now_ns` at which an output of the device (an
    /// interrupt line, a flag the machine polls) may change without a register access, or
    /// `None` when nothing is pending. The machine calls [`Timed::advance`] at that time.
    fn next_deadline(&self, now_ns: u64) -> Option<u64>;
}

/// An interrupt line into an interrupt controller, handed to a device by the machine.
pub trait IrqLine {
    /// Drives the line high (`true`) or low.
    fn set_level(&mut self, level: bool);
}

/// Guest time, in nanoseconds since the machine started (design principle 10). The machine
/// decides whether it follows the host clock or the instruction count.
pub trait Clock {
    /// Nanoseconds of virtual time since power-on.
    fn now_ns(&self) -> u64;
}

/// Something a chipset device asks of the machine, which polls for it after port writes
/// (the keyboard controller and port 0x92 both drive the A20 gate and the reset line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemRequest {
    /// Reset the CPU (and with it the machine), as a pulse on the reset line.
    Reset,
    /// The device's A20 gate output changed to this level. On Intel chipsets the CPU's A20
    /// line is the OR of the keyboard controller's output and port 0x92 bit 1.
    A20(bool),
    /// Power the machine off (ACPI S5): the run ends normally.
    PowerOff,
}

/// Virtual nanoseconds in one second.
pub(crate) const NS_PER_SEC: u64 = 1_000_000_000;

/// Logs a warning once per call site: guests can trigger every path that uses it, and a guest
/// hammering an unsupported register must not flood the log (design principle 9).
macro_rules! warn_once {
    ($($arg:tt)*) => {{
        static LOGGED: ::std::sync::atomic::AtomicBool = ::std::sync::atomic::AtomicBool::new(false);
        if !LOGGED.swap(true, ::std::sync::atomic::Ordering::Relaxed) {
            ::log::warn!($($arg)*);
        }
    }};
}
pub(crate) use warn_once;

/// Splits a wide read from a byte-wide device into byte reads at consecutive offsets, as the
/// ISA bus does.
pub(crate) fn read_bytes(offset: u16, size: u8, mut read: impl FnMut(u16) -> u8) -> u32 {
    let mut val = 0u32;
    for i in 0..size.clamp(1, 4) {
        val |= u32::from(read(offset.wrapping_add(u16::from(i)))) << (8 * u32::from(i));
    }
    val
}

/// Splits a wide write to a byte-wide device into byte writes at consecutive offsets.
pub(crate) fn write_bytes(offset: u16, size: u8, val: u32, mut write: impl FnMut(u16, u8)) {
    for i in 0..size.clamp(1, 4) {
        write(offset.wrapping_add(u16::from(i)), (val >> (8 * u32::from(i))) as u8);
    }
}

/// Binary to packed BCD for values 0-99 (larger values wrap, as a two-digit register would).
pub(crate) fn to_bcd(v: u8) -> u8 {
    let v = v % 100;
    ((v / 10) << 4) | (v % 10)
}

/// Packed BCD to binary. Invalid digits (A-F) are taken at face value, as the hardware's
/// arithmetic would.
pub(crate) fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_accesses_split_into_little_endian_bytes() {
        let mut seen = Vec::new();
        write_bytes(0x20, 2, 0xbeef, |o, b| seen.push((o, b)));
        assert_eq!(seen, vec![(0x20, 0xef), (0x21, 0xbe)]);
        assert_eq!(read_bytes(0x10, 4, |o| o as u8), 0x1312_1110);
    }

    /// A small deterministic generator, so the hammering below is reproducible.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 16
        }
    }

    /// Random guest accesses at random (mostly increasing, sometimes huge or backwards) times
    /// must never panic any device (design principle 9).
    fn hammer(dev: &mut dyn PortDevice, ports: &[u16], seed: u64, mut extra: impl FnMut(&mut Lcg, u64)) {
        let mut rng = Lcg(seed);
        let mut now = 0u64;
        for _ in 0..50_000 {
            now = match rng.next() % 100 {
                0 => rng.next() << 20,
                1 => now / 2,
                _ => now.saturating_add(rng.next() % 100_000),
            };
            let port = ports[(rng.next() % ports.len() as u64) as usize];
            let size = [1u8, 1, 1, 2, 4][(rng.next() % 5) as usize];
            if rng.next() & 1 == 0 {
                dev.port_write(port, size, rng.next() as u32, now);
            } else {
                dev.port_read(port, size, now);
            }
            extra(&mut rng, now);
        }
    }

    #[test]
    fn random_guest_accesses_never_panic() {
        let mut pic = pic::Pic::new();
        hammer(&mut pic, &[0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x22], 1, |_, _| {});
        let mut pic = pic::Pic::new();
        let mut lines = Lcg(9);
        for _ in 0..10_000 {
            let v = lines.next();
            pic.set_irq((v % 20) as u8, v & 0x100 != 0);
            pic.port_write(0x20 + (v >> 9 & 1) as u16 * 0x80 + (v >> 10 & 1) as u16, 1, (v >> 11) as u32, 0);
            if pic.has_interrupt() {
                pic.acknowledge();
            }
        }

        let mut pit = pit::Pit::new();
        hammer(&mut pit, &[0x40, 0x41, 0x42, 0x43, 0x61], 2, |_, _| {});
        for now in [0, 1, u64::MAX / 2, u64::MAX] {
            pit.advance(now);
            let _ = pit.next_deadline(now);
            let _ = pit.irq0_edges(now);
        }

        let mut rtc = rtc::Rtc::new(1_700_000_000);
        hammer(&mut rtc, &[0x70, 0x71, 0x71, 0x71], 3, |_, _| {});
        for now in [0, u64::MAX / 2, u64::MAX] {
            rtc.advance(now);
            let _ = rtc.next_deadline(now);
        }
        let mut rtc = rtc::Rtc::new(i64::MIN);
        rtc.advance(u64::MAX);
        let mut rtc = rtc::Rtc::new(i64::MAX);
        rtc.advance(u64::MAX);

        let mut uart = uart::Uart::new(Box::new(std::io::sink()));
        let mut host = uart::Uart::new(Box::new(std::io::sink()));
        hammer(&mut uart, &[0, 1, 2, 3, 4, 5, 6, 7, 8], 4, |rng, now| {
            if rng.next() % 4 == 0 {
                host.push_input(rng.next() as u8, now);
                host.set_modem_inputs(rng.next() as u8);
                host.advance(now);
                let _ = host.next_deadline(now);
            }
        });

        let mut kbc = i8042::I8042::new();
        hammer(&mut kbc, &[0x60, 0x64], 5, |_, _| {});
        let mut kbc = i8042::I8042::new();
        let mut rng = Lcg(6);
        for i in 0..50_000u64 {
            let v = rng.next();
            match v % 4 {
                0 => kbc.key_event(i8042::Key((v >> 8) as u16), v & 0x80 != 0, i),
                1 => kbc.mouse_event((v >> 8) as i32, (v >> 40) as i32, (v >> 50) as i32 - 512, v as u8, i),
                2 => kbc.port_write(if v & 0x100 != 0 { 0x60 } else { 0x64 }, 1, (v >> 16) as u32, i),
                _ => {
                    kbc.port_read(0x60, 1, i * 1000);
                }
            }
            kbc.advance(i);
            while kbc.take_request().is_some() {}
        }

        let mut p92 = port92::Port92::new();
        hammer(&mut p92, &[0], 7, |_, _| {});
        let mut post = post::PostCode::new();
        hammer(&mut post, &[0], 8, |_, _| {});

        let mut pm = acpi::AcpiPm::new();
        hammer(&mut pm, &[0x600, 0x601, 0x602, 0x603, 0x604, 0x605, 0x608, 0x60a, 0xafe0], 10, |_, _| {});
        for now in [0, u64::MAX / 2, u64::MAX] {
            pm.advance(now);
            let _ = pm.next_deadline(now);
            pm.port_read(0x608, 4, now);
        }
    }

    /// Random MMIO accesses, times and interrupt traffic never panic the APICs or the HPET.
    #[test]
    fn random_mmio_accesses_never_panic() {
        let mut rng = Lcg(11);
        let mut lapic = apic::LocalApic::new();
        let mut io = ioapic::IoApic::new();
        let mut hpet = hpet::Hpet::new();
        let mut now = 0u64;
        for _ in 0..100_000 {
            now = match rng.next() % 100 {
                0 => rng.next() << 24,
                1 => now / 2,
                2 => u64::MAX - rng.next() % 1000,
                _ => now.saturating_add(rng.next() % 10_000),
            };
            let size = [1u8, 2, 4, 4, 8][(rng.next() % 5) as usize];
            let v = rng.next() | rng.next() << 48;
            let dev: &mut dyn MmioDevice = match rng.next() % 3 {
                0 => &mut lapic,
                1 => &mut io,
                _ => &mut hpet,
            };
            let off = rng.next() % 0x1000;
            if rng.next() & 1 == 0 {
                dev.mmio_write(off & !3, size, v, now);
            } else {
                dev.mmio_read(off, size, now);
            }
            match rng.next() % 8 {
                0 => io.set_irq((rng.next() % 30) as u8, rng.next() & 1 == 0),
                1 => lapic.accept(rng.next() as u8, rng.next() & 1 == 0),
                2 => lapic.set_base_msr(rng.next() << 8),
                3 => lapic.set_tsc_deadline(rng.next(), now),
                4 if lapic.has_interrupt() => {
                    lapic.acknowledge();
                }
                _ => {}
            }
            lapic.advance(now);
            hpet.advance(now);
            let _ = (lapic.next_deadline(now), hpet.next_deadline(now));
            while let Some(v) = lapic.take_eoi_broadcast() {
                io.eoi(v);
            }
            while io.take_message().is_some() {}
            for n in 0..hpet::TIMERS {
                hpet.take_edges(n);
                let _ = (hpet.route(n), hpet.level(n));
            }
        }
    }

    #[test]
    fn bcd_round_trips() {
        for v in 0..100 {
            assert_eq!(from_bcd(to_bcd(v)), v);
        }
        assert_eq!(to_bcd(59), 0x59);
        assert_eq!(from_bcd(0x1a), 20);
    }
}
