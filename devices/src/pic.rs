//! The two Intel 8259A programmable interrupt controllers of the PC, cascaded: the slave's INT
//! output drives the master's IR2, giving IRQ 0-7 (master) and IRQ 8-15 (slave). The PIIX/ICH
//! edge/level control registers (ELCR, ports 0x4D0/0x4D1) sit beside them.
//!
//! The machine drives the request inputs with [`Pic::set_irq`], looks at the CPU's INTR pin
//! with [`Pic::has_interrupt`] and runs the INTA cycle with [`Pic::acknowledge`], which returns
//! the vector. Port offsets are the ISA port numbers (see [`PORTS`]).
//!
//! Behaviour follows the 8259A datasheet: edge requests latch in the IRR on a rising edge and
//! stay latched until acknowledged (as the PC's edge-triggered devices pulse their lines), level
//! requests follow the line; a request that has gone away by the INTA cycle yields the spurious
//! vector of IR7 (IRQ 7 on the master, IRQ 15 on the slave, where the master still marks IR2 in
//! service).

use crate::{read_bytes, warn_once, write_bytes, PortDevice};

/// The ports this device decodes, as (first port, count). Offsets are port numbers.
pub const PORTS: &[(u16, u16)] = &[(0x20, 2), (0xa0, 2), (0x4d0, 2)];

/// The master's input that the slave's INT output drives on a PC.
const CASCADE_IRQ: u8 = 2;

/// ELCR bits that can be set: IRQ 0, 1, 2 (master) and 8, 13 (slave) are always edge-triggered
/// on PIIX-class chipsets.
const MASTER_ELCR_MASK: u8 = 0xf8;
const SLAVE_ELCR_MASK: u8 = 0xde;

/// Where a chip is in its initialisation sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitStep {
    /// Initialised: odd-port writes are OCW1 (the mask).
    #[default]
    Ready,
    /// ICW1 seen, ICW2 (vector base) next.
    Icw2,
    /// ICW3 (cascade wiring) next.
    Icw3,
    /// ICW4 (mode) next.
    Icw4,
}

/// The guest-visible state of one 8259A.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChipState {
    /// Interrupt request register.
    pub irr: u8,
    /// In-service register.
    pub isr: u8,
    /// Interrupt mask register (OCW1).
    pub imr: u8,
    /// Current levels of the IR inputs, for edge detection and level-triggered requests.
    pub input: u8,
    /// Edge/level control register: a set bit makes that input level-triggered.
    pub elcr: u8,
    /// ICW1 LTIM: every input level-triggered.
    pub level_triggered: bool,
    /// ICW1 SNGL: no cascade.
    pub single: bool,
    /// ICW1 IC4: ICW4 follows.
    pub icw4_needed: bool,
    /// Vector of IR0 (ICW2 with the low three bits clear).
    pub vector_base: u8,
    /// ICW3: on the master, the inputs with a slave; on a slave, its cascade identity.
    pub icw3: u8,
    /// ICW4 as written.
    pub icw4: u8,
    /// ICW4 AEOI: the INTA cycle ends the interrupt itself.
    pub auto_eoi: bool,
    /// OCW2 "rotate in automatic EOI mode".
    pub rotate_on_aeoi: bool,
    /// ICW4 SFNM: special fully nested mode.
    pub special_fully_nested: bool,
    /// Initialisation progress.
    pub init_step: InitStep,
    /// The input with the lowest priority; the one after it has the highest (7 after ICW1).
    pub lowest_priority: u8,
    /// OCW3 RR/RIS: even-port reads return the ISR rather than the IRR.
    pub read_isr: bool,
    /// OCW3 P: the next even-port read is a poll.
    pub poll: bool,
    /// OCW3 SMM: special mask mode.
    pub special_mask: bool,
}

