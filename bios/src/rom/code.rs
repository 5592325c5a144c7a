//! The ROM's 16-bit code: POST, the interrupt services and the boot path, all in segment F000.
//!
//! Every service handler saves the caller's registers in one frame (`PUSHAD`, DS, ES) and
//! returns results by editing that frame, so a handler is free to use any register and what
//! it does not set comes back unchanged. Frame offsets from BP are in [`f`].

use iced_x86::code_asm::*;

use super::asm::{Asm, R};
use super::{RomPlan, BDA_SEG, EBDA_SEG};
use crate::linux::Entry;

/// Linear address of segment F000.
const ROM_BASE: u32 = 0xf_0000;

/// Offsets of the saved registers from BP in a service handler's frame.
mod f {
    pub const ES: i32 = 0;
    pub const BP: i32 = 12;
    pub const BX: i32 = 20;
    pub const BH: i32 = 21;
    pub const DX: i32 = 24;
    pub const CX: i32 = 28;
    pub const AX: i32 = 32;
    pub const AL: i32 = 32;
    pub const AH: i32 = 33;
    pub const FLAGS: i32 = 40;
}

const CF: i32 = 0x01;
const ZF: i32 = 0x40;
/// Screen geometry of mode 3.
const COLS: i32 = 80;
const ROWS: i32 = 25;
/// One BIOS tick in microseconds (65536 / 1.193182 MHz).
const TICK_US: i32 = 54925;
/// Ticks in a day: the counter at 0x46C wraps here and sets the midnight flag.
const TICKS_PER_DAY: i32 = 0x18_00b0;

/// Emits the whole ROM program.
pub(crate) fn emit(a: &mut Asm, plan: &RomPlan) -> R {
    post(a, plan)?;
    output(a)?;
    video(a)?;
    services(a, plan)?;
    keyboard(a)?;
    boot(a, plan)?;
    data(a, plan)
}

/// Saves the caller's registers and points BP at the frame.
fn enter(a: &mut Asm) -> R {
    a.pushad()?;
    a.push(ds)?;
    a.push(es)?;
    a.mov(bp, sp)?;
    a.cld()
}

fn set_flag(a: &mut Asm, bit: i32) -> R {
    a.or(byte_ptr(bp + f::FLAGS), bit)
}

fn clear_flag(a: &mut Asm, bit: i32) -> R {
    a.and(byte_ptr(bp + f::FLAGS), !bit & 0xff)
}

/// DS = the BIOS data area.
fn ds_bda(a: &mut Asm) -> R {
    a.mov(si, BDA_SEG)?;
    a.mov(ds, si)
}

fn post(a: &mut Asm, plan: &RomPlan) -> R {
    a.at("post")?;
    a.cli()?;
    a.cld()?;
    a.xor(ax, ax)?;
    a.mov(ss, ax)?;
    a.mov(sp, 0x7c00)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(al, 0x01)?;
    a.out(0x80, al)?;

    // A20 on through port 0x92 (never touching bit 0, the fast reset).
    a.in_(al, 0x92)?;
    a.or(al, 0x02)?;
    a.and(al, 0xfe)?;
    a.out(0x92, al)?;

    // The 8259A pair as a PC BIOS leaves it: IRQ0-7 at vectors 08h, IRQ8-15 at 70h, only
    // the timer, the keyboard and the cascade unmasked.
    for (port, icw) in [(0x20, [0x11, 0x08, 0x04, 0x01]), (0xa0, [0x11, 0x70, 0x02, 0x01])] {
        a.mov(al, icw[0])?;
        a.out(port, al)?;
        for w in &icw[1..] {
            a.mov(al, *w)?;
            a.out(port + 1, al)?;
        }
    }
    a.mov(al, 0xf8)?;
    a.out(0x21, al)?;
    a.mov(al, 0xff)?;
    a.out(0xa1, al)?;

    // PIT channel 0: mode 3, divisor 65536 -> 18.2 Hz.
    a.mov(al, 0x36)?;
    a.out(0x43, al)?;
    a.xor(al, al)?;
    a.out(0x40, al)?;
    a.out(0x40, al)?;

    // IVT: every vector at the default handler, the IRQs at handlers that send EOI.
    a.xor(di, di)?;
    a.mov(cx, 256)?;
    a.at("post_ivt")?;
    let at = i32::from(a.addr("default_int"));
    a.mov(word_ptr(di), at)?;
    a.mov(word_ptr(di + 2), 0xf000)?;
    a.add(di, 4)?;
    a.dec(cx)?;
    a.jnz_("post_ivt")?;
    for v in 0x08..0x10 {
        let at = i32::from(a.addr("irq_master"));
        a.mov(word_ptr(v * 4), at)?;
    }
    for v in 0x70..0x78 {
        let at = i32::from(a.addr("irq_slave"));
        a.mov(word_ptr(v * 4), at)?;
    }
    for (v, name) in [
        (0x08, "int08"),
        (0x09, "int09"),
        (0x10, "int10"),
        (0x11, "int11"),
        (0x12, "int12"),
        (0x13, "int13"),
        (0x15, "int15"),
        (0x16, "int16"),
        (0x18, "int18"),
        (0x19, "int19"),
        (0x1a, "int1a"),
    ] {
        let at = i32::from(a.addr(name));
        a.mov(word_ptr(v * 4), at)?;
    }
    // Vectors that hold data pointers, not code: none of those tables exist.
    for v in [0x1d, 0x1e, 0x1f, 0x41, 0x43, 0x46] {
        a.mov(dword_ptr(v * 4), 0)?;
    }

    // BDA: cleared, then the fields a PC BIOS fills.
    a.mov(di, 0x400)?;
    a.mov(cx, 0x80)?;
    a.xor(ax, ax)?;
    a.rep().stosw()?;
    a.mov(word_ptr(0x40e), EBDA_SEG)?;
    a.mov(word_ptr(0x410), i32::from(plan.equipment))?;
    // Serial ports, found as a PC BIOS finds them: a UART's scratch register keeps what is
    // written to it (an empty port reads back FFh). Their bases in 400h.., their count in
    // bits 9-11 of the equipment word.
    a.mov(bx, 0x400)?;
    for (base, skip) in [(0x3f8, "post_no_com1"), (0x2f8, "post_no_com2")] {
        a.mov(dx, base + 7)?;
        a.mov(al, 0x5a)?;
        a.out(dx, al)?;
        a.in_(al, dx)?;
        a.cmp(al, 0x5a)?;
        a.jne_(skip)?;
        a.mov(word_ptr(bx), base)?;
        a.add(bx, 2)?;
        a.add(word_ptr(0x410), 0x200)?;
        a.at(skip)?;
    }
    a.mov(word_ptr(0x413), i32::from(plan.base_kib))?;
    a.mov(word_ptr(0x41a), 0x1e)?; // keyboard buffer head
    a.mov(word_ptr(0x41c), 0x1e)?; // and tail
    a.mov(word_ptr(0x480), 0x1e)?; // buffer start
    a.mov(word_ptr(0x482), 0x3e)?; // and end
    a.mov(byte_ptr(0x496), 0x10)?; // 101/102-key keyboard
                                   // EBDA: 1 KiB, its size in its first byte.
    a.mov(ax, EBDA_SEG)?;
    a.mov(es, ax)?;
    a.xor(di, di)?;
    a.mov(cx, 0x200)?;
    a.xor(ax, ax)?;
    a.rep().stosw()?;
    a.mov(byte_ptr(0).es(), 1)?;

    // MTRRs as PC firmware sets them (SeaBIOS does the same on QEMU): RAM below 640K
    // write-back, the VGA window uncached, the ROM area write-protected, the PCI window from
    // E000_0000h uncached, write-back by default. Off while they change.
    let wrmsr = |a: &mut Asm, msr: i32, lo: u32, hi: u32| -> R {
        a.mov(ecx, msr)?;
        a.mov(eax, lo as i32)?;
        a.mov(edx, hi as i32)?;
        a.wrmsr()
    };
    wrmsr(a, 0x2ff, 0, 0)?;
    wrmsr(a, 0x250, 0x0606_0606, 0x0606_0606)?;
    wrmsr(a, 0x258, 0x0606_0606, 0x0606_0606)?;
    wrmsr(a, 0x259, 0, 0)?;
    for msr in 0x268..=0x26f {
        wrmsr(a, msr, 0x0505_0505, 0x0505_0505)?;
    }
    wrmsr(a, 0x200, 0xe000_0000, 0)?; // base, UC
    let mask = ((1u64 << softmmu::paging::DEFAULT_MAXPHYADDR) - 1) & !0x1fff_ffff;
    wrmsr(a, 0x201, (mask as u32) | 0x800, (mask >> 32) as u32)?; // 512 MiB, valid
    wrmsr(a, 0x2ff, 0xc06, 0)?; // enabled, fixed ranges enabled, default WB

    // COM1 at 115200 8N1, so the banner reaches the serial console.
    for (port, v) in [(0x3fb, 0x80), (0x3f8, 0x01), (0x3f9, 0x00), (0x3fb, 0x03)] {
        a.mov(dx, port)?;
        a.mov(al, v)?;
        a.out(dx, al)?;
    }
    // Drain whatever the keyboard controller holds.
    a.mov(cx, 16)?;
    a.at("post_kbd_drain")?;
    a.in_(al, 0x64)?;
    a.test(al, 1)?;
    a.jz_("post_kbd_done")?;
    a.in_(al, 0x60)?;
    a.dec(cx)?;
    a.jnz_("post_kbd_drain")?;
    a.at("post_kbd_done")?;
    // Video: mode 3, clear screen, cursor home.
    a.mov(ax, 0x0003)?;
    a.int(0x10)?;
    let at = i32::from(a.addr("banner"));
    a.mov(si, at)?;
    a.call_("puts_all")?;
    a.mov(al, 0x02)?;
    a.out(0x80, al)?;
    a.sti()?;
    a.int(0x19)?;
    // INT 19h does not return; if it did, halt as if nothing could boot.
    a.int(0x18)?;
    Ok(())
}

