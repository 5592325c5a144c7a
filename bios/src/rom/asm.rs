//! A thin layer over iced-x86's `CodeAssembler` for the ROM: named labels, and the addresses
//! of labels as immediates (the IVT, data tables) through a second assembly pass.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use iced_x86::code_asm::{CodeAssembler, CodeLabel};
use iced_x86::{BlockEncoderOptions, IcedError};

/// 16-bit code with named labels. `addr(name)` is the label's offset from the previous pass
/// (0 in the first), so code that needs a label's value as a number assembles twice.
pub(crate) struct Asm {
    a: CodeAssembler,
    labels: BTreeMap<&'static str, CodeLabel>,
    known: BTreeMap<&'static str, u16>,
}

pub(crate) type R = Result<(), IcedError>;

impl Deref for Asm {
    type Target = CodeAssembler;
    fn deref(&self) -> &CodeAssembler {
        &self.a
    }
}

impl DerefMut for Asm {
    fn deref_mut(&mut self) -> &mut CodeAssembler {
        &mut self.a
    }
}

macro_rules! jumps {
    ($($name:ident => $insn:ident),* $(,)?) => {
        $(
            #[allow(dead_code)]
            pub(crate) fn $name(&mut self, label: &'static str) -> R {
                let l = self.l(label);
                self.a.$insn(l)
            }
        )*
    };
}

impl Asm {
    /// An empty 16-bit assembler; `known` holds label offsets from an earlier pass.
    pub(crate) fn new(known: BTreeMap<&'static str, u16>) -> Result<Self, IcedError> {
        Ok(Asm { a: CodeAssembler::new(16)?, labels: BTreeMap::new(), known })
    }

    /// The label called `name`, created on first use.
    pub(crate) fn l(&mut self, name: &'static str) -> CodeLabel {
        if let Some(l) = self.labels.get(name) {
            return *l;
        }
        let l = self.a.create_label();
        self.labels.insert(name, l);
        l
    }

    /// Puts label `name` on the next instruction.
    pub(crate) fn at(&mut self, name: &'static str) -> R {
        let mut l = self.l(name);
        self.a.set_label(&mut l)?;
        self.labels.insert(name, l);
        Ok(())
    }

    /// The offset of label `name` in the segment, as the previous pass placed it.
    pub(crate) fn addr(&self, name: &'static str) -> u16 {
        self.known.get(name).copied().unwrap_or(0)
    }

    jumps! {
        jmp_ => jmp, call_ => call, je_ => je, jne_ => jne, jb_ => jb, jae_ => jae, ja_ => ja,
        jbe_ => jbe, jz_ => jz, jnz_ => jnz, js_ => js, jl_ => jl, jge_ => jge,
    }

    /// Assembles at offset `ip`, returning the bytes and every label's offset.
    pub(crate) fn finish(mut self, ip: u16) -> Result<(Vec<u8>, BTreeMap<&'static str, u16>), IcedError> {
        let res = self.a.assemble_options(u64::from(ip), BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
        let mut offsets = BTreeMap::new();
        for (name, l) in &self.labels {
            let at = res.label_ip(l)?;
            offsets.insert(*name, at as u16);
        }
        Ok((res.inner.code_buffer, offsets))
    }
}
