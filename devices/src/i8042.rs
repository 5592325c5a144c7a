//! The Intel 8042 keyboard controller (data port 0x60, status/command port 0x64) with a PS/2
//! MF2 keyboard on its first port and a PS/2 mouse on its auxiliary port.
//!
//! The controller has one output buffer. Its own replies, the keyboard's bytes (translated from
//! scan code set 2 to set 1 when command byte bit 6 asks) and the mouse's bytes wait in queues
//! and move into the buffer one at a time. After the guest reads the buffer the next byte
//! arrives a little later ([`REFILL_NS`] of virtual time, where the real serial link takes about
//! a millisecond), so IRQ1 and IRQ12, which the PIC takes on edges, fall and rise again for every
//! byte; the machine learns when through [`Timed`].
//!
//! IRQ outputs: [`I8042::irq1_level`] and [`I8042::irq12_level`]. The A20 gate and the reset
//! line are [`SystemRequest`]s the machine takes with [`I8042::take_request`] after port writes.
//! Host input: [`I8042::key_event`] with a [`Key`] and [`I8042::mouse_event`].
//!
//! The mouse is a minimal but real PS/2 mouse: reset, identify (IntelliMouse wheel ID 3 after
//! the 200/100/80 sample-rate knock), sample rate, resolution, scaling, stream and remote
//! modes, status request, read data, wrap mode, enable/disable reporting. Simplified: 2:1
//! scaling is accepted and not applied, the keyboard does not repeat keys by itself (hosts
//! send repeats as key events), and scan code set 3 is refused (the keyboard answers the
//! selection with RESEND).
//!
//! Port offsets are the ISA port numbers (see [`PORTS`]).

use std::collections::VecDeque;

use crate::{read_bytes, warn_once, write_bytes, PortDevice, SystemRequest, Timed};

/// The ports this device decodes, as (first port, count). Offsets are port numbers.
pub const PORTS: &[(u16, u16)] = &[(0x60, 1), (0x64, 1)];

/// Delay between the guest emptying the output buffer and the next queued byte arriving.
pub const REFILL_NS: u64 = 50_000;

/// Bytes a keyboard buffers before it reports an overrun (MF2 keyboards hold 16).
const KEYBOARD_BUFFER: usize = 16;
/// Bytes of mouse data queued before packets are dropped.
const MOUSE_BUFFER: usize = 64;

const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;
const STATUS_AUX: u8 = 0x20;

const CB_KBD_INT: u8 = 0x01;
const CB_AUX_INT: u8 = 0x02;
const CB_SYS: u8 = 0x04;
const CB_KBD_DISABLE: u8 = 0x10;
const CB_AUX_DISABLE: u8 = 0x20;
const CB_TRANSLATE: u8 = 0x40;

const OUT_RESET: u8 = 0x01;
const OUT_A20: u8 = 0x02;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;

/// The 8042's scan code translation: a set 2 code below 0x80 to its set 1 code; codes from
/// 0x80 up pass unchanged except 0x83 (F7) and 0x84 (SysRq). A 0xF0 break prefix is swallowed
/// and sets bit 7 of the next translated code.
#[rustfmt::skip]
const XLAT: [u8; 128] = [
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
];

fn translate(code: u8) -> u8 {
    match code {
        0x00..=0x7f => XLAT[usize::from(code)],
        0x83 => 0x41,
        0x84 => 0x54,
        _ => code,
    }
}

/// The set 2 code of a key whose set 1 code is `code` (without the E0 prefix).
fn set2_of(code: u8) -> u8 {
    match code {
        // Two set 2 codes translate to these; the keys are F7 and Alt+SysRq.
        0x41 => 0x83,
        0x54 => 0x84,
        _ => (0u8..0x80).find(|&s| XLAT[usize::from(s)] == code).unwrap_or(0),
    }
}

/// A key, named by its scan code set 1 make code: the low byte is the code, and 0xE0 in the
/// high byte marks the extended keys (0xE048 is the cursor-up key, 0x0048 keypad 8).
/// [`Key::PRINT_SCREEN`] and [`Key::PAUSE`] stand for the keys with special sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key(pub u16);

impl Key {
    /// Print Screen (E0 2A E0 37 in set 1).
    pub const PRINT_SCREEN: Key = Key(0xe037);
    /// Pause/Break (E1 1D 45 E1 9D C5 in set 1, on press only).
    pub const PAUSE: Key = Key(0xe11d);

    fn extended(self) -> bool {
        self.0 >> 8 == 0xe0
    }

