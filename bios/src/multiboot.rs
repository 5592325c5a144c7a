//! Multiboot v1 (the GNU Multiboot Specification 0.6.96): loads an ELF32 kernel by its
//! program headers, or any image by the header's address fields (the "a.out kludge"), with
//! modules, and enters it with EAX = 0x2BADB002 and EBX = the multiboot information.

use softmmu::PcLayout;
use thiserror::Error;

use crate::e820;
use crate::linux::{bda_blobs, boot_gdt, BootPlan, Entry, Entry32, GDT_ADDR};

/// Errors from loading a multiboot kernel.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MultibootError {
    /// No valid header in the first 8 KiB.
    #[error("has no multiboot header in its first 8192 bytes")]
    NoHeader,
    /// The header asks for something this loader does not give (video mode, ...).
    #[error("requires multiboot features {0:#x} that cranebox does not provide")]
    Unsupported(u32),
    /// The ELF file is malformed or not a 32-bit x86 executable.
    #[error("is not a loadable 32-bit x86 ELF file: {0}")]
    BadElf(&'static str),
    /// An address field points outside the file or memory.
    #[error("has a segment at {addr:#x} of {len:#x} bytes outside the file or guest memory")]
    BadSegment {
        /// Where it was to be loaded.
        addr: u64,
        /// Its length.
        len: u64,
    },
    /// The modules do not fit in memory.
    #[error("modules of {0} bytes do not fit in guest memory")]
    ModulesTooLarge(u64),
}

/// The header magic.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// What the loader puts in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// Header flag: modules page-aligned (always honoured).
const PAGE_ALIGN: u32 = 1 << 0;
/// Header flag: the kernel wants mem_* and mmap (always given).
const MEMORY_INFO: u32 = 1 << 1;
/// Header flag: the address fields are valid (a.out kludge).
const AOUT_KLUDGE: u32 = 1 << 16;

/// Where the multiboot information and its strings go.
pub const MBI_ADDR: u64 = 0x9000;
const CMDLINE_ADDR: u64 = 0x9400;
const NAME_ADDR: u64 = 0x9300;
const MMAP_ADDR: u64 = 0x9200;
const MODS_ADDR: u64 = 0xa000;
const MOD_STRINGS: u64 = 0xb000;

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

/// The multiboot header: its offset in the file and its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Offset of the magic in the file.
    pub offset: usize,
    /// Flags.
    pub flags: u32,
    /// header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr (valid with bit 16).
    pub addrs: [u32; 5],
}

/// Finds the header: 4-byte aligned, in the first 8192 bytes, magic + flags + checksum = 0.
pub fn find_header(image: &[u8]) -> Option<Header> {
    (0..8192usize.min(image.len())).step_by(4).find_map(|o| {
        let magic = u32_at(image, o)?;
        let flags = u32_at(image, o + 4)?;
        let sum = u32_at(image, o + 8)?;
        if magic != HEADER_MAGIC || magic.wrapping_add(flags).wrapping_add(sum) != 0 {
            return None;
        }
        let mut addrs = [0u32; 5];
        if flags & AOUT_KLUDGE != 0 {
            for (i, a) in addrs.iter_mut().enumerate() {
                *a = u32_at(image, o + 12 + 4 * i)?;
            }
        }
        Some(Header { offset: o, flags, addrs })
    })
}

/// A multiboot module: its bytes and its command line.
#[derive(Clone, Debug)]
pub struct Module {
    /// The file's contents.
    pub data: Vec<u8>,
    /// The string the kernel sees (QEMU: the path and its arguments).
    pub cmdline: String,
}

/// Bytes to place at a physical address (the bss already zero-filled).
type Segments = Vec<(u64, Vec<u8>)>;