impl Default for ChipState {
    fn default() -> Self {
        ChipState {
            irr: 0,
            isr: 0,
            imr: 0,
            input: 0,
            elcr: 0,
            level_triggered: false,
            single: false,
            icw4_needed: false,
            vector_base: 0,
            icw3: 0,
            icw4: 0,
            auto_eoi: false,
            rotate_on_aeoi: false,
            special_fully_nested: false,
            init_step: InitStep::Ready,
            lowest_priority: 7,
            read_isr: false,
            poll: false,
            special_mask: false,
        }
    }
}

impl ChipState {
    /// Inputs that are level-triggered.
    fn level_mask(&self) -> u8 {
        if self.level_triggered {
            0xff
        } else {
            self.elcr
        }
    }

    /// Level-triggered requests follow their inputs; edge requests stay latched.
    fn refresh_level_requests(&mut self) {
        let level = self.level_mask();
        self.irr = (self.irr & !level) | (self.input & level);
    }

    fn set_input(&mut self, irq: u8, level: bool) {
        let bit = 1u8 << irq;
        if level {
            if self.input & bit == 0 {
                self.irr |= bit;
            }
            self.input |= bit;
        } else {
            self.input &= !bit;
        }
        self.refresh_level_requests();
    }

    /// Priority rank of an input: 0 is the highest.
    fn rank(&self, irq: u8) -> u8 {
        irq.wrapping_sub(self.lowest_priority.wrapping_add(1)) & 7
    }

    /// The highest-priority input among the set bits of `mask`.
    fn highest(&self, mask: u8) -> Option<u8> {
        (0..8u8).map(|p| (self.lowest_priority.wrapping_add(1).wrapping_add(p)) & 7).find(|irq| mask & (1 << irq) != 0)
    }

    /// The request this chip would present on INT now, if any.
    fn pending(&self, is_master: bool) -> Option<u8> {
        let requests = self.irr & !self.imr;
        if self.special_mask {
            // Special mask mode: only the mask inhibits; an input still in service does not
            // interrupt itself again, every other unmasked level may.
            return self.highest(requests & !self.isr);
        }
        let irq = self.highest(requests)?;
        match self.highest(self.isr) {
            None => Some(irq),
            Some(serving) if self.rank(irq) < self.rank(serving) => Some(irq),
            // Special fully nested mode: the master lets a slave interrupt again while the
            // slave's cascade input is in service; the slave resolves its own priorities.
            Some(serving) if is_master && self.special_fully_nested && serving == irq && self.cascades_on(irq) => {
                Some(irq)
            }
            Some(_) => None,
        }
    }

    /// Whether a slave hangs off input `irq` of this (master) chip.
    fn cascades_on(&self, irq: u8) -> bool {
        !self.single && self.icw3 & (1 << irq) != 0
    }