    /// The bytes the keyboard sends for this key in scan code set `set` (1 or 2).
    fn bytes(self, pressed: bool, set: u8) -> Vec<u8> {
        let code = self.0 as u8 & 0x7f;
        match (self, set, pressed) {
            (Key::PAUSE, _, false) => vec![],
            (Key::PAUSE, 1, true) => vec![0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5],
            (Key::PAUSE, _, true) => vec![0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77],
            (Key::PRINT_SCREEN, 1, true) => vec![0xe0, 0x2a, 0xe0, 0x37],
            (Key::PRINT_SCREEN, 1, false) => vec![0xe0, 0xb7, 0xe0, 0xaa],
            (Key::PRINT_SCREEN, _, true) => vec![0xe0, 0x12, 0xe0, 0x7c],
            (Key::PRINT_SCREEN, _, false) => vec![0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12],
            (_, 1, _) => {
                let mut v = if self.extended() { vec![0xe0] } else { vec![] };
                v.push(if pressed { code } else { code | 0x80 });
                v
            }
            _ => {
                let mut v = if self.extended() { vec![0xe0] } else { vec![] };
                if !pressed {
                    v.push(0xf0);
                }
                v.push(set2_of(code));
                v
            }
        }
    }
}

/// Where a byte in the output buffer came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// The keyboard or the controller itself (IRQ1).
    #[default]
    Keyboard,
    /// The auxiliary device (IRQ12, status bit 5).
    Aux,
}

/// The guest-visible state of the PS/2 keyboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyboardState {
    /// Bytes waiting to be sent to the controller.
    pub queue: VecDeque<u8>,
    /// Scanning enabled (0xF4) or disabled (0xF5).
    pub scanning: bool,
    /// Scan code set, 1 or 2.
    pub scan_set: u8,
    /// LED state (bit 0 scroll, 1 num, 2 caps lock).
    pub leds: u8,
    /// Typematic rate/delay byte.
    pub typematic: u8,
    /// A command waiting for its argument byte.
    pub awaiting: Option<u8>,
    /// The last byte sent, for the resend command.
    pub last_sent: u8,
}

impl Default for KeyboardState {
    fn default() -> Self {
        KeyboardState {
            queue: VecDeque::new(),
            scanning: true,
            scan_set: 2,
            leds: 0,
            typematic: 0x2b,
            awaiting: None,
            last_sent: 0,
        }
    }
}

impl KeyboardState {
    fn send(&mut self, bytes: &[u8]) {
        self.queue.extend(bytes);
        if let Some(&b) = bytes.last() {
            self.last_sent = b;
        }
    }

    fn set_defaults(&mut self) {
        self.scan_set = 2;
        self.typematic = 0x2b;
        self.leds = 0;
    }

    /// Whether `val`, sent while an argument is awaited, is a command instead.
    fn is_command(val: u8) -> bool {
        val >= 0xed
    }

    fn write(&mut self, val: u8) {
        if let Some(cmd) = self.awaiting.take() {
            match cmd {
                0xed if !Self::is_command(val) => {
                    self.leds = val & 7;
                    self.send(&[ACK]);
                    return;
                }
                0xf3 if val < 0x80 => {
                    self.typematic = val;
                    self.send(&[ACK]);
                    return;
                }
                0xf0 if val == 0 => {
                    self.send(&[ACK, self.scan_set]);
                    return;
                }
                0xf0 if val == 1 || val == 2 => {
                    self.scan_set = val;
                    self.send(&[ACK]);
                    return;
                }
                0xf0 if !Self::is_command(val) => {
                    warn_once!("ps2 keyboard: scan code set {val} is not supported");
                    self.send(&[RESEND]);
                    return;
                }
                _ => {} // a command instead of the argument: run it
            }
        }
        match val {
            0xed | 0xf0 | 0xf3 => {
                self.send(&[ACK]);
                self.awaiting = Some(val);
            }
            0xee => self.send(&[0xee]),
            // MF2 keyboard. Through the translating controller the host sees AB 41.
            0xf2 => self.send(&[ACK, 0xab, 0x83]),
            0xf4 => {
                self.queue.clear();
                self.send(&[ACK]);
                self.scanning = true;
            }
            0xf5 => {
                self.queue.clear();
                self.set_defaults();
                self.send(&[ACK]);
                self.scanning = false;
            }
            0xf6 => {
                self.queue.clear();
                self.set_defaults();
                self.send(&[ACK]);
                self.scanning = true;
            }
            // Set-3 key type commands: acknowledged, meaningless in sets 1 and 2.
            0xf7..=0xfd => self.send(&[ACK]),
            0xfe => {
                let b = self.last_sent;
                self.send(&[b]);
            }
            0xff => {
                self.queue.clear();
                self.set_defaults();
                self.scanning = true;
                self.send(&[ACK, BAT_OK]);
            }
            _ => {
                warn_once!("ps2 keyboard: unknown command {val:#04x}");
                self.send(&[RESEND]);
            }
        }
    }

    fn key(&mut self, key: Key, pressed: bool) {
        if !self.scanning {
            return;
        }
        let bytes = key.bytes(pressed, self.scan_set);
        if self.queue.len() + bytes.len() <= KEYBOARD_BUFFER {
            self.send(&bytes);
        } else if self.queue.len() <= KEYBOARD_BUFFER && self.queue.back() != Some(&self.overrun()) {
            // Buffer full: one overrun code takes the place of the lost keys.
            let o = self.overrun();
            self.send(&[o]);
        }
    }

