//! The Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 16-bit and 32-bit entry.
//!
//! [`load`] reads a bzImage's setup header, places the protected-mode kernel at 1 MiB, the
//! command line and the initrd in guest RAM, and returns a [`BootPlan`]: the bytes to copy and
//! how the kernel is entered. Two ways:
//!
//! - The 16-bit protocol ([`LinuxOptions::real_mode`], the default with cranebox's BIOS ROM):
//!   the real-mode setup code goes to 0x10000 with its header filled in as a boot loader does
//!   (type_of_loader 0xB0 as QEMU, CAN_USE_HEAP with heap_end_ptr 0xFE00, cmd_line_ptr,
//!   ramdisk_image/size), and the ROM's INT 19h jumps to 0x1020:0000 with DS = ES = SS =
//!   0x1000. The setup code then asks the BIOS for the memory map (INT 15h E820h), the video
//!   state, the keyboard, APM and EDD itself.
//! - The 32-bit protocol (no firmware, `--bios none`): a "zero page" (`struct boot_params`)
//!   with the E820 map, and the CPU started at the 32-bit entry point, which serves both
//!   32-bit and 64-bit kernels: flat 4 GiB segments (CS 0x10, data 0x18), paging and
//!   interrupts off, ESI pointing at boot_params.

use softmmu::PcLayout;
use thiserror::Error;

use crate::e820::{self, E820Entry};

/// Errors from loading a Linux kernel.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LinuxError {
    /// The file is too short to hold what its header promises.
    #[error("is truncated: {len} bytes, but the kernel needs {need}")]
    Truncated {
        /// The file's size.
        len: usize,
        /// The size its header implies.
        need: usize,
    },
    /// No "HdrS" signature at 0x202.
    #[error("is not a Linux bzImage (no \"HdrS\" setup header signature at offset 0x202)")]
    NotBzImage,
    /// The boot protocol is older than this loader supports.
    #[error("uses Linux boot protocol {major}.{minor:02}; cranebox needs 2.06 or later")]
    OldProtocol {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// A zImage (not loaded high) cannot be booted this way.
    #[error("is a zImage (LOADED_HIGH not set); only bzImage kernels are supported")]
    NotLoadedHigh,
    /// The real-mode setup code does not fit below its heap.
    #[error("has {len} bytes of real-mode setup code, more than fit in the 64 KiB setup segment")]
    SetupTooLarge {
        /// Bytes of boot sector and setup code.
        len: usize,
    },
    /// The command line is longer than the kernel accepts.
    #[error("command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The kernel's cmdline_size.
        max: usize,
    },
    /// Guest memory is too small for the kernel.
    #[error("needs {need:#x} bytes of low memory to decompress, but the machine has {have:#x}")]
    KernelTooLarge {
        /// Bytes needed below 4 GiB.
        need: u64,
        /// RAM below 4 GiB.
        have: u64,
    },
    /// The initrd does not fit between the kernel and the top of usable memory.
    #[error("initrd of {size} bytes does not fit in guest memory above the kernel (room for {room} bytes)")]
    InitrdTooLarge {
        /// The initrd's size.
        size: u64,
        /// The room there is.
        room: u64,
    },
}

/// Where the loader puts its pieces in low memory.
pub const GDT_ADDR: u64 = 0x1000;
/// boot_params ("zero page").
pub const BOOT_PARAMS_ADDR: u64 = 0x1_0000;
/// The kernel command line.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Where the protected-mode kernel is loaded.
pub const KERNEL_ADDR: u64 = 0x10_0000;
/// Where the 16-bit protocol's real-mode kernel (boot sector and setup code) goes.
pub const REAL_MODE_ADDR: u64 = 0x1_0000;
/// The end of the setup heap (from the start of the real-mode kernel), less 0x200 as the
/// protocol writes it: the heap and the stack fill the rest of the 64 KiB segment.
pub const HEAP_END_PTR: u16 = 0xfe00;
/// type_of_loader: "undefined" version 0 of an unregistered loader, as QEMU writes it.
pub const TYPE_OF_LOADER: u8 = 0xb0;
/// The flat code selector of the 32-bit boot protocol.
pub const BOOT_CS: u16 = 0x10;
/// The flat data selector of the 32-bit boot protocol.
pub const BOOT_DS: u16 = 0x18;