    /// The chip's part of an INTA cycle (or a poll) for input `irq`.
    fn ack(&mut self, irq: u8) {
        let bit = 1u8 << irq;
        if self.level_mask() & bit == 0 {
            self.irr &= !bit;
        }
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.lowest_priority = irq;
            }
        } else {
            self.isr |= bit;
        }
    }

    /// The poll command: the next even-port read acts as an INTA cycle and returns the level.
    fn poll_read(&mut self, is_master: bool) -> u8 {
        self.poll = false;
        match self.pending(is_master) {
            Some(irq) => {
                self.ack(irq);
                0x80 | irq
            }
            None => 0,
        }
    }

    fn write_command(&mut self, val: u8) {
        if val & 0x10 != 0 {
            self.icw1(val);
        } else if val & 0x08 != 0 {
            self.ocw3(val);
        } else {
            self.ocw2(val);
        }
    }

    fn write_data(&mut self, val: u8) {
        match self.init_step {
            InitStep::Ready => self.imr = val,
            InitStep::Icw2 => {
                self.vector_base = val & 0xf8;
                self.init_step = if !self.single {
                    InitStep::Icw3
                } else if self.icw4_needed {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw3 => {
                self.icw3 = val;
                self.init_step = if self.icw4_needed { InitStep::Icw4 } else { InitStep::Ready };
            }
            InitStep::Icw4 => {
                self.icw4 = val;
                self.auto_eoi = val & 0x02 != 0;
                self.special_fully_nested = val & 0x10 != 0;
                if val & 0x01 == 0 {
                    warn_once!("pic: ICW4 selects MCS-80/85 mode; vectors stay in 8086 format");
                }
                self.init_step = InitStep::Ready;
            }
        }
    }

    /// ICW1 restarts initialisation. Per the datasheet it clears the mask, makes IR7 the lowest
    /// priority, leaves special mask mode, selects the IRR for reads and resets the edge-sense
    /// latches (a high edge input must fall and rise again); ICW4 functions are cleared when no
    /// ICW4 follows. The ISR is cleared too so a re-initialised chip cannot stay blocked by a
    /// level that will never see its EOI.
    fn icw1(&mut self, val: u8) {
        self.level_triggered = val & 0x08 != 0;
        self.single = val & 0x02 != 0;
        self.icw4_needed = val & 0x01 != 0;
        if !self.icw4_needed {
            self.icw4 = 0;
            self.auto_eoi = false;
            self.special_fully_nested = false;
            warn_once!("pic: ICW1 without ICW4 selects MCS-80/85 mode; vectors stay in 8086 format");
        }
        self.irr = 0;
        self.isr = 0;
        self.imr = 0;
        self.lowest_priority = 7;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        self.rotate_on_aeoi = false;
        self.refresh_level_requests();
        self.init_step = InitStep::Icw2;
    }

    fn ocw2(&mut self, val: u8) {
        let level = val & 7;
        match val >> 5 {
            // Non-specific EOI (optionally rotating): ends the highest-priority level in
            // service. In special mask mode a masked in-service level is left alone.
            0b001 | 0b101 => {
                let candidates = if self.special_mask { self.isr & !self.imr } else { self.isr };
                if let Some(irq) = self.highest(candidates) {
                    self.isr &= !(1 << irq);
                    if val >> 5 == 0b101 {
                        self.lowest_priority = irq;
                    }
                }
            }
            0b011 => self.isr &= !(1 << level),
            0b111 => {
                self.isr &= !(1 << level);
                self.lowest_priority = level;
            }
            0b110 => self.lowest_priority = level,
            0b100 => self.rotate_on_aeoi = true,
            0b000 => self.rotate_on_aeoi = false,
            _ => {} // 0b010: no operation
        }
    }

    fn ocw3(&mut self, val: u8) {
        if val & 0x04 != 0 {
            self.poll = true;
        }
        if val & 0x02 != 0 {
            self.read_isr = val & 0x01 != 0;
        }
        if val & 0x40 != 0 {
            self.special_mask = val & 0x20 != 0;
        }
    }

    fn read_command(&mut self, is_master: bool) -> u8 {
        if self.poll {
            self.poll_read(is_master)
        } else if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }
}

/// The guest-visible state of the PIC pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PicState {
    /// The master (IRQ 0-7, ports 0x20/0x21, ELCR 0x4D0).
    pub master: ChipState,
    /// The slave (IRQ 8-15, ports 0xA0/0xA1, ELCR 0x4D1).
    pub slave: ChipState,
}

/// The cascaded 8259A pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pic {
    state: PicState,
}

impl Pic {
    /// A pair in its power-on state (not yet initialised by the guest).
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the guest-visible state.
    pub fn state(&self) -> PicState {
        self.state.clone()
    }

    /// Replaces the guest-visible state (snapshot restore).
    pub fn restore(&mut self, state: PicState) {
        self.state = state;
        self.sync_cascade();
    }

    /// Resets both chips (machine reset). Input levels are wires, not chip state: they stay.
    pub fn reset(&mut self) {
        let (m, s) = (self.state.master.input, self.state.slave.input);
        self.state = PicState::default();
        self.state.master.input = m;
        self.state.slave.input = s;
        self.sync_cascade();
    }

