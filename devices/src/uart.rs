//! A National Semiconductor / TI 16550A UART, as on the PC's COM ports (COM1 at 0x3F8 on
//! IRQ4, COM2 at 0x2F8 on IRQ3). Offsets 0-7 are the registers from the base.
//!
//! Transmission is instant: a byte written to THR goes straight to the host sink (or, in
//! loopback, into the receiver), so THR and the transmitter are always empty again by the next
//! access, which is all a driver can observe. The receiver takes bytes from the host with
//! [`Uart::push_input`]; the machine should offer no more than [`Uart::rx_room`] at a time, as
//! a real line would be flow-controlled, since a full receiver overruns. With the FIFOs on, the
//! character timeout (four character times at the programmed baud rate and frame with no
//! receiver activity) is timed on virtual time through [`Timed`].
//!
//! The IRQ output ([`Uart::irq_level`]) is gated by OUT2, as the PC's board logic does.
//!
//! Simplified: no parity, framing or break errors are ever received (the host link is clean),
//! DMA mode (FCR bit 3) is stored and ignored, and the transmit FIFO is never seen non-empty.

use std::collections::VecDeque;
use std::io::Write;

use crate::{read_bytes, warn_once, write_bytes, PortDevice, Timed, NS_PER_SEC};

/// COM1's base port.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's IRQ.
pub const COM1_IRQ: u8 = 4;
/// COM2's base port.
pub const COM2_BASE: u16 = 0x2f8;
/// COM2's IRQ.
pub const COM2_IRQ: u8 = 3;
/// Registers decoded from the base.
pub const PORT_COUNT: u16 = 8;

/// The UART's input clock divided by 16: the baud rate with divisor 1.
const BAUD_BASE: u64 = 115_200;
/// Depth of the receive FIFO.
const FIFO_DEPTH: usize = 16;

const IER_RDI: u8 = 0x01;
const IER_THRI: u8 = 0x02;
const IER_RLSI: u8 = 0x04;
const IER_MSI: u8 = 0x08;

const IIR_NONE: u8 = 0x01;
const IIR_MSI: u8 = 0x00;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
const IIR_TIMEOUT: u8 = 0x0c;
const IIR_FIFO_ON: u8 = 0xc0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;

const LCR_DLAB: u8 = 0x80;

const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_ERRORS: u8 = 0x1e; // OE, PE, FE, BI
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

/// MSR line bits.
pub const MSR_CTS: u8 = 0x10;
/// Data set ready.
pub const MSR_DSR: u8 = 0x20;
/// Ring indicator.
pub const MSR_RI: u8 = 0x40;
/// Data carrier detect.
pub const MSR_DCD: u8 = 0x80;
const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;

/// The guest-visible state of a 16550A.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UartState {
    /// Receiver holding register / FIFO contents (at most one byte with the FIFOs off).
    pub rx: VecDeque<u8>,
    /// Interrupt enable register.
    pub ier: u8,
    /// FIFO control as last written: enable, DMA mode and trigger bits.
    pub fcr: u8,
    /// Line control register.
    pub lcr: u8,
    /// Modem control register.
    pub mcr: u8,
    /// Line status error bits (OE, PE, FE, BI) waiting to be read.
    pub lsr_errors: u8,
    /// Modem status delta bits (DCTS, DDSR, TERI, DDCD) waiting to be read.
    pub msr_deltas: u8,
    /// Modem status lines (CTS, DSR, RI, DCD) as the UART last saw them.
    pub msr_lines: u8,
    /// The host side's modem inputs (CTS, DSR, RI, DCD), used outside loopback.
    pub host_lines: u8,
    /// Scratch register.
    pub scr: u8,
    /// Divisor latch.
    pub divisor: u16,
    /// A THR-empty interrupt is pending (cleared by reading IIR or writing THR).
    pub thr_interrupt: bool,
    /// A character timeout has been indicated.
    pub timeout: bool,
    /// The virtual time of the last receiver activity (a byte received or read).
    pub rx_activity_ns: u64,
}

