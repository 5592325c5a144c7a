//! A writer for cpio archives in the "newc" format (magic 070701), the format Linux unpacks
//! into its initramfs.

/// Builds a newc archive in memory.
#[derive(Debug, Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

/// File type bits of `mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl Cpio {
    /// An empty archive.
    pub fn new() -> Self {
        Cpio::default()
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields =
            [self.ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// A directory.
    pub fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, &[], (0, 0));
    }

    /// A regular file with permission bits `perm`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, data, (0, 0));
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, target.as_bytes(), (0, 0));
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | 0o600, &[], (major, minor));
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

/// One entry read back: name, mode, data, (rdevmajor, rdevminor).
#[cfg(test)]
type Entry = (String, u32, Vec<u8>, (u32, u32));

/// Reads an archive back (for the tests).
#[cfg(test)]
pub fn parse(mut b: &[u8]) -> Vec<Entry> {
    let hex = |s: &[u8]| u32::from_str_radix(std::str::from_utf8(s).expect("ascii"), 16).expect("hex");
    let mut out = Vec::new();
    let mut consumed = 0usize;
    loop {
        assert_eq!(&b[..6], b"070701");
        let f = |i: usize| hex(&b[6 + 8 * i..14 + 8 * i]);
        let (mode, size, rdev, namesize) = (f(1), f(6) as usize, (f(9), f(10)), f(11) as usize);
        let name = String::from_utf8(b[110..110 + namesize - 1].to_vec()).expect("utf-8 name");
        let data_at = (consumed + 110 + namesize).next_multiple_of(4) - consumed;
        let data = b[data_at..data_at + size].to_vec();
        let next = (consumed + data_at + size).next_multiple_of(4) - consumed;
        consumed += next;
        b = &b[next..];
        if name == "TRAILER!!!" {
            assert!(b.is_empty());
            return out;
        }
        out.push((name, mode, data, rdev));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut c = Cpio::new();
        c.dir("bin");
        c.file("bin/busybox", 0o755, b"\x7fELF not really");
        c.symlink("bin/sh", "busybox");
        c.dir("dev");
        c.char_dev("dev/console", 5, 1);
        c.file("init", 0o755, b"#!/bin/sh\n");
        c.finish()
    }

    #[test]
    fn round_trips_through_the_parser() {
        let entries = parse(&sample());
        assert_eq!(entries.len(), 6);
        assert_eq!(entries[1].0, "bin/busybox");
        assert_eq!(entries[1].2, b"\x7fELF not really");
        assert_eq!(entries[2].1, S_IFLNK | 0o777);
        assert_eq!(entries[2].2, b"busybox");
        assert_eq!(entries[4].3, (5, 1));
    }

    #[test]
    fn the_host_cpio_lists_it() {
        let Ok(mut child) = std::process::Command::new("cpio")
            .arg("-t")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("skipped: no cpio on this host");
            return;
        };
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(&sample()).expect("write");
        let out = child.wait_with_output().expect("cpio");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        assert_eq!(names, ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init"]);
    }
}