/// Offsets in the bzImage and in boot_params (the header sits at the same place in both).
mod off {
    pub const SETUP_SECTS: usize = 0x1f1;
    #[cfg(test)]
    pub const BOOT_FLAG: usize = 0x1fe;
    pub const JUMP: usize = 0x200;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const CODE32_START: usize = 0x214;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE: usize = 0x234;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    // boot_params fields outside the setup header.
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    pub const ALT_MEM_K: usize = 0x1e0;
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const E820_TABLE: usize = 0x2d0;
    pub const E820_MAX: usize = 128;
}

/// Fills boot_params.screen_info (at offset 0) as a VGA BIOS in mode 3 reports it to the
/// real-mode setup code, which a 32-bit entry skips: 80x25 colour text, a VGA (`isVGA` 1), an
/// EGA/VGA colour card with 256 KiB (INT 10h AH=12h BL=10h: BH 0, BL 3), 16-line characters,
/// the cursor at the top left. Linux's vgacon takes the text console from these.
fn put_vga_text_screen_info(bp: &mut [u8]) {
    const ORIG_X: usize = 0x00;
    const ORIG_Y: usize = 0x01;
    const ORIG_VIDEO_MODE: usize = 0x06;
    const ORIG_VIDEO_COLS: usize = 0x07;
    const ORIG_VIDEO_EGA_BX: usize = 0x0a;
    const ORIG_VIDEO_LINES: usize = 0x0e;
    const ORIG_VIDEO_IS_VGA: usize = 0x0f;
    const ORIG_VIDEO_POINTS: usize = 0x10;
    bp[ORIG_X] = 0;
    bp[ORIG_Y] = 0;
    bp[ORIG_VIDEO_MODE] = 3;
    bp[ORIG_VIDEO_COLS] = 80;
    put_u16(bp, ORIG_VIDEO_EGA_BX, 0x0003);
    bp[ORIG_VIDEO_LINES] = 25;
    bp[ORIG_VIDEO_IS_VGA] = 1;
    put_u16(bp, ORIG_VIDEO_POINTS, 16);
}

/// loadflags: the protected-mode code is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 1 << 0;
/// loadflags: heap_end_ptr is valid.
pub const CAN_USE_HEAP: u8 = 1 << 7;
/// xloadflags: the kernel has the 64-bit entry point at 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from(u32_at(b, o)) | (u64::from(u32_at(b, o + 4)) << 32)
}
fn put_u16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// The setup header fields the loader uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    /// Boot protocol version (0x0206 = 2.06).
    pub version: u16,
    /// 512-byte sectors of real-mode setup code after the boot sector.
    pub setup_sects: u8,
    /// LOADED_HIGH and friends.
    pub loadflags: u8,
    /// XLF_KERNEL_64 and friends (protocol 2.12).
    pub xloadflags: u16,
    /// The highest address the initrd may occupy.
    pub initrd_addr_max: u32,
    /// Required alignment of a relocated kernel (2.05).
    pub kernel_alignment: u32,
    /// Whether the kernel may be loaded anywhere (2.05).
    pub relocatable: bool,
    /// Longest command line, without its NUL (2.06).
    pub cmdline_size: u32,
    /// The kernel's preferred load address (2.10).
    pub pref_address: u64,
    /// Memory the kernel needs from its load address to decompress (2.10).
    pub init_size: u32,
    /// Bytes of the header to copy into boot_params (0x1f1 up to the end the jump at 0x200 implies).
    pub header_end: usize,
}