impl Default for UartState {
    fn default() -> Self {
        UartState {
            rx: VecDeque::new(),
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr_deltas: 0,
            // A terminal on the other end: clear to send, data set ready, carrier.
            msr_lines: MSR_CTS | MSR_DSR | MSR_DCD,
            host_lines: MSR_CTS | MSR_DSR | MSR_DCD,
            scr: 0,
            // 9600 baud until the guest programs it.
            divisor: 12,
            thr_interrupt: false,
            timeout: false,
            rx_activity_ns: 0,
        }
    }
}

impl UartState {
    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn trigger_level(&self) -> usize {
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    /// The receive timeout: four character times of the programmed frame.
    fn timeout_ns(&self) -> u64 {
        let data_bits = 5 + u64::from(self.lcr & 3);
        let parity = u64::from(self.lcr & 0x08 != 0);
        let stop = if self.lcr & 0x04 != 0 { 2 } else { 1 };
        let bits = 1 + data_bits + parity + stop;
        let divisor = u64::from(self.divisor.max(1));
        4 * bits * divisor * NS_PER_SEC / BAUD_BASE
    }

    /// The highest-priority pending interrupt, as IIR reports it.
    fn pending(&self) -> Option<u8> {
        if self.ier & IER_RLSI != 0 && self.lsr_errors & LSR_ERRORS != 0 {
            return Some(IIR_RLSI);
        }
        if self.ier & IER_RDI != 0 && !self.rx.is_empty() {
            if !self.fifo_enabled() || self.rx.len() >= self.trigger_level() {
                return Some(IIR_RDI);
            }
            if self.timeout {
                return Some(IIR_TIMEOUT);
            }
        }
        if self.ier & IER_THRI != 0 && self.thr_interrupt {
            return Some(IIR_THRI);
        }
        if self.ier & IER_MSI != 0 && self.msr_deltas != 0 {
            return Some(IIR_MSI);
        }
        None
    }

    /// A byte arrives at the receiver (from the host or the loopback).
    fn receive(&mut self, byte: u8, now: u64) {
        self.rx_activity_ns = now;
        self.timeout = false;
        if self.fifo_enabled() {
            if self.rx.len() < FIFO_DEPTH {
                self.rx.push_back(byte);
            } else {
                // The byte in the shift register is lost; the FIFO keeps its contents.
                self.lsr_errors |= LSR_OE;
            }
        } else {
            if !self.rx.is_empty() {
                // The unread byte in the holding register is overwritten.
                self.lsr_errors |= LSR_OE;
                self.rx.clear();
            }
            self.rx.push_back(byte);
        }
    }

    /// Recomputes the modem status lines from MCR (loopback) or the host, noting changes.
    fn update_modem_lines(&mut self) {
        let lines = if self.loopback() {
            let m = self.mcr;
            (if m & MCR_RTS != 0 { MSR_CTS } else { 0 })
                | (if m & MCR_DTR != 0 { MSR_DSR } else { 0 })
                | (if m & MCR_OUT1 != 0 { MSR_RI } else { 0 })
                | (if m & MCR_OUT2 != 0 { MSR_DCD } else { 0 })
        } else {
            self.host_lines
        };
        let changed = lines ^ self.msr_lines;
        if changed & MSR_CTS != 0 {
            self.msr_deltas |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            self.msr_deltas |= MSR_DDSR;
        }
        // TERI: the trailing (falling) edge of RI only.
        if changed & MSR_RI != 0 && lines & MSR_RI == 0 {
            self.msr_deltas |= MSR_TERI;
        }
        if changed & MSR_DCD != 0 {
            self.msr_deltas |= MSR_DDCD;
        }
        self.msr_lines = lines;
    }

    fn lsr(&self) -> u8 {
        let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
        dr | self.lsr_errors | LSR_THRE | LSR_TEMT
    }
}

/// A 16550A UART whose transmitter writes to a host sink.
pub struct Uart {
    state: UartState,
    sink: Box<dyn Write + Send>,
}

impl std::fmt::Debug for Uart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uart").field("state", &self.state).finish_non_exhaustive()
    }
}

