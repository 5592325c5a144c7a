//! The Debian guests `cargo xtask guest [amd64|i386]` caches under guests/cache, shared by the
//! tests that boot them.

use std::path::{Path, PathBuf};

/// guests/cache.
pub fn cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/cache")
}

/// The cached kernel for `arch`, if fetched.
pub fn kernel(arch: &str) -> Option<PathBuf> {
    let boot = cache().join(arch).join("boot");
    std::fs::read_dir(boot)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
}