impl SetupHeader {
    /// Parses the setup header of `image`.
    pub fn parse(image: &[u8]) -> Result<Self, LinuxError> {
        if image.len() < off::HEADER + 4 {
            return Err(LinuxError::Truncated { len: image.len(), need: 0x264 });
        }
        if &image[off::HEADER..off::HEADER + 4] != b"HdrS" {
            return Err(LinuxError::NotBzImage);
        }
        let version = u16_at(image, off::VERSION);
        if version < 0x0206 {
            return Err(LinuxError::OldProtocol { major: (version >> 8) as u8, minor: version as u8 });
        }
        // The header ends where the jump at 0x200 lands (a short jump: EB xx).
        let header_end = (0x202 + usize::from(image[off::JUMP + 1])).clamp(0x264, 0x290);
        if image.len() < header_end {
            return Err(LinuxError::Truncated { len: image.len(), need: header_end });
        }
        let setup_sects = image[off::SETUP_SECTS];
        let (pref_address, init_size) = if version >= 0x020a {
            (u64_at(image, off::PREF_ADDRESS), u32_at(image, off::INIT_SIZE))
        } else {
            (KERNEL_ADDR, 0)
        };
        Ok(SetupHeader {
            version,
            setup_sects,
            loadflags: image[off::LOADFLAGS],
            xloadflags: if version >= 0x020c { u16_at(image, off::XLOADFLAGS) } else { 0 },
            initrd_addr_max: u32_at(image, off::INITRD_ADDR_MAX),
            kernel_alignment: u32_at(image, off::KERNEL_ALIGNMENT),
            relocatable: image[off::RELOCATABLE] != 0,
            cmdline_size: u32_at(image, off::CMDLINE_SIZE),
            pref_address,
            init_size,
            header_end,
        })
    }

    /// Where the protected-mode kernel starts in the file.
    pub fn kernel_offset(&self) -> usize {
        (usize::from(if self.setup_sects == 0 { 4 } else { self.setup_sects }) + 1) * 512
    }
}

/// Whether `image` looks like a Linux kernel with a setup header.
pub fn is_bzimage(image: &[u8]) -> bool {
    image.get(off::HEADER..off::HEADER + 4) == Some(b"HdrS")
}

/// The CPU state a direct-booted kernel starts in: 32-bit protected mode, flat segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry32 {
    /// EIP.
    pub eip: u32,
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ESI.
    pub esi: u32,
    /// The GDT's base (it holds flat code at [`BOOT_CS`] and flat data at [`BOOT_DS`]).
    pub gdt_base: u32,
    /// The GDT's limit.
    pub gdt_limit: u16,
}

/// A real-mode entry: CS:IP, DS (= ES = FS = GS), SS:SP; interrupts off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealModeEntry {
    /// CS.
    pub cs: u16,
    /// IP.
    pub ip: u16,
    /// DS, ES, FS and GS.
    pub ds: u16,
    /// SS.
    pub ss: u16,
    /// SP.
    pub sp: u16,
}

/// How a loaded kernel is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The machine puts the CPU here itself at power-on and after a reset; no firmware runs.
    Protected32(Entry32),
    /// The firmware runs first: cranebox's BIOS ROM, built with this entry
    /// ([`crate::rom::build`]), jumps here from INT 19h after POST.
    RealMode(RealModeEntry),
    /// The firmware runs first and enters the kernel itself: cranebox's BIOS ROM was built
    /// with the kernel's [`Entry::Protected32`] and takes it after POST (as QEMU's multiboot
    /// option ROM does).
    Firmware,
}

/// What a loader hands the machine: bytes to place in RAM and how the kernel starts.
#[derive(Clone, PartialEq, Eq)]
pub struct BootPlan {
    /// (physical address, bytes) pairs, copied in order.
    pub blobs: Vec<(u64, Vec<u8>)>,
    /// The entry.
    pub entry: Entry,
}