impl Uart {
    /// A UART in its reset state whose transmitted bytes go to `sink`.
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        Uart { state: UartState::default(), sink }
    }

    /// A copy of the guest-visible state.
    pub fn state(&self) -> UartState {
        self.state.clone()
    }

    /// Replaces the guest-visible state (snapshot restore).
    pub fn restore(&mut self, state: UartState) {
        self.state = state;
    }

    /// Master reset: registers to their reset values, FIFOs empty. Host modem lines stay.
    pub fn reset(&mut self) {
        let host = self.state.host_lines;
        self.state = UartState { host_lines: host, msr_lines: host, ..UartState::default() };
    }

    /// The IRQ line: an interrupt is pending and OUT2 enables the PC's IRQ driver. In loopback
    /// the OUT2 pin is inactive, so nothing reaches the PIC.
    pub fn irq_level(&self) -> bool {
        let m = self.state.mcr;
        m & MCR_OUT2 != 0 && m & MCR_LOOP == 0 && self.state.pending().is_some()
    }

    /// How many bytes the receiver can take now without overrunning. Zero in loopback, where
    /// the receiver is cut off from the line.
    pub fn rx_room(&self) -> usize {
        if self.state.loopback() {
            0
        } else if self.state.fifo_enabled() {
            FIFO_DEPTH - self.state.rx.len().min(FIFO_DEPTH)
        } else {
            usize::from(self.state.rx.is_empty())
        }
    }

    /// A byte arrives on the serial line at `now_ns`. Ignored in loopback (the receiver
    /// listens to the transmitter then); overruns when the receiver is full.
    pub fn push_input(&mut self, byte: u8, now_ns: u64) {
        if !self.state.loopback() {
            self.state.receive(byte, now_ns);
        }
    }

    /// Sets the host side's modem lines (a mask of [`MSR_CTS`], [`MSR_DSR`], [`MSR_RI`],
    /// [`MSR_DCD`]); changes set the delta bits and may raise a modem status interrupt.
    pub fn set_modem_inputs(&mut self, lines: u8) {
        self.state.host_lines = lines & (MSR_CTS | MSR_DSR | MSR_RI | MSR_DCD);
        self.state.update_modem_lines();
    }

    /// The modem control outputs the guest drives (DTR, RTS, OUT1, OUT2 in MCR bit order);
    /// all inactive in loopback.
    pub fn modem_outputs(&self) -> u8 {
        if self.state.loopback() {
            0
        } else {
            self.state.mcr & 0x0f
        }
    }

    fn transmit(&mut self, byte: u8, now: u64) {
        if self.state.loopback() {
            self.state.receive(byte, now);
        } else {
            // A sink that cannot keep up loses the byte, as a disconnected line would; the
            // guest must not stall on the host.
            if self.sink.write_all(&[byte]).is_err() || self.sink.flush().is_err() {
                warn_once!("uart: the output sink refused a byte");
            }
        }
        // The byte left THR at once: THR is empty again.
        self.state.thr_interrupt = true;
    }

    fn read_register(&mut self, offset: u16, now: u64) -> u8 {
        self.advance(now);
        let s = &mut self.state;
        let dlab = s.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => s.divisor as u8,
            0 => {
                let byte = s.rx.pop_front().unwrap_or(0);
                s.rx_activity_ns = now;
                s.timeout = false;
                byte
            }
            1 if dlab => (s.divisor >> 8) as u8,
            1 => s.ier,
            2 => {
                let fifo = if s.fifo_enabled() { IIR_FIFO_ON } else { 0 };
                match s.pending() {
                    Some(id) => {
                        if id == IIR_THRI {
                            // Reading IIR with THRE as the source acknowledges it.
                            s.thr_interrupt = false;
                        }
                        id | fifo
                    }
                    None => IIR_NONE | fifo,
                }
            }
            3 => s.lcr,
            4 => s.mcr,
            5 => {
                let lsr = s.lsr();
                s.lsr_errors = 0;
                lsr
            }
            6 => {
                let msr = s.msr_lines | s.msr_deltas;
                s.msr_deltas = 0;
                msr
            }
            7 => s.scr,
            _ => 0xff,
        }
    }

    fn write_register(&mut self, offset: u16, val: u8, now: u64) {
        self.advance(now);
        let dlab = self.state.lcr & LCR_DLAB != 0;
        let s = &mut self.state;
        match offset {
            0 if dlab => s.divisor = (s.divisor & 0xff00) | u16::from(val),
            0 => self.transmit(val, now),
            1 if dlab => s.divisor = (s.divisor & 0x00ff) | (u16::from(val) << 8),
            1 => {
                let old = s.ier;
                s.ier = val & 0x0f;
                // Enabling the THRE interrupt while THR is empty (it always is) raises it.
                if (old ^ s.ier) & IER_THRI != 0 {
                    s.thr_interrupt = s.ier & IER_THRI != 0;
                }
            }
            2 => {
                if (val ^ s.fcr) & FCR_ENABLE != 0 {
                    // Turning the FIFOs on or off empties them.
                    s.rx.clear();
                    s.timeout = false;
                }
                if val & FCR_ENABLE == 0 {
                    s.fcr = 0;
                } else {
                    if val & FCR_CLEAR_RX != 0 {
                        s.rx.clear();
                        s.timeout = false;
                    }
                    // The clear bits self-clear; the transmit FIFO is always empty.
                    s.fcr = val & !0x06;
                }
            }
            3 => s.lcr = val,
            4 => {
                s.mcr = val & 0x1f;
                s.update_modem_lines();
            }
            7 => s.scr = val,
            // LSR and MSR writes are factory test hooks.
            _ => {}
        }
    }
}