    fn overrun(&self) -> u8 {
        if self.scan_set == 1 {
            0xff
        } else {
            0x00
        }
    }
}

/// The guest-visible state of the PS/2 mouse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MouseState {
    /// Bytes waiting to be sent to the controller.
    pub queue: VecDeque<u8>,
    /// Data reporting enabled in stream mode.
    pub reporting: bool,
    /// Remote (polled) mode rather than stream mode.
    pub remote: bool,
    /// Wrap (echo) mode.
    pub wrap: bool,
    /// 2:1 scaling selected.
    pub scaling_2to1: bool,
    /// Resolution setting 0-3.
    pub resolution: u8,
    /// Samples per second.
    pub sample_rate: u8,
    /// Device ID: 0 (standard) or 3 (IntelliMouse with wheel).
    pub id: u8,
    /// The last three sample rates set, for the IntelliMouse knock.
    pub rate_history: [u8; 3],
    /// A command waiting for its argument byte.
    pub awaiting: Option<u8>,
    /// Buttons held (bit 0 left, 1 right, 2 middle).
    pub buttons: u8,
    /// Movement not yet reported (remote mode, or when the queue was full).
    pub dx: i32,
    /// Vertical movement not yet reported, positive up.
    pub dy: i32,
    /// Wheel movement not yet reported.
    pub dz: i32,
    /// The last byte sent, for the resend command.
    pub last_sent: u8,
}

impl Default for MouseState {
    fn default() -> Self {
        MouseState {
            queue: VecDeque::new(),
            reporting: false,
            remote: false,
            wrap: false,
            scaling_2to1: false,
            resolution: 2,
            sample_rate: 100,
            id: 0,
            rate_history: [0; 3],
            awaiting: None,
            buttons: 0,
            dx: 0,
            dy: 0,
            dz: 0,
            last_sent: 0,
        }
    }
}

impl MouseState {
    fn send(&mut self, bytes: &[u8]) {
        self.queue.extend(bytes);
        if let Some(&b) = bytes.last() {
            self.last_sent = b;
        }
    }

    fn set_defaults(&mut self) {
        self.reporting = false;
        self.remote = false;
        self.scaling_2to1 = false;
        self.resolution = 2;
        self.sample_rate = 100;
        self.dx = 0;
        self.dy = 0;
        self.dz = 0;
    }

    /// One movement packet from the pending movement, which it consumes.
    fn packet(&mut self) -> Vec<u8> {
        let clamp = |v: i32| (v.clamp(-256, 255), !(-256..=255).contains(&v));
        let (dx, x_over) = clamp(self.dx);
        let (dy, y_over) = clamp(self.dy);
        let mut b0 = 0x08 | (self.buttons & 7);
        if dx < 0 {
            b0 |= 0x10;
        }
        if dy < 0 {
            b0 |= 0x20;
        }
        if x_over {
            b0 |= 0x40;
        }
        if y_over {
            b0 |= 0x80;
        }
        let mut p = vec![b0, dx as u8, dy as u8];
        if self.id == 3 {
            p.push(self.dz.clamp(-8, 7) as u8 & 0x0f);
        }
        self.dx = 0;
        self.dy = 0;
        self.dz = 0;
        p
    }

    fn write(&mut self, val: u8) {
        if self.wrap && val != 0xec && val != 0xff {
            self.send(&[val]);
            return;
        }
        if val != 0xeb && val != 0xfe {
            // Any command but read-data and resend restarts the movement counters.
            self.dx = 0;
            self.dy = 0;
            self.dz = 0;
        }
        if let Some(cmd) = self.awaiting.take() {
            if cmd == 0xf3 {
                self.sample_rate = val;
                self.rate_history = [self.rate_history[1], self.rate_history[2], val];
                if self.rate_history == [200, 100, 80] {
                    self.id = 3;
                }
            } else {
                self.resolution = val & 3;
            }
            self.send(&[ACK]);
            return;
        }
        match val {
            0xe6 => {
                self.scaling_2to1 = false;
                self.send(&[ACK]);
            }
            0xe7 => {
                self.scaling_2to1 = true;
                self.send(&[ACK]);
            }
            0xe8 | 0xf3 => {
                self.awaiting = Some(val);
                self.send(&[ACK]);
            }
            0xe9 => {
                let status = (u8::from(self.remote) << 6)
                    | (u8::from(self.reporting) << 5)
                    | (u8::from(self.scaling_2to1) << 4)
                    // Status byte order: bit 2 left, bit 1 middle, bit 0 right.
                    | ((self.buttons & 1) << 2)
                    | ((self.buttons & 4) >> 1)
                    | ((self.buttons & 2) >> 1);
                self.send(&[ACK, status, self.resolution, self.sample_rate]);
            }
            0xea => {
                self.remote = false;
                self.send(&[ACK]);
            }
            0xeb => {
                let p = self.packet();
                self.send(&[ACK]);
                self.send(&p);
            }
            0xec => {
                self.wrap = false;
                self.send(&[ACK]);
            }
            0xee => {
                self.wrap = true;
                self.send(&[ACK]);
            }
            0xf0 => {
                self.remote = true;
                self.send(&[ACK]);
            }
            0xf2 => self.send(&[ACK, self.id]),
            0xf4 => {
                self.reporting = true;
                self.send(&[ACK]);
            }
            0xf5 => {
                self.reporting = false;
                self.send(&[ACK]);
            }
            0xf6 => {
                self.set_defaults();
                self.send(&[ACK]);
            }
            0xfe => {
                let b = self.last_sent;
                self.send(&[b]);
            }
            0xff => {
                self.queue.clear();
                self.set_defaults();
                self.wrap = false;
                self.id = 0;
                self.send(&[ACK, BAT_OK, 0x00]);
            }
            _ => {
                warn_once!("ps2 mouse: unknown command {val:#04x}");
                self.send(&[RESEND]);
            }
        }
    }

