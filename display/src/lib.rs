//! Turning the guest's VGA/VBE state into pixels: a minifb window and headless PNG screenshots.
//!
//! Planned (issue 6 and later): nothing is implemented yet. `--display` accepts only `none`
//! until it is, and says so.