impl std::fmt::Debug for BootPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let blobs: Vec<(String, usize)> = self.blobs.iter().map(|(a, b)| (format!("{a:#x}"), b.len())).collect();
        f.debug_struct("BootPlan").field("blobs", &blobs).field("entry", &self.entry).finish()
    }
}

/// A GDT with the boot protocol's flat segments: null, unused, code at 0x10, data at 0x18.
pub fn boot_gdt() -> Vec<u8> {
    let entries: [u64; 4] = [0, 0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// The BDA words Linux reads: the EBDA segment (0x40E) and the base memory size in KiB (0x413).
pub fn bda_blobs() -> Vec<(u64, Vec<u8>)> {
    vec![
        (0x40e, ((e820::EBDA_BASE >> 4) as u16).to_le_bytes().to_vec()),
        (0x413, ((e820::EBDA_BASE >> 10) as u16).to_le_bytes().to_vec()),
    ]
}

/// Places `size` bytes of initrd as high as it can go: page-aligned, ending at or below
/// `limit` (exclusive), starting at or above `floor`.
pub fn place_initrd(size: u64, floor: u64, limit: u64) -> Result<u64, LinuxError> {
    let room = limit.saturating_sub(floor);
    let addr = limit.checked_sub(size).map(|a| a & !0xfff);
    match addr {
        Some(a) if a >= floor => Ok(a),
        _ => Err(LinuxError::InitrdTooLarge { size, room }),
    }
}

/// Options of a Linux boot.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxOptions<'a> {
    /// The initrd image, if any.
    pub initrd: Option<&'a [u8]>,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// Where the ACPI RSDP is, for kernels with protocol 2.14 or later (0: let it scan).
    pub rsdp_addr: u64,
    /// Bytes of firmware mapped below 4 GiB (marked reserved in the memory map).
    pub firmware_len: u64,
    /// Bytes at the top of low RAM that hold ACPI tables: E820 ACPI, not RAM, and kept clear
    /// of the initrd.
    pub top_reserved: u64,
    /// Enter through the real-mode setup code from cranebox's BIOS ROM (the 16-bit boot
    /// protocol) instead of at the 32-bit entry point.
    pub real_mode: bool,
}

/// Prepares `image` to boot on a machine with `layout`'s memory.
pub fn load(image: &[u8], layout: PcLayout, opts: &LinuxOptions<'_>) -> Result<BootPlan, LinuxError> {
    let hdr = SetupHeader::parse(image)?;
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(LinuxError::NotLoadedHigh);
    }
    let koff = hdr.kernel_offset();
    if image.len() <= koff {
        return Err(LinuxError::Truncated { len: image.len(), need: koff + 1 });
    }
    if opts.real_mode && koff > usize::from(HEAP_END_PTR) {
        return Err(LinuxError::SetupTooLarge { len: koff });
    }
    let kernel = &image[koff..];
    let cmdline = opts.cmdline.as_bytes();
    if cmdline.len() > hdr.cmdline_size as usize {
        return Err(LinuxError::CmdlineTooLong { len: cmdline.len(), max: hdr.cmdline_size as usize });
    }
    // The kernel decompresses to its preferred address (a relocatable kernel loaded below it
    // moves there), needing init_size bytes from there.
    let decompress_base = hdr.pref_address.max(KERNEL_ADDR);
    let kernel_end = (KERNEL_ADDR + kernel.len() as u64).max(decompress_base + u64::from(hdr.init_size));
    let usable_top = layout.below_4g.saturating_sub(opts.top_reserved);
    if kernel_end > usable_top {
        return Err(LinuxError::KernelTooLarge { need: kernel_end, have: usable_top });
    }

    let initrd_at = match opts.initrd {
        Some(initrd) => {
            let max = if hdr.initrd_addr_max == 0 { 0x37ff_ffff } else { hdr.initrd_addr_max };
            let limit = usable_top.min(u64::from(max) + 1);
            Some((place_initrd(initrd.len() as u64, kernel_end, limit)?, initrd))
        }
        None => None,
    };
    let mut line = cmdline.to_vec();
    line.push(0);

    if opts.real_mode {
        // The boot sector and setup code, with the loader's fields of the header filled in.
        let mut setup = image[..koff].to_vec();
        setup[off::TYPE_OF_LOADER] = TYPE_OF_LOADER;
        setup[off::LOADFLAGS] = (hdr.loadflags | CAN_USE_HEAP) & !(1 << 5); // keep early messages
        put_u16(&mut setup, off::HEAP_END_PTR, HEAP_END_PTR);
        put_u32(&mut setup, off::CMD_LINE_PTR, CMDLINE_ADDR as u32);
        let mut blobs = vec![(REAL_MODE_ADDR, setup), (CMDLINE_ADDR, line), (KERNEL_ADDR, kernel.to_vec())];
        if let Some((at, initrd)) = initrd_at {
            let Ok(size) = u32::try_from(initrd.len()) else {
                return Err(LinuxError::InitrdTooLarge { size: initrd.len() as u64, room: u64::from(u32::MAX) });
            };
            let setup = &mut blobs[0].1;
            put_u32(setup, off::RAMDISK_IMAGE, at as u32);
            put_u32(setup, off::RAMDISK_SIZE, size);
            blobs.push((at, initrd.to_vec()));
        }
        let seg = (REAL_MODE_ADDR >> 4) as u16;
        return Ok(BootPlan {
            blobs,
            entry: Entry::RealMode(RealModeEntry { cs: seg + 0x20, ip: 0, ds: seg, ss: seg, sp: 0xfff0 }),
        });
    }

    let mut bp = vec![0u8; 4096];
    bp[off::SETUP_SECTS..hdr.header_end].copy_from_slice(&image[off::SETUP_SECTS..hdr.header_end]);
    bp[off::TYPE_OF_LOADER] = 0xff;
    bp[off::LOADFLAGS] = (hdr.loadflags | CAN_USE_HEAP) & !(1 << 5); // keep early messages
                                                                     // The heap ends at the top of the 64 KiB real-mode segment (unused by the 32-bit entry).
    put_u16(&mut bp, off::HEAP_END_PTR, 0xfe00);
    put_u32(&mut bp, off::CODE32_START, KERNEL_ADDR as u32);
    put_u32(&mut bp, off::CMD_LINE_PTR, CMDLINE_ADDR as u32);
    put_u32(&mut bp, off::EXT_CMD_LINE_PTR, 0);
    put_vga_text_screen_info(&mut bp);

    let mut blobs = vec![(GDT_ADDR, boot_gdt())];
    blobs.extend(bda_blobs());
    blobs.push((CMDLINE_ADDR, line));
    blobs.push((KERNEL_ADDR, kernel.to_vec()));

    if let Some((at, initrd)) = initrd_at {
        put_u32(&mut bp, off::RAMDISK_IMAGE, at as u32);
        put_u32(&mut bp, off::RAMDISK_SIZE, initrd.len() as u32);
        put_u32(&mut bp, off::EXT_RAMDISK_IMAGE, (at >> 32) as u32);
        put_u32(&mut bp, off::EXT_RAMDISK_SIZE, ((initrd.len() as u64) >> 32) as u32);
        blobs.push((at, initrd.to_vec()));
    }

    let mut map = e820::memory_map(layout, opts.firmware_len);
    if opts.top_reserved > 0 {
        if let Some(e) = map.iter_mut().find(|e| e.kind == e820::E820_RAM && e.addr + e.size == layout.below_4g) {
            e.size -= opts.top_reserved;
        }
        map.push(E820Entry { addr: usable_top, size: opts.top_reserved, kind: e820::E820_ACPI });
        map.sort_by_key(|e| e.addr);
    }
    let n = map.len().min(off::E820_MAX);
    bp[off::E820_ENTRIES] = n as u8;
    for (i, e) in map.iter().take(n).enumerate() {
        let o = off::E820_TABLE + i * 20;
        bp[o..o + 20].copy_from_slice(&e.to_bytes());
    }
    // Extended memory in KiB above 1 MiB, for old kernels that ignore E820.
    put_u32(&mut bp, off::ALT_MEM_K, ((layout.below_4g.saturating_sub(1 << 20)) >> 10) as u32);
    if hdr.version >= 0x020e && opts.rsdp_addr != 0 {
        bp[off::ACPI_RSDP_ADDR..off::ACPI_RSDP_ADDR + 8].copy_from_slice(&opts.rsdp_addr.to_le_bytes());
    }
    blobs.push((BOOT_PARAMS_ADDR, bp));

    let gdt_limit = (boot_gdt().len() - 1) as u16;
    Ok(BootPlan {
        blobs,
        entry: Entry::Protected32(Entry32 {
            eip: KERNEL_ADDR as u32,
            eax: 0,
            ebx: 0,
            esi: BOOT_PARAMS_ADDR as u32,
            gdt_base: GDT_ADDR as u32,
            gdt_limit,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal bzImage: 4 setup sectors + boot sector, then `payload` as the kernel.
    pub(crate) fn fake_bzimage(version: u16, payload: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 5 * 512];
        img[off::SETUP_SECTS] = 4;
        put_u16(&mut img, off::BOOT_FLAG, 0xaa55);
        img[off::JUMP] = 0xeb;
        img[off::JUMP + 1] = 0x66; // header ends at 0x268
        img[off::HEADER..off::HEADER + 4].copy_from_slice(b"HdrS");
        put_u16(&mut img, off::VERSION, version);
        img[off::LOADFLAGS] = LOADED_HIGH;
        put_u32(&mut img, off::CODE32_START, 0x10_0000);
        put_u32(&mut img, off::INITRD_ADDR_MAX, 0x7fff_ffff);
        put_u32(&mut img, off::KERNEL_ALIGNMENT, 0x20_0000);
        img[off::RELOCATABLE] = 1;
        put_u16(&mut img, off::XLOADFLAGS, XLF_KERNEL_64);
        put_u32(&mut img, off::CMDLINE_SIZE, 2047);
        img[off::PREF_ADDRESS..off::PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
        put_u32(&mut img, off::INIT_SIZE, 0x200_0000);
        img.extend_from_slice(payload);
        img
    }

    fn plan_blob(plan: &BootPlan, addr: u64) -> &[u8] {
        &plan.blobs.iter().find(|(a, _)| *a == addr).expect("blob").1
    }

    #[test]
    fn the_16_bit_protocol_fills_the_header_of_the_setup_code_for_the_bios_to_enter() {
        let img = fake_bzimage(0x020f, &[0x90; 64]);
        let initrd = vec![7u8; 10_000];
        let ram = 128u64 << 20;
        let opts = LinuxOptions { initrd: Some(&initrd), cmdline: "quiet", real_mode: true, ..Default::default() };
        let plan = load(&img, PcLayout::for_ram(ram), &opts).expect("load");
        assert_eq!(
            plan.entry,
            Entry::RealMode(RealModeEntry { cs: 0x1020, ip: 0, ds: 0x1000, ss: 0x1000, sp: 0xfff0 })
        );
        let setup = plan_blob(&plan, REAL_MODE_ADDR);
        assert_eq!(setup.len(), 5 * 512, "boot sector and setup code only");
        assert_eq!(setup[0x210], 0xb0, "type_of_loader");
        assert_eq!(setup[0x211] & CAN_USE_HEAP, CAN_USE_HEAP);
        assert_eq!(u16_at(setup, 0x224), HEAP_END_PTR);
        assert_eq!(u32_at(setup, 0x228), CMDLINE_ADDR as u32);
        let rd = u64::from(u32_at(setup, 0x218));
        assert_eq!(u32_at(setup, 0x21c), 10_000);
        assert_eq!(plan_blob(&plan, rd), &initrd[..]);
        assert!(rd + 10_000 <= ram && rd + 10_000 > ram - 8192, "initrd at the top");
        assert_eq!(plan_blob(&plan, CMDLINE_ADDR), b"quiet\0");
        assert_eq!(plan_blob(&plan, KERNEL_ADDR), &[0x90; 64]);
        assert!(!plan.blobs.iter().any(|(a, _)| *a == BOOT_PARAMS_ADDR + 0x1000 || *a == GDT_ADDR));
        // Setup code that would run into its own heap is refused.
        let mut big = fake_bzimage(0x020f, &[0x90; 64]);
        big[off::SETUP_SECTS] = 130;
        big.resize(131 * 512 + 64, 0);
        assert_eq!(load(&big, PcLayout::for_ram(ram), &opts), Err(LinuxError::SetupTooLarge { len: 131 * 512 }));
    }

    #[test]
    fn parses_the_setup_header() {
        let h = SetupHeader::parse(&fake_bzimage(0x020f, &[0xf4])).expect("parse");
        assert_eq!(h.version, 0x020f);
        assert_eq!(h.kernel_offset(), 5 * 512);
        assert_eq!(h.xloadflags & XLF_KERNEL_64, XLF_KERNEL_64);
        assert_eq!(h.pref_address, 0x100_0000);
        assert_eq!(h.init_size, 0x200_0000);
        assert_eq!(h.cmdline_size, 2047);
        assert_eq!(h.header_end, 0x268);
        assert!(h.relocatable);
    }

    #[test]
    fn rejects_non_kernels_old_protocols_and_truncated_files() {
        assert_eq!(SetupHeader::parse(&[0u8; 4096]), Err(LinuxError::NotBzImage));
        assert!(matches!(SetupHeader::parse(&[0u8; 100]), Err(LinuxError::Truncated { .. })));
        assert_eq!(SetupHeader::parse(&fake_bzimage(0x0204, &[])), Err(LinuxError::OldProtocol { major: 2, minor: 4 }));
        let img = fake_bzimage(0x020f, &[]);
        assert!(matches!(
            load(&img, PcLayout::for_ram(128 << 20), &LinuxOptions::default()),
            Err(LinuxError::Truncated { .. })
        ));
        assert!(matches!(SetupHeader::parse(&img[..0x220]), Err(LinuxError::Truncated { .. })));
    }

    #[test]
    fn zero_page_has_the_fields_where_zero_page_rst_says() {
        let img = fake_bzimage(0x020f, &[0x90; 64]);
        let initrd = vec![0xab; 10_000];
        let opts =
            LinuxOptions { initrd: Some(&initrd), cmdline: "console=ttyS0", rsdp_addr: 0xf_0000, ..Default::default() };
        let ram = 128u64 << 20;
        let plan = load(&img, PcLayout::for_ram(ram), &opts).expect("load");
        let bp = plan_blob(&plan, BOOT_PARAMS_ADDR);
        assert_eq!(&bp[0x202..0x206], b"HdrS");
        assert_eq!(bp[0x210], 0xff, "type_of_loader");
        assert_eq!(u32_at(bp, 0x228), CMDLINE_ADDR as u32, "cmd_line_ptr");
        let rd = u32_at(bp, 0x218);
        assert_eq!(u32_at(bp, 0x21c), 10_000, "ramdisk_size");
        assert_eq!(rd % 4096, 0);
        assert!(u64::from(rd) + 10_000 <= ram && u64::from(rd) + 10_000 > ram - 8192, "initrd at the top");
        assert_eq!(u64_at(bp, 0x070), 0xf_0000, "acpi_rsdp_addr");
        assert_eq!(bp[0x1e8], 4, "e820_entries");
        assert_eq!((bp[0x06], bp[0x07], bp[0x0e], bp[0x0f]), (3, 80, 25, 1), "screen_info: mode 3, 80x25, VGA");
        assert_eq!((u16_at(bp, 0x0a), u16_at(bp, 0x10)), (3, 16), "screen_info: EGA BX, font height");
        assert_eq!(u64_at(bp, 0x2d0 + 3 * 20), 0x10_0000);
        assert_eq!(u64_at(bp, 0x2d0 + 3 * 20 + 8), ram - 0x10_0000);
        assert_eq!(u32_at(bp, 0x2d0 + 3 * 20 + 16), 1);
        assert_eq!(plan_blob(&plan, CMDLINE_ADDR), b"console=ttyS0\0");
        assert_eq!(plan_blob(&plan, KERNEL_ADDR), &[0x90; 64]);
        let Entry::Protected32(e) = plan.entry else { panic!("not a 32-bit entry: {plan:?}") };
        assert_eq!(e.esi, BOOT_PARAMS_ADDR as u32);
        assert_eq!(e.eip, 0x10_0000);
    }

    #[test]
    fn initrd_goes_high_but_below_its_limit_and_above_the_kernel() {
        assert_eq!(place_initrd(0x1800, 0x300_0000, 0x800_0000), Ok(0x7ff_e000));
        assert!(matches!(place_initrd(0x600_0000, 0x300_0000, 0x800_0000), Err(LinuxError::InitrdTooLarge { .. })));
        let img = fake_bzimage(0x020f, &[0x90; 64]);
        let big = vec![0; 100 << 20];
        let opts = LinuxOptions { initrd: Some(&big), ..Default::default() };
        // 64 MiB of RAM: the kernel decompresses up to 48 MiB, no room for 100 MiB.
        assert!(matches!(load(&img, PcLayout::for_ram(64 << 20), &opts), Err(LinuxError::InitrdTooLarge { .. })));
        assert!(matches!(
            load(&img, PcLayout::for_ram(32 << 20), &LinuxOptions::default()),
            Err(LinuxError::KernelTooLarge { .. })
        ));
    }

    #[test]
    fn acpi_area_is_marked_in_e820_and_the_initrd_stays_below_it() {
        let img = fake_bzimage(0x020f, &[0x90; 64]);
        let initrd = vec![1u8; 4096];
        let ram = 128u64 << 20;
        let opts = LinuxOptions { initrd: Some(&initrd), top_reserved: 0x1_0000, ..Default::default() };
        let plan = load(&img, PcLayout::for_ram(ram), &opts).expect("load");
        let bp = plan_blob(&plan, BOOT_PARAMS_ADDR);
        let n = usize::from(bp[0x1e8]);
        let entries: Vec<(u64, u64, u32)> = (0..n)
            .map(|i| {
                let o = 0x2d0 + i * 20;
                (u64_at(bp, o), u64_at(bp, o + 8), u32_at(bp, o + 16))
            })
            .collect();
        assert!(entries.contains(&(ram - 0x1_0000, 0x1_0000, e820::E820_ACPI)), "{entries:x?}");
        assert!(entries.contains(&(0x10_0000, ram - 0x1_0000 - 0x10_0000, e820::E820_RAM)), "{entries:x?}");
        assert_eq!(u64::from(u32_at(bp, 0x218)), ram - 0x1_0000 - 4096);
    }

    #[test]
    fn long_command_lines_are_refused() {
        let img = fake_bzimage(0x020f, &[0x90; 64]);
        let line = "x".repeat(3000);
        let opts = LinuxOptions { cmdline: &line, ..Default::default() };
        assert_eq!(
            load(&img, PcLayout::for_ram(128 << 20), &opts),
            Err(LinuxError::CmdlineTooLong { len: 3000, max: 2047 })
        );
    }
}
