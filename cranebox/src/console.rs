//! The host terminal as the other end of COM1 (QEMU's `-serial stdio`, `-nographic`).
//!
//! A reader thread takes bytes from stdin and sends them to the machine's run loop as
//! [`HostEvent::Serial`]; the machine holds them until the guest's UART has room, so typing
//! ahead or piping a script loses nothing. When stdin is a terminal it is put in raw mode (no
//! echo, no line editing, no signals: Ctrl-C goes to the guest) and QEMU's escape keys work:
//! Ctrl-A X quits, Ctrl-A Ctrl-A sends one Ctrl-A, Ctrl-A H prints help. The terminal's
//! settings are restored on every way out: a normal return, an error, a panic (a panic hook),
//! and SIGTERM/SIGHUP/SIGINT/SIGQUIT (handlers that restore and re-raise). When stdin is not a
//! terminal (a pipe, a file) its bytes go to the guest untouched, with no escapes: that is how
//! scripts and tests drive a guest.
//!
//! Raw mode uses `libc`'s termios calls directly: `libc` is already in the workspace and these
//! are five plain POSIX calls, each in an `unsafe` block that says why it is sound.

use std::io::Read;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crossbeam_channel::Sender;
use machine::HostEvent;

/// The escape key, Ctrl-A, as in QEMU.
pub const ESCAPE: u8 = 0x01;

/// What the escape help says.
pub const HELP: &str = "\nC-a h    print this help\nC-a x    exit cranebox\nC-a C-a  send C-a to the guest\n";

/// What one typed byte means once the escape sequence is taken into account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this byte to the guest.
    Send(u8),
    /// Nothing to do (the escape key itself, or an unknown escape).
    Nothing,
    /// Print the help.
    Help,
    /// End cranebox.
    Quit,
}

/// The Ctrl-A escape state machine: a pure function of the bytes typed, so it is testable
/// without a terminal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Escape {
    armed: bool,
}

impl Escape {
    /// Takes in one typed byte.
    pub fn feed(&mut self, byte: u8) -> Action {
        if !std::mem::take(&mut self.armed) {
            if byte == ESCAPE {
                self.armed = true;
                return Action::Nothing;
            }
            return Action::Send(byte);
        }
        match byte {
            ESCAPE => Action::Send(ESCAPE),
            b'x' | b'X' => Action::Quit,
            b'h' | b'H' | b'?' => Action::Help,
            // As QEMU does, an unknown escape is dropped.
            _ => Action::Nothing,
        }
    }
}

/// The terminal settings found at start, restored at exit.
static SAVED: OnceLock<libc::termios> = OnceLock::new();
/// Raw mode is on.
static RAW: AtomicBool = AtomicBool::new(false);

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor number; any value is allowed.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Puts back the terminal settings found at start, if raw mode is on. Idempotent and
/// async-signal-safe (an atomic swap and tcsetattr), so signal handlers and the panic hook
/// call it too.
pub fn restore() {
    if RAW.swap(false, Ordering::SeqCst) {
        if let Some(t) = SAVED.get() {
            // SAFETY: `t` is a valid termios read by tcgetattr from the same descriptor.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t);
            }
        }
    }
}

/// Restores the terminal when dropped.
#[derive(Debug)]
pub struct RawGuard(());

impl Drop for RawGuard {
    fn drop(&mut self) {
        restore();
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    restore();
    // SAFETY: signal() and raise() are async-signal-safe; with the default action back in
    // place the re-raised signal ends the process as it would have without us.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Puts the terminal on stdin in raw mode as QEMU's stdio does (no echo, no canonical input,
/// no signals from the keyboard, no input translation; output processing stays on), and
/// arranges for every exit path to restore it.
fn enter_raw_mode() -> std::io::Result<RawGuard> {
    let mut t = MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr writes a whole termios through the pointer, which is valid for writes.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, t.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: tcgetattr succeeded, so it initialised `t`.
    let orig = unsafe { t.assume_init() };
    let saved = *SAVED.get_or_init(|| orig);
    let mut raw = saved;
    raw.c_iflag &= !(libc::IGNBRK
        | libc::BRKINT
        | libc::PARMRK
        | libc::ISTRIP
        | libc::INLCR
        | libc::IGNCR
        | libc::ICRNL
        | libc::IXON);
    raw.c_oflag |= libc::OPOST;
    raw.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN | libc::ISIG);
    raw.c_cflag &= !(libc::CSIZE | libc::PARENB);
    raw.c_cflag |= libc::CS8;
    raw.c_cc[libc::VMIN] = 1;
    raw.c_cc[libc::VTIME] = 0;

    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: a zeroed sigaction is a valid starting point (empty mask, no flags); the
        // handler is an `extern "C" fn(c_int)` that only makes async-signal-safe calls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    RAW.store(true, Ordering::SeqCst);
    // SAFETY: `raw` is a valid termios derived from the one tcgetattr returned.
    if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
        RAW.store(false, Ordering::SeqCst);
        return Err(std::io::Error::last_os_error());
    }
    Ok(RawGuard(()))
}

/// Connects stdin to the guest's serial line: starts the reader thread sending to `events`
/// and, when stdin is a terminal, enters raw mode (the guard restores it).
pub fn connect_stdin(events: Sender<HostEvent>) -> std::io::Result<Option<RawGuard>> {
    let tty = stdin_is_tty();
    let guard = if tty { Some(enter_raw_mode()?) } else { None };
    if tty {
        eprint!("cranebox: serial console on this terminal; Ctrl-A X quits, Ctrl-A H helps\r\n");
    }
    std::thread::Builder::new().name("stdin".into()).spawn(move || read_stdin(tty, &events))?;
    Ok(guard)
}

/// The reader thread: bytes from stdin to the machine until EOF, an error, Ctrl-A X, or the
/// machine has gone.
fn read_stdin(tty: bool, events: &Sender<HostEvent>) {
    let mut stdin = std::io::stdin().lock();
    let mut escape = Escape::default();
    let mut buf = [0u8; 256];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        for &b in &buf[..n] {
            let action = if tty { escape.feed(b) } else { Action::Send(b) };
            let event = match action {
                Action::Send(b) => HostEvent::Serial(b),
                Action::Nothing => continue,
                Action::Help => {
                    eprint!("{HELP}");
                    continue;
                }
                Action::Quit => HostEvent::Quit,
            };
            if events.send(event).is_err() || event == HostEvent::Quit {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Vec<Action> {
        let mut e = Escape::default();
        bytes.iter().map(|&b| e.feed(b)).collect()
    }

    #[test]
    fn plain_bytes_and_ctrl_c_pass_through() {
        assert_eq!(run(b"ls\x03\r"), [b'l', b's', 3, b'\r'].map(Action::Send));
    }

    #[test]
    fn ctrl_a_x_quits() {
        assert_eq!(run(b"\x01x"), [Action::Nothing, Action::Quit]);
        assert_eq!(run(b"\x01X"), [Action::Nothing, Action::Quit]);
    }

    #[test]
    fn ctrl_a_twice_sends_one_ctrl_a_and_disarms() {
        assert_eq!(run(b"\x01\x01x"), [Action::Nothing, Action::Send(1), Action::Send(b'x')]);
    }

    #[test]
    fn ctrl_a_h_helps_and_unknown_escapes_are_dropped() {
        assert_eq!(
            run(b"\x01h\x01q!"),
            [Action::Nothing, Action::Help, Action::Nothing, Action::Nothing, Action::Send(b'!')]
        );
    }
}