    fn motion(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.buttons = buttons & 7;
        // Stream mode with reporting off drops movement; remote mode keeps it for 0xEB.
        if self.wrap || (!self.reporting && !self.remote) {
            return;
        }
        self.dx = self.dx.saturating_add(dx);
        self.dy = self.dy.saturating_add(dy);
        self.dz = self.dz.saturating_add(dz);
        if self.remote {
            return;
        }
        let len = if self.id == 3 { 4 } else { 3 };
        if self.queue.len() + len <= MOUSE_BUFFER {
            let p = self.packet();
            self.send(&p);
        }
    }
}

/// The guest-visible state of the controller and its devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct I8042State {
    /// Controller RAM; byte 0 is the command byte.
    pub ram: [u8; 32],
    /// Status register bits kept as state: system flag and command/data.
    pub status: u8,
    /// The output buffer and where its byte came from.
    pub output: Option<(u8, Source)>,
    /// The last byte the guest read, returned again when the buffer is empty.
    pub last_output: u8,
    /// A controller command waiting for its data byte on port 0x60.
    pub pending_command: Option<u8>,
    /// The output port (bit 0 reset, active low; bit 1 A20 gate).
    pub output_port: u8,
    /// Controller replies waiting for the output buffer.
    pub replies: VecDeque<(u8, Source)>,
    /// The translator saw a 0xF0 break prefix.
    pub translate_break: bool,
    /// The earliest virtual time the output buffer may refill.
    pub refill_at: u64,
    /// Requests for the machine.
    pub requests: VecDeque<SystemRequest>,
    /// The keyboard.
    pub keyboard: KeyboardState,
    /// The mouse.
    pub mouse: MouseState,
}

impl Default for I8042State {
    fn default() -> Self {
        let mut ram = [0u8; 32];
        // Keyboard interrupt on, translation on, as BIOSes leave it.
        ram[0] = CB_KBD_INT | CB_TRANSLATE;
        I8042State {
            ram,
            status: 0,
            output: None,
            last_output: 0,
            pending_command: None,
            // Reset deasserted; A20 gated off as after power-on; the unused lines high.
            output_port: 0xcd,
            replies: VecDeque::new(),
            translate_break: false,
            refill_at: 0,
            requests: VecDeque::new(),
            keyboard: KeyboardState::default(),
            mouse: MouseState::default(),
        }
    }
}

/// The 8042 keyboard controller with its keyboard and mouse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct I8042 {
    state: I8042State,
}

impl I8042 {
    /// A controller in its power-on state.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the guest-visible state.
    pub fn state(&self) -> I8042State {
        self.state.clone()
    }

    /// Replaces the guest-visible state (snapshot restore).
    pub fn restore(&mut self, state: I8042State) {
        self.state = state;
    }

    /// Resets controller and devices (machine reset).
    pub fn reset(&mut self) {
        self.state = I8042State::default();
    }

    /// The IRQ1 output: keyboard (or controller) data in the buffer and its interrupt enabled.
    pub fn irq1_level(&self) -> bool {
        matches!(self.state.output, Some((_, Source::Keyboard))) && self.command_byte() & CB_KBD_INT != 0
    }

    /// The IRQ12 output: mouse data in the buffer and its interrupt enabled.
    pub fn irq12_level(&self) -> bool {
        matches!(self.state.output, Some((_, Source::Aux))) && self.command_byte() & CB_AUX_INT != 0
    }

    /// The A20 gate output (output port bit 1).
    pub fn a20(&self) -> bool {
        self.state.output_port & OUT_A20 != 0
    }

    /// The next request for the machine (A20 changes in order, resets), if any.
    pub fn take_request(&mut self) -> Option<SystemRequest> {
        self.state.requests.pop_front()
    }

    /// The keyboard's LEDs (bit 0 scroll lock, 1 num lock, 2 caps lock).
    pub fn leds(&self) -> u8 {
        self.state.keyboard.leds
    }