/// Character output to the screen, COM1 and the debug port 0x402.
fn output(a: &mut Asm) -> R {
    // puts_all: CS:SI, NUL-terminated.
    a.at("puts_all")?;
    a.push(ax)?;
    a.push(si)?;
    a.at("puts_next")?;
    a.mov(al, byte_ptr(si).cs())?;
    a.test(al, al)?;
    a.jz_("puts_done")?;
    a.call_("putc_all")?;
    a.inc(si)?;
    a.jmp_("puts_next")?;
    a.at("puts_done")?;
    a.pop(si)?;
    a.pop(ax)?;
    a.ret()?;

    // putc_all: AL.
    a.at("putc_all")?;
    a.push(ax)?;
    a.push(cx)?;
    a.push(dx)?;
    a.push(ax)?;
    a.call_("tty_out")?;
    a.mov(dx, 0x3fd)?;
    a.mov(cx, 0x1000)?; // a bounded wait for the transmitter
    a.at("putc_wait")?;
    a.in_(al, dx)?;
    a.test(al, 0x20)?;
    a.jnz_("putc_ready")?;
    a.dec(cx)?;
    a.jnz_("putc_wait")?;
    a.at("putc_ready")?;
    a.pop(ax)?;
    a.mov(dx, 0x3f8)?;
    a.out(dx, al)?;
    a.mov(dx, 0x402)?;
    a.out(dx, al)?;
    a.pop(dx)?;
    a.pop(cx)?;
    a.pop(ax)?;
    a.ret()
}