    /// Drives request line `irq` (0-15) to `level`. IRQ 2 is the cascade and cannot be
    /// driven from outside; lines past 15 do not exist.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        match irq {
            CASCADE_IRQ => warn_once!("pic: IRQ 2 is the cascade input; request ignored"),
            0..=7 => self.state.master.set_input(irq, level),
            8..=15 => {
                self.state.slave.set_input(irq - 8, level);
                self.sync_cascade();
            }
            _ => warn_once!("pic: IRQ {irq} does not exist; request ignored"),
        }
    }

    /// Whether the master's INT output (the CPU's INTR pin) is asserted.
    pub fn has_interrupt(&self) -> bool {
        self.state.master.pending(true).is_some()
    }

    /// The INTA cycle: returns the vector and moves the request into service. With no request
    /// left (it went away, or was masked, since INTR rose) the answer is the spurious IR7
    /// vector of the chip concerned and nothing is put in service on that chip.
    pub fn acknowledge(&mut self) -> u8 {
        let master = &mut self.state.master;
        let Some(irq) = master.pending(true) else {
            return master.vector_base | 7;
        };
        master.ack(irq);
        let vector = if master.cascades_on(irq) {
            let slave = &mut self.state.slave;
            match slave.pending(false) {
                Some(sirq) => {
                    slave.ack(sirq);
                    slave.vector_base | sirq
                }
                None => slave.vector_base | 7,
            }
        } else {
            master.vector_base | irq
        };
        self.sync_cascade();
        vector
    }

    /// Propagates the slave's INT output to the master's cascade input.
    fn sync_cascade(&mut self) {
        let level = self.state.slave.pending(false).is_some();
        self.state.master.set_input(CASCADE_IRQ, level);
    }

    fn read_port(&mut self, port: u16) -> u8 {
        let s = &mut self.state;
        let val = match port {
            0x20 => s.master.read_command(true),
            0x21 => s.master.imr,
            0xa0 => s.slave.read_command(false),
            0xa1 => s.slave.imr,
            0x4d0 => s.master.elcr,
            0x4d1 => s.slave.elcr,
            _ => 0xff,
        };
        // A poll read can put a slave level in service.
        self.sync_cascade();
        val
    }

    fn write_port(&mut self, port: u16, val: u8) {
        let s = &mut self.state;
        match port {
            0x20 => s.master.write_command(val),
            0x21 => s.master.write_data(val),
            0xa0 => s.slave.write_command(val),
            0xa1 => s.slave.write_data(val),
            0x4d0 => {
                s.master.elcr = val & MASTER_ELCR_MASK;
                s.master.refresh_level_requests();
            }
            0x4d1 => {
                s.slave.elcr = val & SLAVE_ELCR_MASK;
                s.slave.refresh_level_requests();
            }
            _ => {}
        }
        self.sync_cascade();
    }
}

impl PortDevice for Pic {
    fn port_read(&mut self, offset: u16, size: u8, _now_ns: u64) -> u32 {
        read_bytes(offset, size, |port| self.read_port(port))
    }