    /// Bytes the keyboard can still buffer; the host should hold back keys beyond it.
    pub fn keyboard_room(&self) -> usize {
        KEYBOARD_BUFFER.saturating_sub(self.state.keyboard.queue.len())
    }

    /// A key went down (`pressed`) or up at `now_ns`. Ignored while the keyboard is not
    /// scanning.
    pub fn key_event(&mut self, key: Key, pressed: bool, now_ns: u64) {
        self.state.keyboard.key(key, pressed);
        self.refill(now_ns);
    }

    /// The mouse moved by (`dx`, `dy`) counts, positive right and up (PS/2 convention), the
    /// wheel by `dz` (positive towards the user), with `buttons` held (bit 0 left, 1 right,
    /// 2 middle).
    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8, now_ns: u64) {
        self.state.mouse.motion(dx, dy, dz, buttons);
        self.refill(now_ns);
    }

    fn command_byte(&self) -> u8 {
        self.state.ram[0]
    }

    /// Moves the next waiting byte into the output buffer, if it is empty and the link has
    /// had time since the last read.
    fn refill(&mut self, now: u64) {
        let s = &mut self.state;
        if s.output.is_some() || now < s.refill_at {
            return;
        }
        if let Some(reply) = s.replies.pop_front() {
            s.output = Some(reply);
            return;
        }
        if s.ram[0] & CB_KBD_DISABLE == 0 {
            while let Some(code) = s.keyboard.queue.pop_front() {
                if s.ram[0] & CB_TRANSLATE == 0 {
                    s.output = Some((code, Source::Keyboard));
                    return;
                }
                if code == 0xf0 {
                    s.translate_break = true;
                    continue;
                }
                let mut t = translate(code);
                if std::mem::take(&mut s.translate_break) {
                    t |= 0x80;
                }
                s.output = Some((t, Source::Keyboard));
                return;
            }
        }
        if s.ram[0] & CB_AUX_DISABLE == 0 {
            if let Some(b) = s.mouse.queue.pop_front() {
                s.output = Some((b, Source::Aux));
            }
        }
    }

    fn reply(&mut self, byte: u8) {
        self.state.replies.push_back((byte, Source::Keyboard));
    }

    fn request(&mut self, r: SystemRequest) {
        // A guest looping on the output port must not grow the queue without bound.
        if self.state.requests.len() < 16 {
            self.state.requests.push_back(r);
        }
    }

    fn write_output_port(&mut self, val: u8) {
        let old = self.state.output_port;
        self.state.output_port = val;
        if (old ^ val) & OUT_A20 != 0 {
            self.request(SystemRequest::A20(val & OUT_A20 != 0));
        }
        if val & OUT_RESET == 0 {
            self.request(SystemRequest::Reset);
        }
    }

    fn status(&self) -> u8 {
        let s = &self.state;
        let obf = match s.output {
            Some((_, Source::Keyboard)) => STATUS_OBF,
            Some((_, Source::Aux)) => STATUS_OBF | STATUS_AUX,
            None => 0,
        };
        obf | (s.status & (STATUS_SYS | STATUS_CMD)) | STATUS_UNLOCKED
    }

    fn read_data(&mut self, now: u64) -> u8 {
        match self.state.output.take() {
            Some((b, _)) => {
                self.state.last_output = b;
                self.state.refill_at = now.saturating_add(REFILL_NS);
                b
            }
            None => self.state.last_output,
        }
    }

    fn write_data(&mut self, val: u8) {
        self.state.status &= !STATUS_CMD;
        let Some(cmd) = self.state.pending_command.take() else {
            self.state.keyboard.write(val);
            return;
        };
        match cmd {
            0x60..=0x7f => {
                self.state.ram[usize::from(cmd & 0x1f)] = val;
                if cmd == 0x60 {
                    self.state.status =
                        (self.state.status & !STATUS_SYS) | if val & CB_SYS != 0 { STATUS_SYS } else { 0 };
                }
            }
            0xd1 => self.write_output_port(val),
            0xd2 => self.state.replies.push_back((val, Source::Keyboard)),
            0xd3 => self.state.replies.push_back((val, Source::Aux)),
            0xd4 => self.state.mouse.write(val),
            _ => {}
        }
    }

    fn write_command(&mut self, val: u8) {
        self.state.status |= STATUS_CMD;
        self.state.pending_command = None;
        let cb = &mut self.state.ram[0];
        match val {
            0x20..=0x3f => {
                let b = self.state.ram[usize::from(val & 0x1f)];
                self.reply(b);
            }
            0x60..=0x7f | 0xd1..=0xd4 => self.state.pending_command = Some(val),
            0xa4 => self.reply(0xf1), // no password installed
            0xa7 => *cb |= CB_AUX_DISABLE,
            0xa8 => *cb &= !CB_AUX_DISABLE,
            0xa9 | 0xab => self.reply(0x00), // interface tests pass
            0xaa => {
                self.state.status |= STATUS_SYS;
                self.reply(0x55);
            }
            0xad => *cb |= CB_KBD_DISABLE,
            0xae => *cb &= !CB_KBD_DISABLE,
            // Input port: keyboard not inhibited, colour display, no manufacturing jumper.
            0xc0 => self.reply(0xa0),
            0xd0 => {
                let obf = match self.state.output {
                    Some((_, Source::Keyboard)) => 0x10,
                    Some((_, Source::Aux)) => 0x20,
                    None => 0,
                };
                let b = (self.state.output_port & !0x30) | obf;
                self.reply(b);
            }
            0xdd => {
                let p = self.state.output_port & !OUT_A20;
                self.write_output_port(p);
            }
            0xdf => {
                let p = self.state.output_port | OUT_A20;
                self.write_output_port(p);
            }
            0xe0 => self.reply(0x00), // test inputs
            // Pulse output port bits whose mask bit is 0: bit 0 is the reset line.
            0xf0..=0xff => {
                if val & 1 == 0 {
                    self.request(SystemRequest::Reset);
                }
            }
            _ => warn_once!("i8042: unsupported controller command {val:#04x}"),
        }
    }
}