/// The kernel's segments and its entry point.
fn segments(image: &[u8], h: &Header) -> Result<(Segments, u32), MultibootError> {
    if h.flags & AOUT_KLUDGE != 0 {
        let [header_addr, load_addr, load_end, bss_end, entry] = h.addrs;
        let bad = MultibootError::BadSegment { addr: u64::from(load_addr), len: 0 };
        let start = (h.offset as u64).checked_sub(u64::from(header_addr.checked_sub(load_addr).ok_or(bad)?));
        let start = start.ok_or(MultibootError::BadSegment { addr: u64::from(load_addr), len: 0 })? as usize;
        let len = if load_end == 0 { image.len() - start } else { load_end.saturating_sub(load_addr) as usize };
        let data = image
            .get(start..start + len)
            .ok_or(MultibootError::BadSegment { addr: u64::from(load_addr), len: len as u64 })?;
        let mut bytes = data.to_vec();
        if bss_end > load_addr {
            bytes.resize(bytes.len().max((bss_end - load_addr) as usize), 0);
        }
        return Ok((vec![(u64::from(load_addr), bytes)], entry));
    }
    if image.get(0..4) != Some(b"\x7fELF") {
        return Err(MultibootError::BadElf("no ELF magic and no address fields in the multiboot header"));
    }
    if image.get(4) != Some(&1) || u16_at(image, 18) != Some(3) {
        return Err(MultibootError::BadElf("not ELFCLASS32 for EM_386"));
    }
    let short = MultibootError::BadElf("truncated header");
    let entry = u32_at(image, 24).ok_or(short.clone())?;
    let phoff = u32_at(image, 28).ok_or(short.clone())? as usize;
    let phentsize = usize::from(u16_at(image, 42).ok_or(short.clone())?);
    let phnum = usize::from(u16_at(image, 44).ok_or(short.clone())?);
    let mut segs = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        let field = |n: usize| u32_at(image, p + 4 * n).ok_or(MultibootError::BadElf("truncated program header"));
        if field(0)? != 1 {
            continue; // not PT_LOAD
        }
        let (offset, paddr, filesz, memsz) = (field(1)? as usize, field(3)?, field(4)? as usize, field(5)? as usize);
        let data = image
            .get(offset..offset.saturating_add(filesz))
            .ok_or(MultibootError::BadSegment { addr: u64::from(paddr), len: filesz as u64 })?;
        let mut bytes = data.to_vec();
        bytes.resize(memsz.max(filesz), 0);
        segs.push((u64::from(paddr), bytes));
    }
    Ok((segs, entry))
}