    fn port_write(&mut self, offset: u16, size: u8, val: u32, _now_ns: u64) {
        write_bytes(offset, size, val, |port, byte| self.write_port(port, byte));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(pic: &mut Pic, port: u16, val: u8) {
        pic.port_write(port, 1, u32::from(val), 0);
    }

    fn inb(pic: &mut Pic, port: u16) -> u8 {
        pic.port_read(port, 1, 0) as u8
    }

    /// The BIOS/Linux initialisation: edge, cascade, ICW4, vectors 0x20/0x28 (Linux uses
    /// 0x30/0x38; the base does not matter), master has a slave on IR2, slave ID 2, 8086 mode.
    fn init(icw4: u8) -> Pic {
        let mut pic = Pic::new();
        for (base, vec, icw3) in [(0x20, 0x20, 0x04), (0xa0, 0x28, 0x02)] {
            out(&mut pic, base, 0x11);
            out(&mut pic, base + 1, vec);
            out(&mut pic, base + 1, icw3);
            out(&mut pic, base + 1, icw4);
            out(&mut pic, base + 1, 0x00);
        }
        pic
    }

    fn pulse(pic: &mut Pic, irq: u8) {
        pic.set_irq(irq, true);
        pic.set_irq(irq, false);
    }

    #[test]
    fn initialisation_sequence_sets_vectors_and_clears_mask() {
        let mut pic = init(0x01);
        let s = pic.state();
        assert_eq!(s.master.vector_base, 0x20);
        assert_eq!(s.slave.vector_base, 0x28);
        assert_eq!(s.master.icw3, 0x04);
        assert_eq!(s.slave.icw3, 0x02);
        assert_eq!(s.master.init_step, InitStep::Ready);
        out(&mut pic, 0x21, 0xfb);
        assert_eq!(inb(&mut pic, 0x21), 0xfb);
        // ICW1 clears the mask again.
        out(&mut pic, 0x20, 0x11);
        assert_eq!(inb(&mut pic, 0x21), 0x00);
    }

    #[test]
    fn single_mode_without_icw4_skips_icw3_and_icw4() {
        let mut pic = Pic::new();
        out(&mut pic, 0x20, 0x12); // SNGL, no IC4
        out(&mut pic, 0x21, 0x08);
        assert_eq!(pic.state().master.init_step, InitStep::Ready);
        out(&mut pic, 0x21, 0xaa); // OCW1 now
        assert_eq!(pic.state().master.imr, 0xaa);
    }

    #[test]
    fn edge_request_is_latched_acknowledged_and_ended_by_eoi() {
        let mut pic = init(0x01);
        assert!(!pic.has_interrupt());
        pulse(&mut pic, 0);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x20);
        assert!(!pic.has_interrupt());
        out(&mut pic, 0x20, 0x0b); // OCW3: read ISR
        assert_eq!(inb(&mut pic, 0x20), 0x01);
        out(&mut pic, 0x20, 0x20); // non-specific EOI
        assert_eq!(inb(&mut pic, 0x20), 0x00);
        out(&mut pic, 0x20, 0x0a); // OCW3: read IRR
        assert_eq!(inb(&mut pic, 0x20), 0x00);
    }