impl PortDevice for I8042 {
    fn port_read(&mut self, offset: u16, size: u8, now_ns: u64) -> u32 {
        read_bytes(offset, size, |port| {
            self.refill(now_ns);
            let val = match port {
                0x60 => self.read_data(now_ns),
                0x64 => self.status(),
                _ => 0xff,
            };
            self.refill(now_ns);
            val
        })
    }

    fn port_write(&mut self, offset: u16, size: u8, val: u32, now_ns: u64) {
        write_bytes(offset, size, val, |port, byte| {
            match port {
                0x60 => self.write_data(byte),
                0x64 => self.write_command(byte),
                _ => {}
            }
            self.refill(now_ns);
        });
    }
}

impl Timed for I8042 {
    fn advance(&mut self, now_ns: u64) {
        self.refill(now_ns);
    }

    /// When the next queued byte arrives in the empty output buffer.
    fn next_deadline(&self, now_ns: u64) -> Option<u64> {
        let s = &self.state;
        let cb = s.ram[0];
        let waiting = !s.replies.is_empty()
            || (cb & CB_KBD_DISABLE == 0 && !s.keyboard.queue.is_empty())
            || (cb & CB_AUX_DISABLE == 0 && !s.mouse.queue.is_empty());
        (s.output.is_none() && waiting).then_some(s.refill_at.max(now_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads everything the controller has to say, advancing time as needed.
    fn drain(kbc: &mut I8042, now: &mut u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            if let Some(t) = kbc.next_deadline(*now) {
                *now = t;
            }
            if kbc.port_read(0x64, 1, *now) & 1 == 0 {
                // Let the link settle so the next event arrives at once.
                *now += REFILL_NS;
                return out;
            }
            out.push(kbc.port_read(0x60, 1, *now) as u8);
        }
    }

    fn cmd(kbc: &mut I8042, c: u8, now: u64) {
        kbc.port_write(0x64, 1, u32::from(c), now);
    }

    fn data(kbc: &mut I8042, d: u8, now: u64) {
        kbc.port_write(0x60, 1, u32::from(d), now);
    }

    fn st(kbc: &mut I8042, now: u64) -> u8 {
        kbc.port_read(0x64, 1, now) as u8
    }

    fn aux(kbc: &mut I8042, b: u8, now: u64) {
        cmd(kbc, 0xd4, now);
        data(kbc, b, now);
    }

    #[test]
    fn translation_table_inverts_for_every_set1_key() {
        for code in 1u8..0x80 {
            assert_eq!(translate(set2_of(code)), code, "set 1 code {code:#x}");
        }
    }

    #[test]
    fn self_test_and_interface_tests() {
        let mut kbc = I8042::new();
        let mut now = 0;
        assert_eq!(st(&mut kbc, 0) & STATUS_SYS, 0);
        cmd(&mut kbc, 0xaa, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0x55]);
        assert_eq!(st(&mut kbc, now) & STATUS_SYS, STATUS_SYS);
        cmd(&mut kbc, 0xab, now);
        cmd(&mut kbc, 0xa9, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0x00, 0x00]);
    }

