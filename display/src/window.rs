//! The display window (`--display window`): a minifb window showing [`crate::Frame`]s, with its
//! keyboard turned into PS/2 key events (set 1 make codes, as `devices::i8042::Key` names them;
//! the keyboard sends set 2 and the controller translates, as on a PC).
//!
//! minifb's X11 backend loads libX11 at run time (x11-dl), so cranebox builds without X11
//! development packages and a machine without a display fails only when a window is asked for.
//! The window belongs to the thread that made it: the machine's run loop pumps it between
//! slices (see ARCHITECTURE.md).

use std::cell::RefCell;
use std::rc::Rc;

use devices::i8042::Key as Ps2Key;
use minifb::{InputCallback, Key, ScaleMode, WindowOptions};

use crate::{DisplayError, Frame};

/// Key presses and releases in the order the window system reported them.
type KeyQueue = Rc<RefCell<Vec<(Key, bool)>>>;

/// Collects every key event as it arrives: polling the key state once a frame would lose a key
/// pressed and released within one frame (fast typing, pasted text).
struct KeyRecorder(KeyQueue);

impl InputCallback for KeyRecorder {
    fn add_char(&mut self, _: u32) {}

    fn set_key_state(&mut self, key: Key, state: bool) {
        self.0.borrow_mut().push((key, state));
    }
}

/// A window showing the guest's screen.
pub struct Window {
    inner: minifb::Window,
    keys: KeyQueue,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window").finish_non_exhaustive()
    }
}

impl Window {
    /// Opens a window titled `title`, sized for mode 3 (720x400) and resizable.
    pub fn open(title: &str) -> Result<Window, DisplayError> {
        let opts =
            WindowOptions { resize: true, scale_mode: ScaleMode::AspectRatioStretch, ..WindowOptions::default() };
        let mut inner = minifb::Window::new(title, 720, 400, opts).map_err(|e| DisplayError::Window(e.to_string()))?;
        let keys = KeyQueue::default();
        inner.set_input_callback(Box::new(KeyRecorder(keys.clone())));
        Ok(Window { inner, keys })
    }

    /// Whether the user has not closed it.
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    /// Shows `frame` and takes in the window system's events.
    pub fn show(&mut self, frame: &Frame) -> Result<(), DisplayError> {
        self.inner
            .update_with_buffer(&frame.pixels, frame.width, frame.height)
            .map_err(|e| DisplayError::Window(e.to_string()))
    }

    /// The keys pressed (with the window system's auto-repeat) and released since the last
    /// call, in order, as PS/2 keys; keys the PC keyboard does not have are left out.
    pub fn take_keys(&mut self) -> Vec<(Ps2Key, bool)> {
        let events = std::mem::take(&mut *self.keys.borrow_mut());
        events.into_iter().filter_map(|(k, pressed)| ps2_key(k).map(|p| (p, pressed))).collect()
    }
}

/// The PC keyboard key (set 1 make code, 0xE0 prefix in the high byte) for a minifb key.
pub fn ps2_key(key: Key) -> Option<Ps2Key> {
    use Key::*;
    let code: u16 = match key {
        Escape => 0x01,
        Key1 => 0x02,
        Key2 => 0x03,
        Key3 => 0x04,
        Key4 => 0x05,
        Key5 => 0x06,
        Key6 => 0x07,
        Key7 => 0x08,
        Key8 => 0x09,
        Key9 => 0x0a,
        Key0 => 0x0b,
        Minus => 0x0c,
        Equal => 0x0d,
        Backspace => 0x0e,
        Tab => 0x0f,
        Q => 0x10,
        W => 0x11,
        E => 0x12,
        R => 0x13,
        T => 0x14,
        Y => 0x15,
        U => 0x16,
        I => 0x17,
        O => 0x18,
        P => 0x19,
        LeftBracket => 0x1a,
        RightBracket => 0x1b,
        Enter => 0x1c,
        LeftCtrl => 0x1d,
        A => 0x1e,
        S => 0x1f,
        D => 0x20,
        F => 0x21,
        G => 0x22,
        H => 0x23,
        J => 0x24,
        K => 0x25,
        L => 0x26,
        Semicolon => 0x27,
        Apostrophe => 0x28,
        Backquote => 0x29,
        LeftShift => 0x2a,
        Backslash => 0x2b,
        Z => 0x2c,
        X => 0x2d,
        C => 0x2e,
        V => 0x2f,
        B => 0x30,
        N => 0x31,
        M => 0x32,
        Comma => 0x33,
        Period => 0x34,
        Slash => 0x35,
        RightShift => 0x36,
        NumPadAsterisk => 0x37,
        LeftAlt => 0x38,
        Space => 0x39,
        CapsLock => 0x3a,
        F1 => 0x3b,
        F2 => 0x3c,
        F3 => 0x3d,
        F4 => 0x3e,
        F5 => 0x3f,
        F6 => 0x40,
        F7 => 0x41,
        F8 => 0x42,
        F9 => 0x43,
        F10 => 0x44,
        NumLock => 0x45,
        ScrollLock => 0x46,
        NumPad7 => 0x47,
        NumPad8 => 0x48,
        NumPad9 => 0x49,
        NumPadMinus => 0x4a,
        NumPad4 => 0x4b,
        NumPad5 => 0x4c,
        NumPad6 => 0x4d,
        NumPadPlus => 0x4e,
        NumPad1 => 0x4f,
        NumPad2 => 0x50,
        NumPad3 => 0x51,
        NumPad0 => 0x52,
        NumPadDot => 0x53,
        F11 => 0x57,
        F12 => 0x58,
        NumPadEnter => 0xe01c,
        RightCtrl => 0xe01d,
        NumPadSlash => 0xe035,
        RightAlt => 0xe038,
        Home => 0xe047,
        Up => 0xe048,
        PageUp => 0xe049,
        Left => 0xe04b,
        Right => 0xe04d,
        End => 0xe04f,
        Down => 0xe050,
        PageDown => 0xe051,
        Insert => 0xe052,
        Delete => 0xe053,
        LeftSuper => 0xe05b,
        RightSuper => 0xe05c,
        Menu => 0xe05d,
        Pause => return Some(Ps2Key::PAUSE),
        _ => return None,
    };
    Some(Ps2Key(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_set1_make_codes() {
        assert_eq!(ps2_key(Key::A), Some(Ps2Key(0x1e)));
        assert_eq!(ps2_key(Key::Enter), Some(Ps2Key(0x1c)));
        assert_eq!(ps2_key(Key::Up), Some(Ps2Key(0xe048)));
        assert_eq!(ps2_key(Key::Pause), Some(Ps2Key::PAUSE));
        assert_eq!(ps2_key(Key::F15), None);
    }
}