    #[test]
    fn edge_input_needs_a_new_rising_edge() {
        let mut pic = init(0x01);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x23);
        out(&mut pic, 0x20, 0x20);
        pic.set_irq(3, true); // still high: no new edge
        assert!(!pic.has_interrupt());
        pic.set_irq(3, false);
        pic.set_irq(3, true);
        assert!(pic.has_interrupt());
    }

    #[test]
    fn lower_priority_waits_for_eoi_higher_priority_nests() {
        let mut pic = init(0x01);
        pulse(&mut pic, 4);
        assert_eq!(pic.acknowledge(), 0x24);
        pulse(&mut pic, 6);
        assert!(!pic.has_interrupt(), "IRQ6 must wait while IRQ4 is in service");
        pulse(&mut pic, 1);
        assert!(pic.has_interrupt(), "IRQ1 has priority over IRQ4");
        assert_eq!(pic.acknowledge(), 0x21);
        out(&mut pic, 0x20, 0x20); // ends IRQ1, the highest in service
        assert!(!pic.has_interrupt());
        out(&mut pic, 0x20, 0x20); // ends IRQ4
        assert_eq!(pic.acknowledge(), 0x26);
    }

    #[test]
    fn mask_blocks_requests_without_losing_them() {
        let mut pic = init(0x01);
        out(&mut pic, 0x21, 0x01);
        pulse(&mut pic, 0);
        assert!(!pic.has_interrupt());
        out(&mut pic, 0x21, 0x00);
        assert!(pic.has_interrupt());
    }

    #[test]
    fn slave_interrupt_cascades_through_irq2() {
        let mut pic = init(0x01);
        pulse(&mut pic, 12);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x2c);
        let s = pic.state();
        assert_eq!(s.master.isr, 0x04);
        assert_eq!(s.slave.isr, 0x10);
        // The slave's next request waits for the slave EOI, then for the master EOI.
        pulse(&mut pic, 9);
        assert!(!pic.has_interrupt());
        out(&mut pic, 0xa0, 0x20);
        assert!(!pic.has_interrupt(), "master IR2 still in service");
        out(&mut pic, 0x20, 0x20);
        assert_eq!(pic.acknowledge(), 0x29);
    }

    #[test]
    fn masked_slave_input_blocks_cascade() {
        let mut pic = init(0x01);
        out(&mut pic, 0xa1, 0x01);
        pulse(&mut pic, 8);
        assert!(!pic.has_interrupt());
        out(&mut pic, 0xa1, 0x00);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x28);
    }

    #[test]
    fn vanished_level_request_gives_spurious_irq7() {
        let mut pic = init(0x01);
        out(&mut pic, 0x4d0, 0x20); // IRQ5 level
        pic.set_irq(5, true);
        assert!(pic.has_interrupt());
        pic.set_irq(5, false);
        assert_eq!(pic.acknowledge(), 0x27);
        assert_eq!(pic.state().master.isr, 0, "a spurious IRQ7 is not put in service");
    }

    #[test]
    fn vanished_slave_request_gives_spurious_irq15_with_ir2_in_service() {
        let mut pic = init(0x01);
        pic.set_irq(10, true);
        assert!(pic.has_interrupt());
        // Masking on the slave after INTR rose: the master's edge latch still holds IR2.
        out(&mut pic, 0xa1, 0x04);
        assert_eq!(pic.acknowledge(), 0x2f);
        let s = pic.state();
        assert_eq!(s.master.isr, 0x04, "the master saw a real IR2");
        assert_eq!(s.slave.isr, 0);
    }

    #[test]
    fn level_triggered_request_follows_the_line_and_repeats_after_eoi() {
        let mut pic = init(0x01);
        out(&mut pic, 0x4d1, 0x08); // IRQ11 level
        assert_eq!(inb(&mut pic, 0x4d1), 0x08);
        pic.set_irq(11, true);
        assert_eq!(pic.acknowledge(), 0x2b);
        out(&mut pic, 0xa0, 0x20);
        out(&mut pic, 0x20, 0x20);
        assert!(pic.has_interrupt(), "line still high: request again");
        assert_eq!(pic.acknowledge(), 0x2b);
        pic.set_irq(11, false);
        out(&mut pic, 0xa0, 0x20);
        out(&mut pic, 0x20, 0x20);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn elcr_cannot_make_timer_keyboard_cascade_rtc_or_fpu_level() {
        let mut pic = init(0x01);
        out(&mut pic, 0x4d0, 0xff);
        out(&mut pic, 0x4d1, 0xff);
        assert_eq!(inb(&mut pic, 0x4d0), 0xf8);
        assert_eq!(inb(&mut pic, 0x4d1), 0xde);
        // A 16-bit access reaches both registers.
        assert_eq!(pic.port_read(0x4d0, 2, 0), 0xdef8);
    }

    #[test]
    fn ltim_makes_every_input_level_triggered() {
        let mut pic = Pic::new();
        out(&mut pic, 0x20, 0x1b); // LTIM, SNGL, IC4
        out(&mut pic, 0x21, 0x40);
        out(&mut pic, 0x21, 0x01);
        pic.set_irq(3, true);
        pic.set_irq(3, false);
        assert!(!pic.has_interrupt(), "level request gone with its line");
    }

    #[test]
    fn auto_eoi_leaves_isr_clear() {
        let mut pic = init(0x03);
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), 0x23);
        assert_eq!(pic.state().master.isr, 0);
        pulse(&mut pic, 5);
        assert!(pic.has_interrupt());
    }

    #[test]
    fn specific_eoi_ends_the_named_level() {
        let mut pic = init(0x01);
        pulse(&mut pic, 5);
        pic.acknowledge();
        pulse(&mut pic, 2 + 1);
        pic.acknowledge();
        assert_eq!(pic.state().master.isr, 0x28);
        out(&mut pic, 0x20, 0x65); // specific EOI, level 5
        assert_eq!(pic.state().master.isr, 0x08);
    }

    #[test]
    fn rotation_makes_the_served_level_lowest() {
        let mut pic = init(0x01);
        pulse(&mut pic, 1);
        pic.acknowledge();
        out(&mut pic, 0x20, 0xa0); // rotate on non-specific EOI: IR1 now lowest
        pulse(&mut pic, 1);
        pulse(&mut pic, 4);
        assert_eq!(pic.acknowledge(), 0x24, "IR2 now has the highest priority, then IR3, IR4");
        out(&mut pic, 0x20, 0xc4); // set priority: IR4 lowest, IR5 highest
        assert_eq!(pic.state().master.lowest_priority, 4);
        out(&mut pic, 0x20, 0xe4); // rotate on specific EOI 4
        assert_eq!(pic.state().master.isr, 0);
    }

    #[test]
    fn rotate_in_auto_eoi_mode() {
        let mut pic = init(0x03);
        out(&mut pic, 0x20, 0x80);
        pulse(&mut pic, 0);
        assert_eq!(pic.acknowledge(), 0x20);
        assert_eq!(pic.state().master.lowest_priority, 0);
        out(&mut pic, 0x20, 0x00);
        assert!(!pic.state().master.rotate_on_aeoi);
    }

    #[test]
    fn poll_mode_returns_level_and_acknowledges() {
        let mut pic = init(0x01);
        out(&mut pic, 0x20, 0x0c); // OCW3 poll
        assert_eq!(inb(&mut pic, 0x20), 0x00);
        pulse(&mut pic, 6);
        out(&mut pic, 0x20, 0x0c);
        assert_eq!(inb(&mut pic, 0x20), 0x86);
        assert_eq!(pic.state().master.isr, 0x40);
        // The poll is one-shot: the next read is the IRR again.
        assert_eq!(inb(&mut pic, 0x20), 0x00);
    }

    #[test]
    fn special_mask_mode_lets_lower_levels_in() {
        let mut pic = init(0x01);
        pulse(&mut pic, 3);
        pic.acknowledge();
        // The IRQ3 handler masks itself and enters special mask mode.
        out(&mut pic, 0x21, 0x08);
        out(&mut pic, 0x20, 0x68);
        pulse(&mut pic, 5);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x25);
        // Non-specific EOI skips the masked IR3 and ends IR5.
        out(&mut pic, 0x20, 0x20);
        assert_eq!(pic.state().master.isr, 0x08);
        out(&mut pic, 0x20, 0x48); // leave special mask mode
        assert!(!pic.state().master.special_mask);
    }

    #[test]
    fn special_fully_nested_mode_lets_higher_slave_levels_through() {
        let mut pic = init(0x11);
        pulse(&mut pic, 12);
        assert_eq!(pic.acknowledge(), 0x2c);
        pulse(&mut pic, 9);
        assert!(pic.has_interrupt(), "SFNM: a higher slave level interrupts IR2 in service");
        assert_eq!(pic.acknowledge(), 0x29);
        pulse(&mut pic, 13);
        assert!(!pic.has_interrupt(), "the slave still orders its own levels");
    }

    #[test]
    fn acknowledge_without_request_is_spurious_on_master() {
        let mut pic = init(0x01);
        assert_eq!(pic.acknowledge(), 0x27);
    }

    #[test]
    fn irq2_and_out_of_range_lines_are_ignored() {
        let mut pic = init(0x01);
        pic.set_irq(2, true);
        pic.set_irq(16, true);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn state_round_trips() {
        let mut pic = init(0x01);
        pulse(&mut pic, 12);
        let snap = pic.state();
        let mut other = Pic::new();
        other.restore(snap.clone());
        assert_eq!(other.state(), snap);
        assert_eq!(other.acknowledge(), pic.acknowledge());
    }
}