    #[test]
    fn command_byte_read_and_write() {
        let mut kbc = I8042::new();
        let mut now = 0;
        cmd(&mut kbc, 0x20, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0x41]);
        assert_eq!(st(&mut kbc, now) & STATUS_CMD, STATUS_CMD);
        cmd(&mut kbc, 0x60, now);
        data(&mut kbc, 0x47, now);
        assert_eq!(st(&mut kbc, now) & STATUS_CMD, 0);
        cmd(&mut kbc, 0x20, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0x47]);
        cmd(&mut kbc, 0xa7, now);
        cmd(&mut kbc, 0xad, now);
        cmd(&mut kbc, 0x20, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0x77]);
        cmd(&mut kbc, 0xa8, now);
        cmd(&mut kbc, 0xae, now);
        cmd(&mut kbc, 0x20, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0x47]);
    }

    #[test]
    fn keyboard_reset_and_identify_through_translation() {
        let mut kbc = I8042::new();
        let mut now = 0;
        data(&mut kbc, 0xff, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0xaa]);
        data(&mut kbc, 0xf2, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0xab, 0x41]);
        // Without translation the keyboard's own ID shows.
        cmd(&mut kbc, 0x60, now);
        data(&mut kbc, 0x01, now);
        data(&mut kbc, 0xf2, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0xab, 0x83]);
    }

    #[test]
    fn set_leds_and_echo() {
        let mut kbc = I8042::new();
        let mut now = 0;
        data(&mut kbc, 0xed, now);
        data(&mut kbc, 0x07, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0xfa]);
        assert_eq!(kbc.leds(), 7);
        data(&mut kbc, 0xee, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xee]);
        // A command in place of the LED argument runs as a command.
        data(&mut kbc, 0xed, now);
        data(&mut kbc, 0xf2, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0xfa, 0xab, 0x41]);
    }

    #[test]
    fn keys_in_set2_translated_to_set1() {
        let mut kbc = I8042::new();
        let mut now = 0;
        kbc.key_event(Key(0x1e), true, now); // A
        kbc.key_event(Key(0x1e), false, now);
        kbc.key_event(Key(0xe048), true, now); // cursor up
        kbc.key_event(Key(0xe048), false, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8]);
        kbc.key_event(Key(0x41), false, now); // F7 (set 2 0x83)
        assert_eq!(drain(&mut kbc, &mut now), vec![0xc1]);
    }

    #[test]
    fn keys_in_raw_set2_and_set1() {
        let mut kbc = I8042::new();
        let mut now = 0;
        cmd(&mut kbc, 0x60, now);
        data(&mut kbc, 0x01, now); // no translation
        kbc.key_event(Key(0x1e), true, now);
        kbc.key_event(Key(0x1e), false, now);
        kbc.key_event(Key(0xe01d), false, now); // right Ctrl up
        assert_eq!(drain(&mut kbc, &mut now), vec![0x1c, 0xf0, 0x1c, 0xe0, 0xf0, 0x14]);
        data(&mut kbc, 0xf0, now);
        data(&mut kbc, 0x01, now);
        data(&mut kbc, 0xf0, now);
        data(&mut kbc, 0x00, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0xfa, 0xfa, 0xfa, 0x01]);
        kbc.key_event(Key(0x1e), false, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0x9e]);
        data(&mut kbc, 0xf0, now);
        data(&mut kbc, 0x03, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0xfe], "set 3 refused");
    }

    #[test]
    fn special_keys() {
        let mut kbc = I8042::new();
        let mut now = 0;
        kbc.key_event(Key::PAUSE, true, now);
        kbc.key_event(Key::PAUSE, false, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]);
        kbc.key_event(Key::PRINT_SCREEN, true, now);
        kbc.key_event(Key::PRINT_SCREEN, false, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xe0, 0x2a, 0xe0, 0x37, 0xe0, 0xb7, 0xe0, 0xaa]);
    }

    #[test]
    fn scanning_disable_and_enable() {
        let mut kbc = I8042::new();
        let mut now = 0;
        data(&mut kbc, 0xf5, now);
        kbc.key_event(Key(0x1e), true, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa]);
        data(&mut kbc, 0xf4, now);
        kbc.key_event(Key(0x1e), true, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0x1e]);
    }

    #[test]
    fn keyboard_buffer_overrun_code() {
        let mut kbc = I8042::new();
        let mut now = 0;
        cmd(&mut kbc, 0xad, now); // hold keyboard data back
        for _ in 0..20 {
            kbc.key_event(Key(0x1e), true, now);
        }
        assert_eq!(kbc.keyboard_room(), 0);
        cmd(&mut kbc, 0xae, now);
        let got = drain(&mut kbc, &mut now);
        assert_eq!(got.len(), 17);
        assert_eq!(got.last(), Some(&0xff), "set 2 overrun 00 translates to FF");
    }

    #[test]
    fn irq1_falls_on_read_and_rises_again_later() {
        let mut kbc = I8042::new();
        kbc.key_event(Key(0x1e), true, 0);
        kbc.key_event(Key(0x1e), false, 0);
        assert!(kbc.irq1_level());
        assert_eq!(kbc.port_read(0x60, 1, 1000), 0x1e);
        assert!(!kbc.irq1_level(), "buffer empty until the next byte arrives");
        assert_eq!(kbc.next_deadline(1000), Some(1000 + REFILL_NS));
        kbc.advance(1000 + REFILL_NS);
        assert!(kbc.irq1_level());
        assert_eq!(kbc.port_read(0x60, 1, 1000 + REFILL_NS), 0x9e);
        assert_eq!(kbc.next_deadline(1000 + REFILL_NS), None);
        // Reading an empty buffer returns the last byte again.
        assert_eq!(kbc.port_read(0x60, 1, 2_000_000), 0x9e);
    }

    #[test]
    fn irq1_needs_command_byte_enable() {
        let mut kbc = I8042::new();
        let mut now = 0;
        cmd(&mut kbc, 0x60, now);
        data(&mut kbc, 0x40, now);
        kbc.key_event(Key(0x1e), true, now);
        assert!(!kbc.irq1_level());
        assert_eq!(drain(&mut kbc, &mut now), vec![0x1e]);
    }

    #[test]
    fn output_port_a20_and_reset() {
        let mut kbc = I8042::new();
        let mut now = 0;
        assert!(!kbc.a20());
        cmd(&mut kbc, 0xd1, now);
        data(&mut kbc, 0xdf, now);
        assert!(kbc.a20());
        assert_eq!(kbc.take_request(), Some(SystemRequest::A20(true)));
        assert_eq!(kbc.take_request(), None);
        cmd(&mut kbc, 0xd0, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xcf]);
        cmd(&mut kbc, 0xdd, now);
        assert_eq!(kbc.take_request(), Some(SystemRequest::A20(false)));
        cmd(&mut kbc, 0xdf, now);
        assert_eq!(kbc.take_request(), Some(SystemRequest::A20(true)));
        cmd(&mut kbc, 0xfe, now);
        assert_eq!(kbc.take_request(), Some(SystemRequest::Reset));
        cmd(&mut kbc, 0xff, now);
        assert_eq!(kbc.take_request(), None, "0xFF pulses nothing");
        cmd(&mut kbc, 0xd1, now);
        data(&mut kbc, 0xde, now);
        assert_eq!(kbc.take_request(), Some(SystemRequest::Reset));
    }

    #[test]
    fn write_keyboard_and_aux_output_buffer() {
        let mut kbc = I8042::new();
        let mut now = 0;
        cmd(&mut kbc, 0x60, now);
        data(&mut kbc, 0x03, now); // both interrupts, no translation
        cmd(&mut kbc, 0xd2, now);
        data(&mut kbc, 0x12, now);
        assert!(kbc.irq1_level());
        assert_eq!(drain(&mut kbc, &mut now), vec![0x12]);
        cmd(&mut kbc, 0xd3, now);
        data(&mut kbc, 0x5a, now);
        assert!(kbc.irq12_level());
        assert_eq!(st(&mut kbc, now) & STATUS_AUX, STATUS_AUX);
        assert_eq!(drain(&mut kbc, &mut now), vec![0x5a]);
    }

    #[test]
    fn mouse_reset_identify_and_intellimouse_knock() {
        let mut kbc = I8042::new();
        let mut now = 0;
        aux(&mut kbc, 0xff, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0xaa, 0x00]);
        aux(&mut kbc, 0xf2, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0x00]);
        for rate in [200, 100, 80] {
            aux(&mut kbc, 0xf3, now);
            aux(&mut kbc, rate, now);
        }
        aux(&mut kbc, 0xf2, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa; 6].into_iter().chain([0xfa, 0x03]).collect::<Vec<_>>());
        aux(&mut kbc, 0xe9, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0x00, 0x02, 80]);
    }

    #[test]
    fn mouse_stream_packets() {
        let mut kbc = I8042::new();
        let mut now = 0;
        cmd(&mut kbc, 0x60, now);
        data(&mut kbc, 0x03, now);
        kbc.mouse_event(5, 5, 0, 0, now);
        assert!(drain(&mut kbc, &mut now).is_empty(), "reporting is off after reset");
        cmd(&mut kbc, 0xd4, now);
        data(&mut kbc, 0xf4, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa]);
        kbc.mouse_event(-3, 400, 0, 1, now);
        assert!(kbc.irq12_level());
        assert_eq!(drain(&mut kbc, &mut now), vec![0x08 | 0x01 | 0x10 | 0x80, 0xfd, 0xff]);
        // Disabling the aux interface holds data back.
        cmd(&mut kbc, 0xa7, now);
        kbc.mouse_event(1, 0, 0, 0, now);
        assert!(drain(&mut kbc, &mut now).is_empty());
        cmd(&mut kbc, 0xa8, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0x08, 0x01, 0x00]);
    }

    #[test]
    fn mouse_remote_mode_and_wrap() {
        let mut kbc = I8042::new();
        let mut now = 0;
        aux(&mut kbc, 0xf0, now);
        kbc.mouse_event(2, -2, 0, 0, now);
        aux(&mut kbc, 0xeb, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0xfa, 0x28, 0x02, 0xfe]);
        aux(&mut kbc, 0xee, now);
        aux(&mut kbc, 0x42, now);
        aux(&mut kbc, 0xec, now);
        assert_eq!(drain(&mut kbc, &mut now), vec![0xfa, 0x42, 0xfa]);
    }

    #[test]
    fn wide_and_odd_accesses_do_not_panic() {
        let mut kbc = I8042::new();
        kbc.port_write(0x60, 4, 0xffff_ffff, 0);
        let _ = kbc.port_read(0x64, 4, 0);
        cmd(&mut kbc, 0x12, 0);
    }
}