/// INT 10h, text mode 3 only, and the routines behind it.
fn video(a: &mut Asm) -> R {
    // cell: AL = row, AH = column -> DI = byte offset in the text buffer.
    a.at("cell")?;
    a.push(ax)?;
    a.push(bx)?;
    a.mov(bl, ah)?;
    a.mov(bh, COLS)?;
    a.mul(bh)?;
    a.mov(bh, 0)?;
    a.add(ax, bx)?;
    a.shl(ax, 1)?;
    a.mov(di, ax)?;
    a.pop(bx)?;
    a.pop(ax)?;
    a.ret()?;

    // cursor_hw: the CRTC cursor from the BDA's page-0 position.
    a.at("cursor_hw")?;
    a.push(ds)?;
    a.pushad()?;
    ds_bda(a)?;
    a.mov(ax, word_ptr(0x50))?;
    a.xchg(al, ah)?; // AL = row, AH = column
    a.call_("cell")?;
    a.shr(di, 1)?;
    a.mov(dx, 0x3d4)?;
    a.mov(al, 0x0e)?;
    a.out(dx, al)?;
    a.inc(dx)?;
    a.mov(ax, di)?;
    a.mov(al, ah)?;
    a.out(dx, al)?;
    a.dec(dx)?;
    a.mov(al, 0x0f)?;
    a.out(dx, al)?;
    a.inc(dx)?;
    a.mov(ax, di)?;
    a.out(dx, al)?;
    a.popad()?;
    a.pop(ds)?;
    a.ret()?;

    // tty_out: AL, as INT 10h AH=0Eh on page 0 (CR, LF, BS, BEL; scrolls at the bottom).
    a.at("tty_out")?;
    a.push(ds)?;
    a.push(es)?;
    a.pushad()?;
    ds_bda(a)?;
    a.mov(si, 0xb800)?;
    a.mov(es, si)?;
    a.mov(dx, word_ptr(0x50))?; // DL = column, DH = row
    a.cmp(al, 13)?;
    a.jne_("tty_not_cr")?;
    a.mov(dl, 0)?;
    a.jmp_("tty_update")?;
    a.at("tty_not_cr")?;
    a.cmp(al, 10)?;
    a.jne_("tty_not_lf")?;
    a.inc(dh)?;
    a.jmp_("tty_check")?;
    a.at("tty_not_lf")?;
    a.cmp(al, 8)?;
    a.jne_("tty_not_bs")?;
    a.test(dl, dl)?;
    a.jz_("tty_update")?;
    a.dec(dl)?;
    a.jmp_("tty_update")?;
    a.at("tty_not_bs")?;
    a.cmp(al, 7)?;
    a.je_("tty_update")?;
    a.push(ax)?;
    a.mov(al, dh)?;
    a.mov(ah, dl)?;
    a.call_("cell")?;
    a.pop(ax)?;
    a.mov(byte_ptr(di).es(), al)?;
    a.inc(dl)?;
    a.cmp(dl, COLS)?;
    a.jb_("tty_update")?;
    a.mov(dl, 0)?;
    a.inc(dh)?;
    a.at("tty_check")?;
    a.cmp(dh, ROWS)?;
    a.jb_("tty_update")?;
    a.mov(dh, ROWS - 1)?;
    a.push(dx)?;
    a.mov(ax, 0x0601)?;
    a.mov(bh, 0x07)?;
    a.xor(cx, cx)?;
    a.mov(dx, ((ROWS - 1) << 8) | (COLS - 1))?;
    a.call_("scroll")?;
    a.pop(dx)?;
    a.at("tty_update")?;
    a.mov(word_ptr(0x50), dx)?;
    a.call_("cursor_hw")?;
    a.popad()?;
    a.pop(es)?;
    a.pop(ds)?;
    a.ret()?;

    // scroll: AH = 06h (up) or 07h (down), AL = lines (0 clears), BH = fill attribute,
    // CH/CL = top row/left column, DH/DL = bottom row/right column.
    a.at("scroll")?;
    a.push(ds)?;
    a.push(es)?;
    a.pushad()?;
    a.push(bp)?;
    a.mov(bp, sp)?;
    a.cld()?;
    a.mov(si, 0xb800)?;
    a.mov(ds, si)?;
    a.mov(es, si)?;
    // Clip the window to the screen.
    a.cmp(dh, ROWS - 1)?;
    a.jbe_("scroll_dh_ok")?;
    a.mov(dh, ROWS - 1)?;
    a.at("scroll_dh_ok")?;
    a.cmp(dl, COLS - 1)?;
    a.jbe_("scroll_dl_ok")?;
    a.mov(dl, COLS - 1)?;
    a.at("scroll_dl_ok")?;
    a.cmp(ch, dh)?;
    a.ja_("scroll_done")?;
    a.cmp(cl, dl)?;
    a.ja_("scroll_done")?;
    // [bp-2] = lines, [bp-4] = width, [bp-6] = rows left; BL walks the rows.
    a.mov(bl, dh)?;
    a.sub(bl, ch)?;
    a.inc(bl)?; // height
    a.test(al, al)?;
    a.jz_("scroll_all")?;
    a.cmp(al, bl)?;
    a.jbe_("scroll_n_ok")?;
    a.at("scroll_all")?;
    a.mov(al, bl)?;
    a.at("scroll_n_ok")?;
    a.movzx(si, al)?;
    a.push(si)?; // [bp-2]
    a.mov(al, dl)?;
    a.sub(al, cl)?;
    a.inc(al)?;
    a.movzx(si, al)?;
    a.push(si)?; // [bp-4]
    a.movzx(si, bl)?;
    a.push(si)?; // [bp-6]
    a.cmp(ah, 0x07)?;
    a.je_("scroll_down")?;

    a.mov(bl, ch)?;
    a.at("scroll_up_row")?;
    a.mov(al, dh)?;
    a.sub(al, bl)?; // rows below this one in the window
    a.cmp(al, byte_ptr(bp - 2))?;
    a.jb_("scroll_up_fill")?;
    a.mov(al, bl)?;
    a.add(al, byte_ptr(bp - 2))?;
    a.call_("scroll_copy")?;
    a.jmp_("scroll_up_next")?;
    a.at("scroll_up_fill")?;
    a.call_("scroll_fill")?;
    a.at("scroll_up_next")?;
    a.inc(bl)?;
    a.dec(word_ptr(bp - 6))?;
    a.jnz_("scroll_up_row")?;
    a.jmp_("scroll_done")?;

    a.at("scroll_down")?;
    a.mov(bl, dh)?;
    a.at("scroll_down_row")?;
    a.mov(al, bl)?;
    a.sub(al, ch)?; // rows above this one in the window
    a.cmp(al, byte_ptr(bp - 2))?;
    a.jb_("scroll_down_fill")?;
    a.mov(al, bl)?;
    a.sub(al, byte_ptr(bp - 2))?;
    a.call_("scroll_copy")?;
    a.jmp_("scroll_down_next")?;
    a.at("scroll_down_fill")?;
    a.call_("scroll_fill")?;
    a.at("scroll_down_next")?;
    a.dec(bl)?;
    a.dec(word_ptr(bp - 6))?;
    a.jnz_("scroll_down_row")?;

    a.at("scroll_done")?;
    a.mov(sp, bp)?;
    a.pop(bp)?;
    a.popad()?;
    a.pop(es)?;
    a.pop(ds)?;
    a.ret()?;

    // scroll_copy: row AL to row BL, columns CL.. (width [bp-4]).
    a.at("scroll_copy")?;
    a.push(cx)?;
    a.mov(ah, cl)?;
    a.call_("cell")?;
    a.mov(si, di)?;
    a.mov(al, bl)?;
    a.call_("cell")?;
    a.mov(cx, word_ptr(bp - 4))?;
    a.rep().movsw()?;
    a.pop(cx)?;
    a.ret()?;
    // scroll_fill: row BL, columns CL.., blanks in attribute BH.
    a.at("scroll_fill")?;
    a.push(cx)?;
    a.mov(al, bl)?;
    a.mov(ah, cl)?;
    a.call_("cell")?;
    a.mov(cx, word_ptr(bp - 4))?;
    a.mov(ah, bh)?;
    a.mov(al, 0x20)?;
    a.rep().stosw()?;
    a.pop(cx)?;
    a.ret()?;

    // INT 10h.
    a.at("int10")?;
    enter(a)?;
    a.mov(si, BDA_SEG)?;
    a.mov(ds, si)?;
    for (func, label) in [
        (0x0e, "v_tty"),
        (0x00, "v_mode"),
        (0x01, "v_shape"),
        (0x02, "v_setpos"),
        (0x03, "v_getpos"),
        (0x05, "v_page"),
        (0x06, "v_scroll"),
        (0x07, "v_scroll"),
        (0x08, "v_read"),
        (0x09, "v_write"),
        (0x0a, "v_write"),
        (0x0f, "v_getmode"),
        (0x12, "v_alt"),
        (0x13, "v_string"),
        (0x1a, "v_dcc"),
    ] {
        a.cmp(ah, func)?;
        a.je_(label)?;
    }
    a.jmp_("iret_frame")?;

    a.at("v_tty")?;
    a.call_("tty_out")?;
    a.jmp_("iret_frame")?;

    // AH=00h: every mode is taken as text mode 3 (AL bit 7: keep the screen).
    a.at("v_mode")?;
    a.mov(byte_ptr(0x49), 3)?;
    a.mov(word_ptr(0x4a), COLS)?;
    a.mov(word_ptr(0x4c), 0x1000)?;
    a.mov(word_ptr(0x4e), 0)?;
    a.mov(di, 0x50)?;
    a.mov(cx, 8)?;
    a.push(ds)?;
    a.pop(es)?;
    a.push(ax)?;
    a.xor(ax, ax)?;
    a.rep().stosw()?; // the cursors of the 8 pages
    a.pop(ax)?;
    a.mov(word_ptr(0x60), 0x0607)?;
    a.mov(byte_ptr(0x62), 0)?;
    a.mov(word_ptr(0x63), 0x3d4)?;
    a.mov(byte_ptr(0x65), 0x29)?;
    a.mov(byte_ptr(0x66), 0x30)?;
    a.mov(byte_ptr(0x84), ROWS - 1)?;
    a.mov(word_ptr(0x85), 16)?;
    a.mov(byte_ptr(0x87), 0x60)?;
    a.mov(byte_ptr(0x88), 0xf9)?;
    a.mov(byte_ptr(0x89), 0x51)?;
    a.mov(byte_ptr(bp + f::AL), 0x30)?;
    a.test(al, 0x80)?;
    a.jnz_("v_mode_kept")?;
    a.mov(ax, 0xb800)?;
    a.mov(es, ax)?;
    a.xor(di, di)?;
    a.mov(cx, 0x4000)?;
    a.mov(ax, 0x0720)?;
    a.rep().stosw()?;
    a.at("v_mode_kept")?;
    a.call_("cursor_hw")?;
    a.jmp_("iret_frame")?;

    a.at("v_shape")?;
    a.mov(word_ptr(0x60), cx)?;
    a.jmp_("iret_frame")?;

    a.at("v_setpos")?;
    a.cmp(bh, 7)?;
    a.ja_("iret_frame")?;
    a.movzx(si, bh)?;
    a.shl(si, 1)?;
    a.mov(word_ptr(si + 0x50), dx)?;
    a.call_("cursor_hw")?;
    a.jmp_("iret_frame")?;

    a.at("v_getpos")?;
    a.and(bh, 7)?;
    a.movzx(si, bh)?;
    a.shl(si, 1)?;
    a.mov(ax, word_ptr(si + 0x50))?;
    a.mov(word_ptr(bp + f::DX), ax)?;
    a.mov(ax, word_ptr(0x60))?;
    a.mov(word_ptr(bp + f::CX), ax)?;
    a.jmp_("iret_frame")?;

    a.at("v_page")?;
    a.and(al, 7)?;
    a.mov(byte_ptr(0x62), al)?;
    a.jmp_("iret_frame")?;

    a.at("v_scroll")?;
    a.call_("scroll")?;
    a.jmp_("iret_frame")?;

    // AH=08h: the character and attribute under the page-0 cursor.
    a.at("v_read")?;
    a.mov(ax, word_ptr(0x50))?;
    a.xchg(al, ah)?;
    a.call_("cell")?;
    a.mov(ax, 0xb800)?;
    a.mov(es, ax)?;
    a.mov(ax, word_ptr(di).es())?;
    a.mov(word_ptr(bp + f::AX), ax)?;
    a.jmp_("iret_frame")?;

    // AH=09h/0Ah: AL CX times at the cursor (09h with attribute BL), the cursor stays.
    a.at("v_write")?;
    a.push(ax)?;
    a.mov(ax, word_ptr(0x50))?;
    a.xchg(al, ah)?;
    a.call_("cell")?;
    a.pop(ax)?;
    a.mov(si, 0xb800)?;
    a.mov(es, si)?;
    a.test(cx, cx)?;
    a.jz_("iret_frame")?;
    a.at("v_write_next")?;
    a.cmp(di, (COLS * ROWS * 2) - 1)?;
    a.jae_("iret_frame")?;
    a.mov(byte_ptr(di).es(), al)?;
    a.cmp(ah, 0x0a)?;
    a.je_("v_write_noattr")?;
    a.mov(byte_ptr(di + 1).es(), bl)?;
    a.at("v_write_noattr")?;
    a.add(di, 2)?;
    a.dec(cx)?;
    a.jnz_("v_write_next")?;
    a.jmp_("iret_frame")?;

    a.at("v_getmode")?;
    a.mov(al, byte_ptr(0x49))?;
    a.mov(ah, byte_ptr(0x4a))?;
    a.mov(word_ptr(bp + f::AX), ax)?;
    a.mov(al, byte_ptr(0x62))?;
    a.mov(byte_ptr(bp + f::BH), al)?;
    a.jmp_("iret_frame")?;

    // AH=12h BL=10h: EGA/VGA information (colour, 256 KiB, feature bits 0, switches 9).
    a.at("v_alt")?;
    a.cmp(bl, 0x10)?;
    a.jne_("iret_frame")?;
    a.mov(word_ptr(bp + f::BX), 0x0003)?;
    a.mov(word_ptr(bp + f::CX), 0x0009)?;
    a.jmp_("iret_frame")?;

    // AH=1Ah AL=00h: display combination: VGA with colour display.
    a.at("v_dcc")?;
    a.test(al, al)?;
    a.jnz_("iret_frame")?;
    a.mov(byte_ptr(bp + f::AL), 0x1a)?;
    a.mov(word_ptr(bp + f::BX), 0x0008)?;
    a.jmp_("iret_frame")?;

    // AH=13h: write string ES:BP, CX characters at row DH column DL of page 0. AL bit 0:
    // move the cursor; bit 1: the string alternates characters and attributes (else BL).
    a.at("v_string")?;
    a.mov(si, word_ptr(0x50))?;
    a.push(si)?; // [bp-2]: the cursor before
    a.mov(word_ptr(0x50), dx)?;
    a.mov(si, word_ptr(bp + f::BP))?;
    a.mov(es, word_ptr(bp + f::ES))?;
    a.mov(ah, al)?; // AH = mode
    a.test(cx, cx)?;
    a.jz_("v_string_end")?;
    a.at("v_string_next")?;
    a.mov(al, byte_ptr(si).es())?;
    a.inc(si)?;
    a.test(ah, 2)?;
    a.jz_("v_string_plain")?;
    a.mov(bl, byte_ptr(si).es())?;
    a.inc(si)?;
    a.at("v_string_plain")?;
    a.cmp(al, 0x20)?;
    a.jb_("v_string_ctl")?;
    // A printable character: written with its attribute, then advanced over by teletype.
    a.push(ax)?;
    a.push(es)?;
    a.mov(ax, word_ptr(0x50))?;
    a.xchg(al, ah)?;
    a.call_("cell")?;
    a.mov(ax, 0xb800)?;
    a.mov(es, ax)?;
    a.mov(byte_ptr(di + 1).es(), bl)?;
    a.pop(es)?;
    a.pop(ax)?;
    a.at("v_string_ctl")?;
    a.call_("tty_out")?;
    a.dec(cx)?;
    a.jnz_("v_string_next")?;
    a.at("v_string_end")?;
    a.test(byte_ptr(bp + f::AL), 1)?;
    a.jnz_("iret_frame")?;
    a.pop(si)?;
    a.mov(word_ptr(0x50), si)?;
    a.call_("cursor_hw")?;
    a.jmp_("iret_frame")
}

