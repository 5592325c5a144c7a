//! Memory sizes as QEMU's `-m` reads them.
//!
//! A bare number means MiB (`512` is 512 MiB). A suffix scales by a power of 1024: `B` (bytes),
//! `K`, `M`, `G`, `T`, `P`, `E`, in either case, and a K..E suffix may be followed by `B` or `iB`
//! (`512MB`, `2GiB`). A decimal fraction is accepted as QEMU accepts it (`1.5G`); the result is
//! rounded up to a whole 4 KiB page, as QEMU rounds `-m` up to its own RAM alignment.

/// The page size guest RAM is made of.
const PAGE: u64 = 4096;
/// Digits after the decimal point beyond this are refused rather than silently dropped.
const MAX_FRACTION_DIGITS: usize = 18;

/// Why a memory size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Nothing was given.
    #[error("memory size is empty (examples: 512, 512M, 2G)")]
    Empty,
    /// The text does not start with a decimal number.
    #[error("memory size {0:?} is not a number (examples: 512, 512M, 2G)")]
    NotANumber(String),
    /// The text after the number is not a known suffix.
    #[error("memory size {text:?} has an unknown suffix {suffix:?} (use K, M, G or T)")]
    UnknownSuffix {
        /// The whole size as given.
        text: String,
        /// The part that is not a suffix.
        suffix: String,
    },
    /// The size is zero.
    #[error("memory size {0:?} is zero")]
    Zero(String),
    /// The size does not fit in 64 bits.
    #[error("memory size {0:?} is too large")]
    TooLarge(String),
}

/// Parses a memory size as QEMU's `-m` does; the result is bytes, a positive multiple of 4 KiB.
pub fn parse_mem_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(SizeError::Empty);
    }
    let not_a_number = || SizeError::NotANumber(text.to_string());
    let int_len = t.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, rest) = t.split_at(int_len);
    let (frac_part, suffix) = match rest.strip_prefix('.') {
        Some(r) => r.split_at(r.bytes().take_while(u8::is_ascii_digit).count()),
        None => ("", rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(not_a_number());
    }
    if frac_part.len() > MAX_FRACTION_DIGITS {
        return Err(not_a_number());
    }
    let shift = suffix_shift(suffix)
        .ok_or_else(|| SizeError::UnknownSuffix { text: text.to_string(), suffix: suffix.to_string() })?;
    let too_large = || SizeError::TooLarge(text.to_string());

    // Exact arithmetic in u128: value = (int * 10^n + frac) * 2^shift / 10^n, rounded up.
    let int: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| too_large())? };
    let frac: u128 = if frac_part.is_empty() { 0 } else { frac_part.parse().map_err(|_| not_a_number())? };
    let scale = 10u128.pow(frac_part.len() as u32);
    let numerator = int
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac))
        .and_then(|v| v.checked_mul(1u128 << shift))
        .ok_or_else(too_large)?;
    let bytes = numerator.div_ceil(scale);
    if bytes == 0 {
        return Err(SizeError::Zero(text.to_string()));
    }
    let pages = bytes.div_ceil(u128::from(PAGE));
    u64::try_from(pages * u128::from(PAGE)).map_err(|_| too_large())
}

/// The power of two a suffix scales by; an empty suffix means MiB.
fn suffix_shift(suffix: &str) -> Option<u32> {
    let lower = suffix.to_ascii_lowercase();
    let (unit, tail) = match lower.char_indices().nth(1) {
        Some((i, _)) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let shift = match unit {
        "" => return Some(20),
        "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        "e" => 60,
        _ => return None,
    };
    match tail {
        "" => Some(shift),
        "b" | "ib" if shift > 0 => Some(shift),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_bare_number_is_mebibytes() {
        assert_eq!(parse_mem_size("512"), Ok(512 * MIB));
        assert_eq!(parse_mem_size(" 128 "), Ok(128 * MIB));
    }

    #[test]
    fn suffixes_scale_by_powers_of_1024_in_either_case() {
        assert_eq!(parse_mem_size("512M"), Ok(512 * MIB));
        assert_eq!(parse_mem_size("512m"), Ok(512 * MIB));
        assert_eq!(parse_mem_size("2G"), Ok(2048 * MIB));
        assert_eq!(parse_mem_size("1024k"), Ok(MIB));
        assert_eq!(parse_mem_size("1T"), Ok(1 << 40));
        assert_eq!(parse_mem_size("8192B"), Ok(8192));
        assert_eq!(parse_mem_size("512MB"), Ok(512 * MIB));
        assert_eq!(parse_mem_size("2GiB"), Ok(2048 * MIB));
    }

    #[test]
    fn fractions_are_exact_and_round_up_to_a_page() {
        assert_eq!(parse_mem_size("1.5G"), Ok(1536 * MIB));
        assert_eq!(parse_mem_size("0.5"), Ok(MIB / 2));
        assert_eq!(parse_mem_size(".25G"), Ok(256 * MIB));
        assert_eq!(parse_mem_size("1000B"), Ok(4096));
        assert_eq!(parse_mem_size("4097b"), Ok(8192));
    }

    #[test]
    fn bad_sizes_are_refused_with_a_reason() {
        assert_eq!(parse_mem_size(""), Err(SizeError::Empty));
        assert!(matches!(parse_mem_size("lots"), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_mem_size("-1G"), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_mem_size("."), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_mem_size("12X"), Err(SizeError::UnknownSuffix { .. })));
        assert!(matches!(parse_mem_size("12MX"), Err(SizeError::UnknownSuffix { .. })));
        assert!(matches!(parse_mem_size("12BB"), Err(SizeError::UnknownSuffix { .. })));
        assert!(matches!(parse_mem_size("1 G"), Err(SizeError::UnknownSuffix { .. })));
        assert!(matches!(parse_mem_size("0"), Err(SizeError::Zero(_))));
        assert!(matches!(parse_mem_size("0.0G"), Err(SizeError::Zero(_))));
        assert!(matches!(parse_mem_size("16E"), Err(SizeError::TooLarge(_))));
        assert!(matches!(parse_mem_size("99999999999999999999999999999999999999999"), Err(SizeError::TooLarge(_))));
    }

    #[test]
    fn the_error_names_the_input() {
        let msg = parse_mem_size("12X").expect_err("refused").to_string();
        assert!(msg.contains("12X") && msg.contains('X'), "{msg}");
    }
}