impl PortDevice for Uart {
    fn port_read(&mut self, offset: u16, size: u8, now_ns: u64) -> u32 {
        read_bytes(offset, size, |off| self.read_register(off, now_ns))
    }

    fn port_write(&mut self, offset: u16, size: u8, val: u32, now_ns: u64) {
        write_bytes(offset, size, val, |off, byte| self.write_register(off, byte, now_ns));
    }
}

impl Timed for Uart {
    fn advance(&mut self, now_ns: u64) {
        let s = &mut self.state;
        if s.fifo_enabled()
            && !s.rx.is_empty()
            && !s.timeout
            && now_ns >= s.rx_activity_ns.saturating_add(s.timeout_ns())
        {
            s.timeout = true;
        }
    }

    /// When the character timeout would fire, if the receive FIFO holds bytes below its
    /// trigger level and the timeout interrupt is enabled.
    fn next_deadline(&self, now_ns: u64) -> Option<u64> {
        let s = &self.state;
        let waiting = s.fifo_enabled()
            && !s.timeout
            && !s.rx.is_empty()
            && s.rx.len() < s.trigger_level()
            && s.ier & IER_RDI != 0;
        waiting.then(|| s.rx_activity_ns.saturating_add(s.timeout_ns()).max(now_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sink::Shared;

    fn uart() -> (Uart, Shared) {
        let out = Shared::default();
        (Uart::new(Box::new(out.clone())), out)
    }

    fn w(u: &mut Uart, off: u16, val: u8) {
        u.port_write(off, 1, u32::from(val), 0);
    }

    fn r(u: &mut Uart, off: u16) -> u8 {
        u.port_read(off, 1, 0) as u8
    }

    #[test]
    fn reset_values() {
        let (mut u, _) = uart();
        assert_eq!(r(&mut u, 1), 0x00);
        assert_eq!(r(&mut u, 2), 0x01);
        assert_eq!(r(&mut u, 3), 0x00);
        assert_eq!(r(&mut u, 4), 0x00);
        assert_eq!(r(&mut u, 5), 0x60);
        assert_eq!(r(&mut u, 6), 0xb0);
    }

    #[test]
    fn transmit_goes_to_sink() {
        let (mut u, out) = uart();
        for b in b"ok\n" {
            w(&mut u, 0, *b);
        }
        assert_eq!(&*out.0.lock().expect("lock"), b"ok\n");
        assert_eq!(r(&mut u, 5) & 0x60, 0x60, "THR and transmitter empty again");
    }

    #[test]
    fn divisor_latch_behind_dlab() {
        let (mut u, _) = uart();
        w(&mut u, 3, 0x83);
        w(&mut u, 0, 0x01);
        w(&mut u, 1, 0x00);
        assert_eq!(r(&mut u, 0), 0x01);
        assert_eq!(r(&mut u, 1), 0x00);
        w(&mut u, 3, 0x03);
        assert_eq!(u.state().divisor, 1);
        assert_eq!(r(&mut u, 1), 0x00, "IER again");
        w(&mut u, 7, 0x5a);
        assert_eq!(r(&mut u, 7), 0x5a);
    }

    #[test]
    fn thre_interrupt_on_enable_and_cleared_by_iir_read() {
        let (mut u, _) = uart();
        w(&mut u, 4, MCR_OUT2);
        w(&mut u, 1, IER_THRI);
        assert!(u.irq_level());
        assert_eq!(r(&mut u, 2), 0x02);
        assert!(!u.irq_level());
        assert_eq!(r(&mut u, 2), 0x01);
        w(&mut u, 0, b'x');
        assert_eq!(r(&mut u, 2), 0x02, "THR emptied again after the write");
    }

    #[test]
    fn out2_gates_the_irq() {
        let (mut u, _) = uart();
        w(&mut u, 1, IER_THRI);
        assert!(!u.irq_level());
        w(&mut u, 4, MCR_OUT2);
        assert!(u.irq_level());
    }

    #[test]
    fn receive_without_fifo_and_overrun() {
        let (mut u, _) = uart();
        w(&mut u, 4, MCR_OUT2);
        w(&mut u, 1, IER_RDI | IER_RLSI);
        assert_eq!(u.rx_room(), 1);
        u.push_input(b'a', 0);
        assert_eq!(r(&mut u, 2), 0x04);
        assert_eq!(r(&mut u, 5) & LSR_DR, LSR_DR);
        u.push_input(b'b', 0);
        assert_eq!(r(&mut u, 2), 0x06, "overrun: line status has the highest priority");
        assert_eq!(r(&mut u, 5) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(r(&mut u, 5) & LSR_OE, 0, "LSR read clears OE");
        assert_eq!(r(&mut u, 0), b'b');
        assert_eq!(r(&mut u, 2), 0x01);
    }

    #[test]
    fn fifo_trigger_level_and_iir_fifo_bits() {
        let (mut u, _) = uart();
        w(&mut u, 4, MCR_OUT2);
        w(&mut u, 2, 0x87); // enable, clear, trigger 8
        w(&mut u, 1, IER_RDI);
        for b in 0..7 {
            u.push_input(b, 0);
        }
        assert_eq!(r(&mut u, 2), 0xc1, "below the trigger: no interrupt yet");
        u.push_input(7, 0);
        assert_eq!(r(&mut u, 2), 0xc4);
        assert_eq!(u.rx_room(), 8);
        for b in 0..8 {
            assert_eq!(r(&mut u, 0), b);
        }
        assert_eq!(r(&mut u, 5) & LSR_DR, 0);
    }

    #[test]
    fn fifo_overrun_keeps_fifo_contents() {
        let (mut u, _) = uart();
        w(&mut u, 2, 0x01);
        for b in 0..17 {
            u.push_input(b, 0);
        }
        assert_eq!(r(&mut u, 5) & LSR_OE, LSR_OE);
        for b in 0..16 {
            assert_eq!(r(&mut u, 0), b);
        }
    }

    #[test]
    fn character_timeout_after_four_character_times() {
        let (mut u, _) = uart();
        w(&mut u, 3, 0x83);
        w(&mut u, 0, 1); // 115200 baud
        w(&mut u, 3, 0x03); // 8N1: 10 bits a character
        w(&mut u, 2, 0xc1); // trigger 14
        w(&mut u, 4, MCR_OUT2);
        w(&mut u, 1, IER_RDI);
        u.push_input(b'k', 1000);
        let timeout = 4 * 10 * NS_PER_SEC / 115_200;
        assert_eq!(u.next_deadline(1000), Some(1000 + timeout));
        u.advance(1000 + timeout - 1);
        assert!(!u.irq_level());
        u.advance(1000 + timeout);
        assert!(u.irq_level());
        assert_eq!(u.port_read(2, 1, 1000 + timeout), 0xcc);
        assert_eq!(u.port_read(0, 1, 1000 + timeout), u32::from(b'k'));
        assert!(!u.irq_level());
        assert_eq!(u.next_deadline(1000 + timeout), None);
    }

    #[test]
    fn fcr_clear_and_disable_empty_the_fifo() {
        let (mut u, _) = uart();
        w(&mut u, 2, 0x01);
        u.push_input(1, 0);
        w(&mut u, 2, 0x03);
        assert_eq!(r(&mut u, 5) & LSR_DR, 0);
        u.push_input(2, 0);
        w(&mut u, 2, 0x00);
        assert_eq!(r(&mut u, 5) & LSR_DR, 0);
        assert_eq!(r(&mut u, 2), 0x01, "FIFO bits clear in IIR");
    }

    #[test]
    fn loopback_routes_tx_to_rx_and_mcr_to_msr() {
        let (mut u, out) = uart();
        w(&mut u, 4, MCR_LOOP | 0x0a); // loop, RTS, OUT2
        assert_eq!(r(&mut u, 6) & 0xf0, MSR_CTS | MSR_DCD);
        w(&mut u, 4, MCR_LOOP | 0x05); // loop, DTR, OUT1
        let msr = r(&mut u, 6);
        assert_eq!(msr & 0xf0, MSR_DSR | MSR_RI);
        assert_eq!(msr & 0x0f, MSR_DCTS | MSR_DDSR | MSR_DDCD);
        w(&mut u, 4, MCR_LOOP);
        assert_eq!(r(&mut u, 6) & 0x0f, MSR_DDSR | MSR_TERI, "RI fell: trailing edge");
        w(&mut u, 0, 0x55);
        assert_eq!(r(&mut u, 5) & LSR_DR, LSR_DR);
        assert_eq!(r(&mut u, 0), 0x55);
        assert!(out.0.lock().expect("lock").is_empty(), "nothing on the line in loopback");
        u.push_input(0x11, 0);
        assert_eq!(r(&mut u, 5) & LSR_DR, 0, "receiver is cut off from the line");
        assert_eq!(u.rx_room(), 0);
    }

    #[test]
    fn loopback_suppresses_the_irq_pin() {
        let (mut u, _) = uart();
        w(&mut u, 4, MCR_LOOP | MCR_OUT2);
        w(&mut u, 1, IER_THRI);
        assert_eq!(r(&mut u, 2), 0x02, "the interrupt is still identified");
        w(&mut u, 1, 0);
        w(&mut u, 1, IER_THRI);
        assert!(!u.irq_level());
    }

    #[test]
    fn modem_status_interrupt_from_host_lines() {
        let (mut u, _) = uart();
        w(&mut u, 4, MCR_OUT2);
        w(&mut u, 1, IER_MSI);
        assert!(!u.irq_level());
        u.set_modem_inputs(MSR_CTS | MSR_DSR);
        assert!(u.irq_level());
        assert_eq!(r(&mut u, 2), 0x00);
        assert_eq!(r(&mut u, 6), MSR_CTS | MSR_DSR | MSR_DDCD);
        assert!(!u.irq_level());
    }

    #[test]
    fn interrupt_priority_order() {
        let (mut u, _) = uart();
        w(&mut u, 4, MCR_OUT2);
        w(&mut u, 1, 0x0f);
        u.set_modem_inputs(0);
        u.push_input(1, 0);
        u.push_input(2, 0);
        assert_eq!(r(&mut u, 2), 0x06);
        r(&mut u, 5);
        assert_eq!(r(&mut u, 2), 0x04);
        r(&mut u, 0);
        assert_eq!(r(&mut u, 2), 0x02);
        assert_eq!(r(&mut u, 2), 0x00);
        r(&mut u, 6);
        assert_eq!(r(&mut u, 2), 0x01);
    }

    #[test]
    fn every_trigger_level_raises_rdi_at_its_count() {
        for (fcr, level) in [(0x01u8, 1usize), (0x41, 4), (0x81, 8), (0xc1, 14)] {
            let (mut u, _) = uart();
            w(&mut u, 4, MCR_OUT2);
            w(&mut u, 2, fcr);
            w(&mut u, 1, IER_RDI);
            for b in 0..level {
                assert!(!u.irq_level(), "FCR {fcr:#x}: interrupt with {b} bytes");
                u.push_input(b as u8, 0);
            }
            assert!(u.irq_level(), "FCR {fcr:#x}: no interrupt at {level} bytes");
            assert_eq!(r(&mut u, 2), 0xc4);
            r(&mut u, 0);
            assert!(!u.irq_level(), "FCR {fcr:#x}: below the level again");
        }
    }

    #[test]
    fn lsr_data_ready_follows_the_fifo_and_errors_clear_on_read() {
        let (mut u, _) = uart();
        w(&mut u, 2, 0x01);
        assert_eq!(r(&mut u, 5), LSR_THRE | LSR_TEMT);
        u.push_input(b'a', 0);
        u.push_input(b'b', 0);
        assert_eq!(r(&mut u, 5), LSR_DR | LSR_THRE | LSR_TEMT);
        assert_eq!(r(&mut u, 0), b'a');
        assert_eq!(r(&mut u, 5) & LSR_DR, LSR_DR, "one byte left");
        assert_eq!(r(&mut u, 0), b'b');
        assert_eq!(r(&mut u, 5) & LSR_DR, 0);
        assert_eq!(r(&mut u, 0), 0, "reading an empty FIFO gives nothing new");
        for b in 0..17 {
            u.push_input(b, 0);
        }
        assert_eq!(u.rx_room(), 0);
        assert_eq!(r(&mut u, 5), LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT);
        assert_eq!(r(&mut u, 5), LSR_DR | LSR_THRE | LSR_TEMT, "OE is cleared by the read");
    }

    #[test]
    fn reading_a_byte_restarts_the_character_timeout() {
        let (mut u, _) = uart();
        w(&mut u, 3, 0x83);
        w(&mut u, 0, 1);
        w(&mut u, 3, 0x03);
        w(&mut u, 2, 0xc1);
        w(&mut u, 4, MCR_OUT2);
        w(&mut u, 1, IER_RDI);
        let t = 4 * 10 * NS_PER_SEC / 115_200;
        u.push_input(1, 0);
        u.push_input(2, 0);
        assert_eq!(u.port_read(0, 1, t / 2), 1);
        u.advance(t);
        assert!(!u.irq_level(), "the read at t/2 restarted the timer");
        assert_eq!(u.next_deadline(t), Some(t / 2 + t));
        u.advance(t / 2 + t);
        assert!(u.irq_level());
        assert_eq!(u.port_read(2, 1, t / 2 + t), 0xcc);
    }

    #[test]
    fn no_timeout_interrupt_without_rdi_enabled_or_with_an_empty_fifo() {
        let (mut u, _) = uart();
        w(&mut u, 2, 0xc1);
        w(&mut u, 4, MCR_OUT2);
        assert_eq!(u.next_deadline(0), None, "empty FIFO");
        u.push_input(1, 0);
        assert_eq!(u.next_deadline(0), None, "RDI off");
        u.advance(NS_PER_SEC);
        assert!(!u.irq_level());
    }
}