/// INT 08h-1Ah apart from video and keyboard, the shared frame exit, the default handlers.
fn services(a: &mut Asm, plan: &RomPlan) -> R {
    a.at("iret_frame")?;
    a.mov(sp, bp)?;
    a.pop(es)?;
    a.pop(ds)?;
    a.popad()?;
    a.iret()?;

    a.at("default_int")?;
    a.iret()?;
    a.at("irq_slave")?;
    a.push(ax)?;
    a.mov(al, 0x20)?;
    a.out(0xa0, al)?;
    a.out(0x20, al)?;
    a.pop(ax)?;
    a.iret()?;
    a.at("irq_master")?;
    a.push(ax)?;
    a.mov(al, 0x20)?;
    a.out(0x20, al)?;
    a.pop(ax)?;
    a.iret()?;

    // INT 08h (IRQ0): the tick count, the midnight flag, the user hook INT 1Ch.
    a.at("int08")?;
    a.push(ds)?;
    a.push(eax)?;
    a.mov(ax, BDA_SEG)?;
    a.mov(ds, ax)?;
    a.mov(eax, dword_ptr(0x6c))?;
    a.inc(eax)?;
    a.cmp(eax, TICKS_PER_DAY)?;
    a.jb_("int08_store")?;
    a.xor(eax, eax)?;
    a.inc(byte_ptr(0x70))?;
    a.at("int08_store")?;
    a.mov(dword_ptr(0x6c), eax)?;
    a.int(0x1c)?;
    a.mov(al, 0x20)?;
    a.out(0x20, al)?;
    a.pop(eax)?;
    a.pop(ds)?;
    a.iret()?;

    // INT 11h, INT 12h: the equipment word and the base memory size.
    for (name, off) in [("int11", 0x10), ("int12", 0x13)] {
        a.at(name)?;
        a.push(ds)?;
        a.mov(ax, BDA_SEG)?;
        a.mov(ds, ax)?;
        a.mov(ax, word_ptr(off))?;
        a.pop(ds)?;
        a.iret()?;
    }

    // INT 13h: no disks yet. Every function fails with "invalid function" (EDD's 41h too).
    a.at("int13")?;
    enter(a)?;
    a.mov(byte_ptr(bp + f::AH), 0x01)?;
    set_flag(a, CF)?;
    a.jmp_("iret_frame")?;

    // INT 15h.
    a.at("int15")?;
    enter(a)?;
    a.sti()?;
    a.cmp(eax, 0xe820)?;
    a.je_("s_e820")?;
    a.cmp(ax, 0xe801)?;
    a.je_("s_e801")?;
    for (func, label) in [(0x88, "s_ext"), (0x87, "s_move"), (0xc0, "s_config"), (0x24, "s_a20"), (0x86, "s_wait")] {
        a.cmp(ah, func)?;
        a.je_(label)?;
    }
    // Anything else (APM 53h, ...): not supported.
    a.at("s_unsupported")?;
    a.mov(byte_ptr(bp + f::AH), 0x86)?;
    set_flag(a, CF)?;
    a.jmp_("iret_frame")?;
    a.at("s_ok")?;
    a.mov(byte_ptr(bp + f::AH), 0)?;
    clear_flag(a, CF)?;
    a.jmp_("iret_frame")?;

    // E820h: EBX = index, ES:DI = buffer of ECX >= 20 bytes, EDX = 'SMAP'.
    a.at("s_e820")?;
    a.cmp(edx, 0x534d_4150)?;
    a.jne_("s_unsupported")?;
    a.cmp(ecx, 20)?;
    a.jb_("s_unsupported")?;
    a.cmp(ebx, plan.e820.len() as i32)?;
    a.jae_("s_unsupported")?;
    a.push(cs)?;
    a.pop(ds)?;
    a.imul_3(si, bx, 20)?;
    let at = i32::from(a.addr("e820_table"));
    a.add(si, at)?;
    a.mov(cx, 10)?;
    a.rep().movsw()?;
    a.inc(ebx)?;
    a.cmp(ebx, plan.e820.len() as i32)?;
    a.jb_("s_e820_more")?;
    a.xor(ebx, ebx)?;
    a.at("s_e820_more")?;
    a.mov(dword_ptr(bp + f::BX), ebx)?;
    a.mov(dword_ptr(bp + f::AX), 0x534d_4150)?;
    a.mov(dword_ptr(bp + f::CX), 20)?;
    clear_flag(a, CF)?;
    a.jmp_("iret_frame")?;

    // E801h: KiB between 1 MiB and 16 MiB, 64 KiB blocks from 16 MiB to the PCI hole.
    a.at("s_e801")?;
    a.mov(word_ptr(bp + f::AX), i32::from(plan.e801_low_kib))?;
    a.mov(word_ptr(bp + f::CX), i32::from(plan.e801_low_kib))?;
    a.mov(word_ptr(bp + f::BX), i32::from(plan.e801_high_64k))?;
    a.mov(word_ptr(bp + f::DX), i32::from(plan.e801_high_64k))?;
    clear_flag(a, CF)?;
    a.jmp_("iret_frame")?;

    // 88h: KiB above 1 MiB (as CMOS 0x30 holds it, at most 65535).
    a.at("s_ext")?;
    a.mov(word_ptr(bp + f::AX), i32::from(plan.ext_kib))?;
    clear_flag(a, CF)?;
    a.jmp_("iret_frame")?;

    // 87h: move CX words between the 24/32-bit addresses in the source (ES:SI+10h) and
    // destination (ES:SI+18h) descriptors of the caller's GDT, in 16-bit protected mode with
    // the A20 gate open (as the IBM PC/AT BIOS; the caller's table gets its GDT alias at 08h,
    // the code segment at 20h and the stack segment at 28h, which the BIOS owns). AH=0, CF=0.
    a.at("s_move")?;
    a.cli()?;
    a.cmp(cx, 0x8000)?;
    a.ja_("s_unsupported")?;
    // EAX = the table's linear address; 08h = a pseudo-descriptor of it for LGDT.
    a.xor(eax, eax)?;
    a.mov(ax, es)?;
    a.shl(eax, 4)?;
    a.movzx(ebx, si)?;
    a.add(eax, ebx)?;
    a.mov(word_ptr(si + 0x08).es(), 0x2f)?;
    a.mov(dword_ptr(si + 0x0a).es(), eax)?;
    // 20h: 16-bit code, base F0000h, limit FFFFh. 28h: 16-bit data at SS, limit FFFFh.
    a.mov(dword_ptr(si + 0x20).es(), 0x0000_ffff)?;
    a.mov(dword_ptr(si + 0x24).es(), 0x0000_9b0f)?;
    a.xor(eax, eax)?;
    a.mov(ax, ss)?;
    a.mov(dx, ax)?;
    a.shl(eax, 4)?;
    a.mov(word_ptr(si + 0x28).es(), 0xffff)?;
    a.mov(dword_ptr(si + 0x2a).es(), eax)?;
    a.mov(byte_ptr(si + 0x2d).es(), 0x93)?;
    a.mov(word_ptr(si + 0x2e).es(), 0)?;
    // The A20 gate open for the move, as it was afterwards (BL).
    a.in_(al, 0x92)?;
    a.mov(bl, al)?;
    a.or(al, 0x02)?;
    a.out(0x92, al)?;
    a.lgdt(ptr(si + 0x08).es())?;
    a.mov(eax, cr0)?;
    a.or(al, 1)?;
    a.mov(cr0, eax)?;
    let pm = a.addr("s_move_pm").to_le_bytes();
    a.db(&[0xea, pm[0], pm[1], 0x20, 0x00])?; // jmp far 20h:s_move_pm
    a.at("s_move_pm")?;
    a.mov(ax, 0x28)?;
    a.mov(ss, ax)?;
    a.mov(ax, 0x10)?;
    a.mov(ds, ax)?;
    a.mov(ax, 0x18)?;
    a.mov(es, ax)?;
    a.xor(si, si)?;
    a.xor(di, di)?;
    a.rep().movsw()?;
    a.mov(eax, cr0)?;
    a.and(al, 0xfe)?;
    a.mov(cr0, eax)?;
    let rm = a.addr("s_move_rm").to_le_bytes();
    a.db(&[0xea, rm[0], rm[1], 0x00, 0xf0])?; // jmp far F000h:s_move_rm
    a.at("s_move_rm")?;
    a.mov(ss, dx)?;
    a.mov(al, bl)?;
    a.out(0x92, al)?;
    // DS and ES come back from the frame, as real-mode segments again.
    a.jmp_("s_ok")?;

    // C0h: ES:BX = the system configuration table.
    a.at("s_config")?;
    a.mov(word_ptr(bp + f::ES), 0xf000)?;
    let at = i32::from(a.addr("config_table"));
    a.mov(word_ptr(bp + f::BX), at)?;
    a.jmp_("s_ok")?;

    // 2400h-2403h: the A20 gate through port 0x92.
    a.at("s_a20")?;
    a.cmp(al, 3)?;
    a.ja_("s_unsupported")?;
    a.je_("s_a20_query")?;
    a.cmp(al, 2)?;
    a.je_("s_a20_status")?;
    a.mov(bl, al)?;
    a.shl(bl, 1)?; // 0 -> off, 1 -> bit 1 on
    a.in_(al, 0x92)?;
    a.and(al, 0xfc)?;
    a.or(al, bl)?;
    a.out(0x92, al)?;
    a.jmp_("s_ok")?;
    a.at("s_a20_status")?;
    a.in_(al, 0x92)?;
    a.shr(al, 1)?;
    a.and(al, 1)?;
    a.mov(byte_ptr(bp + f::AL), al)?;
    a.jmp_("s_ok")?;
    a.at("s_a20_query")?;
    a.mov(word_ptr(bp + f::BX), 0x0003)?; // keyboard controller and port 0x92
    a.jmp_("s_ok")?;

    // 86h: wait CX:DX microseconds, in whole 55 ms ticks of the timer interrupt.
    a.at("s_wait")?;
    a.mov(ax, cx)?;
    a.shl(eax, 16)?;
    a.mov(ax, dx)?;
    a.add(eax, TICK_US - 1)?;
    a.jb_("s_unsupported")?;
    a.xor(edx, edx)?;
    a.mov(ecx, TICK_US)?;
    a.div(ecx)?;
    a.mov(ecx, eax)?;
    ds_bda(a)?;
    a.at("s_wait_tick")?;
    a.test(ecx, ecx)?;
    a.jz_("s_ok")?;
    a.mov(dx, word_ptr(0x6c))?;
    a.at("s_wait_hlt")?;
    a.hlt()?;
    a.cmp(dx, word_ptr(0x6c))?;
    a.je_("s_wait_hlt")?;
    a.dec(ecx)?;
    a.jmp_("s_wait_tick")?;

    // INT 1Ah: the tick count and the RTC.
    a.at("int1a")?;
    enter(a)?;
    ds_bda(a)?;
    for (func, label) in [(0x00, "t_get"), (0x01, "t_set"), (0x02, "t_time"), (0x04, "t_date")] {
        a.cmp(ah, func)?;
        a.je_(label)?;
    }
    set_flag(a, CF)?;
    a.jmp_("iret_frame")?;
    a.at("t_get")?;
    a.cli()?;
    a.mov(ax, word_ptr(0x6c))?;
    a.mov(word_ptr(bp + f::DX), ax)?;
    a.mov(ax, word_ptr(0x6e))?;
    a.mov(word_ptr(bp + f::CX), ax)?;
    a.mov(al, byte_ptr(0x70))?;
    a.mov(byte_ptr(0x70), 0)?;
    a.mov(byte_ptr(bp + f::AL), al)?;
    clear_flag(a, CF)?;
    a.jmp_("iret_frame")?;
    a.at("t_set")?;
    a.cli()?;
    a.mov(word_ptr(0x6c), dx)?;
    a.mov(word_ptr(0x6e), cx)?;
    a.mov(byte_ptr(0x70), 0)?;
    clear_flag(a, CF)?;
    a.jmp_("iret_frame")?;
    // AH=02h: CH hours, CL minutes, DH seconds (BCD), DL daylight saving.
    a.at("t_time")?;
    a.call_("rtc_wait")?;
    for (reg, frame) in [(0x04, f::CX + 1), (0x02, f::CX), (0x00, f::DX + 1)] {
        a.mov(al, reg)?;
        a.call_("cmos_read")?;
        a.mov(byte_ptr(bp + frame), al)?;
    }
    a.mov(al, 0x0b)?;
    a.call_("cmos_read")?;
    a.and(al, 1)?;
    a.mov(byte_ptr(bp + f::DX), al)?;
    clear_flag(a, CF)?;
    a.jmp_("iret_frame")?;
    // AH=04h: CH century, CL year, DH month, DL day (BCD).
    a.at("t_date")?;
    a.call_("rtc_wait")?;
    for (reg, frame) in [(0x32, f::CX + 1), (0x09, f::CX), (0x08, f::DX + 1), (0x07, f::DX)] {
        a.mov(al, reg)?;
        a.call_("cmos_read")?;
        a.mov(byte_ptr(bp + frame), al)?;
    }
    clear_flag(a, CF)?;
    a.jmp_("iret_frame")?;

    // cmos_read: AL = register -> AL = value.
    a.at("cmos_read")?;
    a.out(0x70, al)?;
    a.in_(al, 0x71)?;
    a.ret()?;
    // rtc_wait: until no update is in progress (bounded).
    a.at("rtc_wait")?;
    a.mov(cx, 0xffff)?;
    a.at("rtc_wait_loop")?;
    a.mov(al, 0x0a)?;
    a.call_("cmos_read")?;
    a.test(al, 0x80)?;
    a.jz_("rtc_wait_done")?;
    a.dec(cx)?;
    a.jnz_("rtc_wait_loop")?;
    a.at("rtc_wait_done")?;
    a.ret()
}