/// Prepares a multiboot `image` for a machine with `layout`'s memory.
pub fn load(
    image: &[u8],
    layout: PcLayout,
    cmdline: &str,
    modules: &[Module],
    firmware_len: u64,
) -> Result<BootPlan, MultibootError> {
    let h = find_header(image).ok_or(MultibootError::NoHeader)?;
    let unsupported = h.flags & 0xffff & !(PAGE_ALIGN | MEMORY_INFO);
    if unsupported != 0 {
        return Err(MultibootError::Unsupported(unsupported));
    }
    let (segs, entry) = segments(image, &h)?;
    let mut kernel_end = 0x10_0000u64;
    for (addr, bytes) in &segs {
        let end = addr + bytes.len() as u64;
        if *addr < 0x10_0000 || end > layout.below_4g {
            return Err(MultibootError::BadSegment { addr: *addr, len: bytes.len() as u64 });
        }
        kernel_end = kernel_end.max(end);
    }
    let mut blobs = vec![(GDT_ADDR, boot_gdt())];
    blobs.extend(bda_blobs());
    blobs.extend(segs);

    // Modules: page-aligned, one after another above the kernel.
    let mut at = (kernel_end + 0xfff) & !0xfff;
    let mut mods = Vec::new();
    let mut strings = Vec::new();
    for m in modules {
        let end = at + m.data.len() as u64;
        if end > layout.below_4g {
            return Err(MultibootError::ModulesTooLarge(modules.iter().map(|m| m.data.len() as u64).sum()));
        }
        let string = MOD_STRINGS + strings.len() as u64;
        strings.extend_from_slice(m.cmdline.as_bytes());
        strings.push(0);
        for v in [at as u32, end as u32, string as u32, 0] {
            mods.extend_from_slice(&v.to_le_bytes());
        }
        blobs.push((at, m.data.clone()));
        at = (end + 0xfff) & !0xfff;
    }

    let map = e820::memory_map(layout, firmware_len);
    let mut mmap = Vec::new();
    for e in &map {
        mmap.extend_from_slice(&20u32.to_le_bytes());
        mmap.extend_from_slice(&e.to_bytes());
    }
    let mut mbi = vec![0u8; 88];
    let mut put = |o: usize, v: u32| mbi[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let flags = 1 | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9);
    put(0, flags);
    put(4, (e820::EBDA_BASE >> 10) as u32);
    put(8, ((layout.below_4g.saturating_sub(1 << 20)) >> 10) as u32);
    put(16, CMDLINE_ADDR as u32);
    put(20, modules.len() as u32);
    put(24, MODS_ADDR as u32);
    put(44, mmap.len() as u32);
    put(48, MMAP_ADDR as u32);
    put(64, NAME_ADDR as u32);
    let mut line = cmdline.as_bytes().to_vec();
    line.truncate((MODS_ADDR - CMDLINE_ADDR - 1) as usize);
    line.push(0);
    blobs.push((CMDLINE_ADDR, line));
    blobs.push((NAME_ADDR, b"cranebox\0".to_vec()));
    mmap.truncate(0x100);
    blobs.push((MMAP_ADDR, mmap));
    blobs.push((MODS_ADDR, mods));
    strings.truncate(0x4000);
    blobs.push((MOD_STRINGS, strings));
    blobs.push((MBI_ADDR, mbi));
    Ok(BootPlan {
        blobs,
        entry: Entry::Protected32(Entry32 {
            eip: entry,
            eax: BOOTLOADER_MAGIC,
            ebx: MBI_ADDR as u32,
            esi: 0,
            gdt_base: GDT_ADDR as u32,
            gdt_limit: (boot_gdt().len() - 1) as u16,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An a.out-kludge kernel: the header at 0, code right after it, loaded at 1 MiB.
    fn kludge_kernel(code: &[u8]) -> Vec<u8> {
        let flags = MEMORY_INFO | AOUT_KLUDGE;
        let mut img = Vec::new();
        for v in [HEADER_MAGIC, flags, 0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags))] {
            img.extend_from_slice(&v.to_le_bytes());
        }
        let load = 0x10_0000u32;
        for v in [load, load, 0, load + 0x2000, load + 32] {
            img.extend_from_slice(&v.to_le_bytes());
        }
        img.extend_from_slice(code);
        img
    }

    #[test]
    fn finds_the_header_and_loads_by_its_addresses() {
        let img = kludge_kernel(&[0xf4]);
        let h = find_header(&img).expect("header");
        assert_eq!(h.offset, 0);
        let m = Module { data: vec![7; 100], cmdline: "mod arg".into() };
        let plan = load(&img, PcLayout::for_ram(64 << 20), "k x=1", &[m], 0).expect("load");
        let Entry::Protected32(e) = plan.entry else { panic!("not a 32-bit entry: {plan:?}") };
        assert_eq!(e.eip, 0x10_0020);
        assert_eq!(e.eax, BOOTLOADER_MAGIC);
        let kernel = &plan.blobs.iter().find(|(a, _)| *a == 0x10_0000).expect("kernel").1;
        assert_eq!(kernel.len(), 0x2000);
        assert_eq!(kernel[32], 0xf4);
        assert!(plan.blobs.iter().any(|(a, b)| *a == 0x10_2000 && b == &vec![7; 100]), "module after the bss");
        let mbi = &plan.blobs.iter().find(|(a, _)| *a == MBI_ADDR).expect("mbi").1;
        assert_eq!(u32_at(mbi, 20), Some(1));
        assert_eq!(u32_at(mbi, 8), Some((63 << 20) >> 10));
    }

    #[test]
    fn rejects_files_without_a_header_or_with_bad_checksums() {
        assert_eq!(load(&[0u8; 100], PcLayout::for_ram(64 << 20), "", &[], 0), Err(MultibootError::NoHeader));
        let mut img = kludge_kernel(&[0xf4]);
        img[8] ^= 1;
        assert_eq!(find_header(&img), None);
    }
}