/// The IRQ1 handler (scan code set 1 to the BDA ring) and INT 16h.
fn keyboard(a: &mut Asm) -> R {
    // Shift-state bits at 0x417 (and their set-1 make codes).
    const RSHIFT: i32 = 0x01;
    const LSHIFT: i32 = 0x02;
    const CTRL: i32 = 0x04;
    const ALT: i32 = 0x08;
    const CAPS: i32 = 0x40;
    a.at("int09")?;
    a.push(ds)?;
    a.pushad()?;
    ds_bda(a)?;
    a.in_(al, 0x60)?;
    a.cmp(al, 0xe0)?;
    a.jne_("k_not_e0")?;
    a.or(byte_ptr(0x96), 0x02)?;
    a.jmp_("k_eoi")?;
    a.at("k_not_e0")?;
    a.mov(ah, al)?;
    a.and(ah, 0x7f)?; // AH = the key, AL bit 7 = released
                      // E0 2A / E0 36 are the "fake shifts" around grey keys, not the Shift keys.
    a.test(byte_ptr(0x96), 0x02)?;
    a.jz_("k_not_fake_shift")?;
    a.cmp(ah, 0x2a)?;
    a.je_("k_done")?;
    a.cmp(ah, 0x36)?;
    a.je_("k_done")?;
    a.at("k_not_fake_shift")?;
    for (code, bit) in [(0x2a, LSHIFT), (0x36, RSHIFT), (0x1d, CTRL), (0x38, ALT)] {
        a.mov(bl, bit)?;
        a.cmp(ah, code)?;
        a.je_("k_modifier")?;
    }
    a.test(al, 0x80)?;
    a.jnz_("k_done")?; // other releases are not reported
    a.cmp(ah, 0x3a)?;
    a.jne_("k_not_caps")?;
    a.xor(byte_ptr(0x17), CAPS)?;
    a.jmp_("k_done")?;
    a.at("k_not_caps")?;
    // A key from the grey block (E0 prefix): scan code only, ASCII 0xE0 as INT 16h 10h has it.
    a.test(byte_ptr(0x96), 0x02)?;
    a.jz_("k_translate")?;
    a.mov(al, 0xe0)?;
    a.jmp_("k_store")?;
    a.at("k_translate")?;
    a.xor(al, al)?;
    a.cmp(ah, super::KEYMAP_LEN as i32)?;
    a.jae_("k_store")?;
    a.movzx(bx, ah)?;
    a.test(byte_ptr(0x17), ALT)?;
    a.jnz_("k_store")?; // Alt+key: ASCII 0
    let at = i32::from(a.addr("keymap"));
    a.mov(al, byte_ptr(bx + at).cs())?;
    a.test(byte_ptr(0x17), CTRL)?;
    a.jz_("k_no_ctrl")?;
    a.or(al, 0x20)?;
    a.cmp(al, b'a' as i32)?;
    a.jb_("k_done")?;
    a.cmp(al, b'z' as i32)?;
    a.ja_("k_done")?;
    a.and(al, 0x1f)?;
    a.jmp_("k_store")?;
    a.at("k_no_ctrl")?;
    a.mov(cl, byte_ptr(0x17))?;
    a.test(cl, LSHIFT | RSHIFT)?;
    a.jz_("k_caps")?;
    let at = i32::from(a.addr("keymap_shift"));
    a.mov(al, byte_ptr(bx + at).cs())?;
    a.at("k_caps")?;
    // Caps Lock swaps the case of letters only.
    a.test(cl, CAPS)?;
    a.jz_("k_store")?;
    a.mov(cl, al)?;
    a.or(cl, 0x20)?;
    a.cmp(cl, b'a' as i32)?;
    a.jb_("k_store")?;
    a.cmp(cl, b'z' as i32)?;
    a.ja_("k_store")?;
    a.xor(al, 0x20)?;
    a.at("k_store")?;
    a.call_("kbd_put")?;
    a.jmp_("k_done")?;
    a.at("k_modifier")?;
    a.test(al, 0x80)?;
    a.jnz_("k_modifier_up")?;
    a.or(byte_ptr(0x17), bl)?;
    a.jmp_("k_done")?;
    a.at("k_modifier_up")?;
    a.not(bl)?;
    a.and(byte_ptr(0x17), bl)?;
    a.at("k_done")?;
    a.and(byte_ptr(0x96), 0xfd)?;
    a.at("k_eoi")?;
    a.mov(al, 0x20)?;
    a.out(0x20, al)?;
    a.popad()?;
    a.pop(ds)?;
    a.iret()?;

    // kbd_put: AX (scan code, ASCII) into the ring at DS=BDA; CF=1 when it is full.
    a.at("kbd_put")?;
    a.mov(bx, word_ptr(0x1c))?;
    a.mov(si, bx)?;
    a.add(si, 2)?;
    a.cmp(si, word_ptr(0x82))?;
    a.jb_("kbd_put_wrap")?;
    a.mov(si, word_ptr(0x80))?;
    a.at("kbd_put_wrap")?;
    a.cmp(si, word_ptr(0x1a))?;
    a.je_("kbd_put_full")?;
    a.mov(word_ptr(bx), ax)?;
    a.mov(word_ptr(0x1c), si)?;
    a.clc()?;
    a.ret()?;
    a.at("kbd_put_full")?;
    a.stc()?;
    a.ret()?;

    // INT 16h.
    a.at("int16")?;
    enter(a)?;
    ds_bda(a)?;
    for (func, label) in [
        (0x00, "kb_read"),
        (0x10, "kb_read"),
        (0x01, "kb_peek"),
        (0x11, "kb_peek"),
        (0x02, "kb_shift"),
        (0x12, "kb_shift"),
        (0x05, "kb_push"),
    ] {
        a.cmp(ah, func)?;
        a.je_(label)?;
    }
    a.jmp_("iret_frame")?;

    // 00h/10h: wait for a key, remove it. 00h reports grey keys with ASCII 0.
    a.at("kb_read")?;
    a.mov(cl, ah)?;
    a.at("kb_read_wait")?;
    a.cli()?;
    a.mov(bx, word_ptr(0x1a))?;
    a.cmp(bx, word_ptr(0x1c))?;
    a.jne_("kb_read_got")?;
    a.sti()?;
    a.hlt()?;
    a.jmp_("kb_read_wait")?;
    a.at("kb_read_got")?;
    a.mov(ax, word_ptr(bx))?;
    a.add(bx, 2)?;
    a.cmp(bx, word_ptr(0x82))?;
    a.jb_("kb_read_nowrap")?;
    a.mov(bx, word_ptr(0x80))?;
    a.at("kb_read_nowrap")?;
    a.mov(word_ptr(0x1a), bx)?;
    a.call_("kb_legacy")?;
    a.mov(word_ptr(bp + f::AX), ax)?;
    a.jmp_("iret_frame")?;

    // 01h/11h: ZF=1 when empty, else ZF=0 and AX = the next key, left in the buffer.
    a.at("kb_peek")?;
    a.mov(cl, ah)?;
    a.cli()?;
    a.mov(bx, word_ptr(0x1a))?;
    a.cmp(bx, word_ptr(0x1c))?;
    a.je_("kb_peek_empty")?;
    a.mov(ax, word_ptr(bx))?;
    a.call_("kb_legacy")?;
    a.mov(word_ptr(bp + f::AX), ax)?;
    clear_flag(a, ZF)?;
    a.jmp_("iret_frame")?;
    a.at("kb_peek_empty")?;
    set_flag(a, ZF)?;
    a.jmp_("iret_frame")?;

    // 02h: AL = shift flags; 12h: AH = the extended flags too.
    a.at("kb_shift")?;
    a.mov(al, byte_ptr(0x17))?;
    a.mov(byte_ptr(bp + f::AL), al)?;
    a.cmp(ah, 0x12)?;
    a.jne_("iret_frame")?;
    a.mov(al, byte_ptr(0x18))?;
    a.mov(byte_ptr(bp + f::AH), al)?;
    a.jmp_("iret_frame")?;

    // 05h: store CX as a keystroke; AL = 0, or 1 when the buffer is full.
    a.at("kb_push")?;
    a.cli()?;
    a.mov(ax, cx)?;
    a.call_("kbd_put")?;
    a.setb(al)?;
    a.mov(byte_ptr(bp + f::AL), al)?;
    a.jmp_("iret_frame")?;

    // kb_legacy: for the non-extended calls (CL bit 4 clear), ASCII E0h becomes 0.
    a.at("kb_legacy")?;
    a.test(cl, 0x10)?;
    a.jnz_("kb_legacy_done")?;
    a.cmp(al, 0xe0)?;
    a.jne_("kb_legacy_done")?;
    a.test(ah, ah)?;
    a.jz_("kb_legacy_done")?;
    a.xor(al, al)?;
    a.at("kb_legacy_done")?;
    a.ret()
}

/// INT 19h (bootstrap) and INT 18h (nothing to boot).
fn boot(a: &mut Asm, plan: &RomPlan) -> R {
    a.at("int19")?;
    match plan.boot {
        Some(Entry::RealMode(e)) => {
            a.cli()?;
            a.mov(ax, i32::from(e.ds))?;
            a.mov(ds, ax)?;
            a.mov(es, ax)?;
            a.mov(fs, ax)?;
            a.mov(gs, ax)?;
            a.mov(ax, i32::from(e.ss))?;
            a.mov(ss, ax)?;
            a.mov(esp, i32::from(e.sp))?;
            for r in [eax, ebx, ecx, edx, esi, edi, ebp] {
                a.xor(r, r)?;
            }
            // jmp far cs:ip
            let [ip0, ip1] = e.ip.to_le_bytes();
            let [cs0, cs1] = e.cs.to_le_bytes();
            a.db(&[0xea, ip0, ip1, cs0, cs1])?;
        }
        Some(Entry::Protected32(e)) => {
            // Flat 32-bit protected mode through the ROM's GDT (the boot protocol's
            // selectors), A20 on, interrupts off; EAX, EBX, ESI as the loader says
            // (multiboot: the magic and the information structure).
            a.cli()?;
            a.in_(al, 0x92)?;
            a.or(al, 0x02)?;
            a.out(0x92, al)?;
            let gdtr = i32::from(a.addr("boot_gdtr"));
            a.lgdt(ptr(gdtr).cs())?;
            a.mov(eax, cr0)?;
            a.or(al, 1)?;
            a.mov(cr0, eax)?;
            // jmp far BOOT_CS:boot_pm32 (a 32-bit offset: the 66h form).
            let target = (ROM_BASE + u32::from(a.addr("boot_pm32"))).to_le_bytes();
            let sel = crate::linux::BOOT_CS.to_le_bytes();
            a.db(&[0x66, 0xea, target[0], target[1], target[2], target[3], sel[0], sel[1]])?;
            // 32-bit code from here, as bytes (the assembler is 16-bit).
            a.at("boot_pm32")?;
            let mut code = vec![0xb8];
            code.extend_from_slice(&u32::from(crate::linux::BOOT_DS).to_le_bytes()); // mov eax, BOOT_DS
            code.extend_from_slice(&[0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xe0, 0x8e, 0xe8, 0x8e, 0xd0]); // mov ds/es/fs/gs/ss, ax
            code.push(0xbc); // mov esp, 7C00h
            code.extend_from_slice(&0x7c00u32.to_le_bytes());
            code.push(0x68); // push eip
            code.extend_from_slice(&e.eip.to_le_bytes());
            for (op, v) in [(0xb8, e.eax), (0xbb, e.ebx), (0xbe, e.esi)] {
                code.push(op); // mov eax/ebx/esi, imm32
                code.extend_from_slice(&v.to_le_bytes());
            }
            code.extend_from_slice(&[0x31, 0xc9, 0x31, 0xd2, 0x31, 0xff, 0x31, 0xed]); // xor ecx, edx, edi, ebp
            code.push(0xc3); // ret: to the entry
            a.db(&code)?;
        }
        Some(Entry::Firmware) | None => a.int(0x18)?,
    }
    a.at("int18")?;
    a.push(cs)?;
    a.pop(ds)?;
    let at = i32::from(a.addr("no_boot"));
    a.mov(si, at)?;
    a.call_("puts_all")?;
    a.at("halt")?;
    a.sti()?;
    a.hlt()?;
    a.jmp_("halt")
}

/// Strings and tables.
fn data(a: &mut Asm, plan: &RomPlan) -> R {
    a.at("banner")?;
    a.db(&nul_terminated(&plan.banner))?;
    a.at("no_boot")?;
    a.db(b"No bootable device.\r\n\0")?;
    // INT 15h C0h: 8 bytes follow the length: model FCh, submodel 0, revision 0, feature
    // byte 1 (second 8259, RTC, EBDA), the rest 0.
    // The 32-bit entry's GDT: null, null, flat code at BOOT_CS, flat data at BOOT_DS.
    a.at("boot_gdt")?;
    a.db(&crate::linux::boot_gdt())?;
    a.at("boot_gdtr")?;
    let base = ROM_BASE + u32::from(a.addr("boot_gdt"));
    let limit = (crate::linux::boot_gdt().len() - 1) as u16;
    a.db(&limit.to_le_bytes())?;
    a.db(&base.to_le_bytes())?;
    a.at("config_table")?;
    a.db(&[8, 0, 0xfc, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00])?;
    a.at("keymap")?;
    a.db(&super::KEYMAP)?;
    a.at("keymap_shift")?;
    a.db(&super::KEYMAP_SHIFT)?;
    a.at("e820_table")?;
    let table: Vec<u8> = plan.e820.iter().flat_map(|e| e.to_bytes()).collect();
    a.db(&table)
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}
