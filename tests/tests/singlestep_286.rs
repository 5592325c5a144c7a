//! The SingleStepTests 80286 real-mode suite (recorded on a real 286) run through the
//! interpreter tier. Prints `singlestep-286-real: N passed, M failed` and fails below 99.5%.
//!
//! Exclusions are in `tests/conformance/singlestep-286-real.exclude`, one form per line with
//! the 286-versus-modern difference that justifies it. Set `CRANEBOX_CONFORMANCE` to use data
//! elsewhere, `SINGLESTEP_FORMS=80.0,F6.7` to run some forms, `SINGLESTEP_VERBOSE=N` to print
//! up to N failures per form.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use cranebox_tests::{conformance_dir, SparseBus};
use frontend_x86::{CpuState, Gpr, SegReg, Segment, Width};
use serde_json::Value;

const SUITE: &str = "singlestep-286-real";
/// FLAGS bits 12-15 are hard-wired to zero on a 286 in real mode, while a 386 or later keeps
/// IOPL and NT there. The initial state is loaded with them clear (so pushed images match) and
/// they are left out of the comparison.
const FLAGS_286_REAL: u64 = 0x0fff;

const REGS: [(&str, Gpr); 8] = [
    ("ax", Gpr::Rax),
    ("bx", Gpr::Rbx),
    ("cx", Gpr::Rcx),
    ("dx", Gpr::Rdx),
    ("sp", Gpr::Rsp),
    ("bp", Gpr::Rbp),
    ("si", Gpr::Rsi),
    ("di", Gpr::Rdi),
];
const SREGS: [(&str, SegReg); 4] = [("cs", SegReg::Cs), ("ss", SegReg::Ss), ("ds", SegReg::Ds), ("es", SegReg::Es)];

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Whether a modern CPU accepts LOCK on this 286 instruction (SDM vol. 2, LOCK): only the
/// read-modify-write forms with a memory destination. The 286 accepted LOCK on anything.
fn lock_accepted(bytes: &[u8]) -> bool {
    let Some(at) = bytes.iter().position(|b| !matches!(b, 0x26 | 0x2e | 0x36 | 0x3e | 0xf0 | 0xf2 | 0xf3)) else {
        return false;
    };
    let op = bytes[at];
    let Some(&modrm) = bytes.get(at + 1) else { return false };
    let mem = modrm >> 6 != 3;
    let reg = (modrm >> 3) & 7;
    mem && match op {
        0x00 | 0x01 | 0x08 | 0x09 | 0x10 | 0x11 | 0x18 | 0x19 | 0x20 | 0x21 | 0x28 | 0x29 | 0x30 | 0x31 => true,
        0x80..=0x83 => reg != 7,
        0x86 | 0x87 => true,
        0xf6 | 0xf7 => reg == 2 || reg == 3,
        0xfe | 0xff => reg <= 1,
        _ => false,
    }
}

/// Whether a word string instruction touches offset FFFF of a segment within its first
/// iterations (`rule:string-wrap`).
fn string_word_wraps(bytes: &[u8], regs: &Value) -> bool {
    let pre: Vec<u8> =
        bytes.iter().copied().take_while(|b| matches!(b, 0x26 | 0x2e | 0x36 | 0x3e | 0xf0 | 0xf2 | 0xf3)).collect();
    let Some(&op) = bytes.get(pre.len()) else { return false };
    let (uses_si, uses_di) = match op {
        0xa5 | 0xa7 => (true, true),
        0xab | 0xaf | 0x6d => (false, true),
        0xad | 0x6f => (true, false),
        _ => return false,
    };
    let rep = pre.iter().any(|b| matches!(b, 0xf2 | 0xf3));
    let iterations = if rep { num(&regs["cx"]).min(256) } else { 1 };
    let step: u64 = if num(&regs["flags"]) & 0x400 != 0 { 0xfffe } else { 2 };
    let (si, di) = (num(&regs["si"]), num(&regs["di"]));
    (0..iterations).any(|k| {
        let off = |r: u64| (r + k * step) & 0xffff;
        (uses_si && off(si) == 0xffff) || (uses_di && off(di) == 0xffff)
    })
}

/// Tests excluded by a rule rather than by form (each rule has its reason in the file):
/// `rule:lock-ud`, LOCK on an instruction a modern CPU answers with #UD; `rule:undefined-286`,
/// encodings the suite's metadata marks undefined on the 286; `rule:sreg-386`, MOV to or from
/// segment-register encodings the 286 lacked (FS, GS, 6, 7) or allowed (MOV CS).
fn excluded_by_rule(rules: &HashMap<String, String>, meta: &Value, form: &str, bytes: &[u8], regs: &Value) -> bool {
    if rules.contains_key("rule:string-wrap") && string_word_wraps(bytes, regs) {
        return true;
    }
    let mut prefixes = bytes.iter().take_while(|b| matches!(b, 0x26 | 0x2e | 0x36 | 0x3e | 0xf0 | 0xf2 | 0xf3));
    if rules.contains_key("rule:lock-ud") && prefixes.any(|&b| b == 0xf0) && !lock_accepted(bytes) {
        return true;
    }
    // The trailing HLT is not part of the instruction.
    if rules.contains_key("rule:length-286") && bytes.len() > 11 {
        return true;
    }
    if rules.contains_key("rule:aam-zero") && bytes.ends_with(&[0xd4, 0x00, 0xf4]) {
        return true;
    }
    let status = form_meta(meta, form, bytes).and_then(|e| e.get("status")).and_then(|s| s.as_str());
    if rules.contains_key("rule:undefined-286") && status == Some("undefined") {
        return true;
    }
    let at = bytes.iter().position(|b| !matches!(b, 0x26 | 0x2e | 0x36 | 0x3e | 0xf0 | 0xf2 | 0xf3));
    if let Some(k) = at {
        let reg = bytes.get(k + 1).map(|m| (m >> 3) & 7).unwrap_or(0);
        let sreg_386 = match bytes[k] {
            0x8c => reg >= 4,
            0x8e => reg >= 4 || reg == 1,
            _ => false,
        };
        if rules.contains_key("rule:sreg-386") && sreg_386 {
            return true;
        }
    }
    false
}

fn load_exclusions(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (form, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if reason.trim().is_empty() {
            return Err(format!("{}:{}: form {form} has no reason", path.display(), n + 1));
        }
        out.insert(form.to_string(), reason.trim().to_string());
    }
    Ok(out)
}

/// The metadata entry of a form (for group opcodes stored in one file, chosen by ModRM.reg).
fn form_meta<'a>(meta: &'a Value, form: &str, bytes: &[u8]) -> Option<&'a Value> {
    let (op, reg) = match form.split_once('.') {
        Some((o, r)) => (o.to_string(), Some(r.to_string())),
        None => (form.to_string(), None),
    };
    let entry = meta.get("opcodes").and_then(|o| o.get(&op))?;
    match entry.get("reg") {
        Some(regs) => {
            let reg = reg.unwrap_or_else(|| {
                // A group opcode stored in one file: the form is chosen by ModRM.reg.
                let at = bytes.iter().position(|b| !matches!(b, 0x26 | 0x2e | 0x36 | 0x3e | 0xf0 | 0xf2 | 0xf3));
                let modrm = at.and_then(|k| bytes.get(k + 1)).copied().unwrap_or(0);
                ((modrm >> 3) & 7).to_string()
            });
            regs.get(&reg)
        }
        None => Some(entry),
    }
}

/// The flags mask the metadata gives for a form (undefined flags are left out).
fn flags_mask(meta: &Value, form: &str, bytes: &[u8]) -> u64 {
    form_meta(meta, form, bytes).and_then(|e| e.get("flags-mask")).map(num).unwrap_or(0xffff)
}

struct Outcome {
    passed: u64,
    failed: u64,
    excluded: u64,
    first_failures: Vec<String>,
    /// The same tests again under the JIT tier (every `jit_every`-th one).
    jit_passed: u64,
    jit_failed: u64,
}

/// The execution tiers the tests run on: the interpreter (every test) and the JIT forced to
/// compile every block (every `jit_every`-th test; 0: none).
struct Tiers {
    interp: translator::Interpreter,
    jit: Option<translator::Interpreter>,
    jit_every: u64,
    seen: u64,
}

fn run_test(
    t: &Value,
    meta: &Value,
    form: &str,
    verbose: bool,
    tier: &mut translator::Interpreter,
) -> Result<(), String> {
    let init = &t["initial"];
    let fin = &t["final"];
    let bytes: Vec<u8> = t["bytes"].as_array().map(|a| a.iter().map(|b| num(b) as u8).collect()).unwrap_or_default();
    let mut cpu = CpuState::new();
    let mut bus = SparseBus::new(24);
    let regs = &init["regs"];
    for (name, g) in REGS {
        cpu.set_reg(g, Width::W64, num(&regs[name]));
    }
    for (name, s) in SREGS {
        let sel = num(&regs[name]) as u16;
        cpu.seg[s as usize] = if s == SegReg::Cs { Segment::real_mode_code(sel) } else { Segment::real_mode(sel) };
    }
    cpu.rip = num(&regs["ip"]);
    cpu.flags.set(num(&regs["flags"]) & FLAGS_286_REAL);
    cpu.idtr.base = 0;
    cpu.idtr.limit = 0x3ff;
    for pair in init["ram"].as_array().into_iter().flatten() {
        bus.mem.insert(num(&pair[0]), num(&pair[1]) as u8);
    }
    // A segment overrun on the stack is #GP (13) on a 286 and #SS (12) on a 386 or later. The
    // tests give only the vectors the 286 used, so point vector 12 at the INT 13 handler when
    // its entry is not given: the outcome must then match the recording exactly.
    for k in 0..4u64 {
        if !bus.mem.contains_key(&(12 * 4 + k)) {
            if let Some(&b) = bus.mem.get(&(13 * 4 + k)) {
                bus.mem.insert(12 * 4 + k, b);
            }
        }
    }
    let mut errs = Vec::new();
    // The cached block path, as guests run (the tier starts empty for each test).
    tier.flush(&mut cpu);
    let before = tier.stats.exceptions;
    let _ = tier.run(&mut cpu, &mut bus, 64);
    let raised = tier.stats.exceptions - before;
    if !cpu.halted {
        errs.push(format!("did not halt (shutdown: {})", cpu.shutdown));
    }
    let note = if raised == 0 { String::new() } else { format!(" ({raised} exceptions)") };
    let fregs = &fin["regs"];
    let mut want_regs: HashMap<&str, u64> = HashMap::with_capacity(14);
    for name in ["ax", "bx", "cx", "dx", "sp", "bp", "si", "di", "cs", "ss", "ds", "es", "ip", "flags"] {
        want_regs.insert(name, fregs.get(name).map(num).unwrap_or_else(|| num(&regs[name])));
    }
    let want = |name: &str| want_regs[name];
    for (name, g) in REGS {
        let got = cpu.reg(g, Width::W16);
        if got != want(name) {
            errs.push(format!("{name}={got:04x} want {:04x}", want(name)));
        }
    }
    for (name, s) in SREGS {
        let got = u64::from(cpu.seg[s as usize].selector);
        if got != want(name) {
            errs.push(format!("{name}={got:04x} want {:04x}", want(name)));
        }
    }
    if cpu.rip != want("ip") {
        errs.push(format!("ip={:04x} want {:04x}", cpu.rip, want("ip")));
    }
    let mask = flags_mask(meta, form, &bytes) & FLAGS_286_REAL;
    let gotf = cpu.flags.get() & mask;
    let wantf = want("flags") & mask;
    if gotf != wantf {
        errs.push(format!("flags={gotf:04x} want {wantf:04x} (diff {:04x})", gotf ^ wantf));
    }
    // When an exception was delivered, the FLAGS image it pushed holds the same undefined
    // flags as the register: compare it under the same mask.
    let mut byte_mask: HashMap<u64, u64> = HashMap::new();
    if raised != 0 {
        let ss_base = want("ss") << 4;
        let at = ss_base + ((want("sp") + 4) & 0xffff);
        byte_mask.insert(at & 0xff_ffff, mask & 0xff);
        byte_mask.insert((ss_base + ((want("sp") + 5) & 0xffff)) & 0xff_ffff, mask >> 8);
    }
    for pair in fin["ram"].as_array().into_iter().flatten() {
        let addr = num(&pair[0]);
        let got = bus.mem.get(&addr).copied().unwrap_or(0);
        let m = byte_mask.get(&addr).copied().unwrap_or(0xff);
        if u64::from(got) & m != num(&pair[1]) & m {
            errs.push(format!("[{addr:06x}]={got:02x} want {:02x}", num(&pair[1])));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else if verbose {
        Err(format!("{} {:02x?}{note}: {}", t["name"].as_str().unwrap_or("?"), bytes, errs.join(", ")))
    } else {
        Err(String::new())
    }
}

fn run_form(
    path: &Path,
    meta: &Value,
    form: &str,
    verbose: usize,
    rules: &HashMap<String, String>,
    tiers: &mut Tiers,
) -> Result<Outcome, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(f));
    let mut out =
        Outcome { passed: 0, failed: 0, excluded: 0, first_failures: Vec::new(), jit_passed: 0, jit_failed: 0 };
    for line in reader.lines() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let t: Value = serde_json::from_str(&line).map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes: Vec<u8> =
            t["bytes"].as_array().map(|a| a.iter().map(|b| num(b) as u8).collect()).unwrap_or_default();
        if excluded_by_rule(rules, meta, form, &bytes, &t["initial"]["regs"]) {
            out.excluded += 1;
            continue;
        }
        let interp_ok = match run_test(&t, meta, form, out.first_failures.len() < verbose, &mut tiers.interp) {
            Ok(()) => {
                out.passed += 1;
                true
            }
            Err(msg) => {
                out.failed += 1;
                if !msg.is_empty() {
                    out.first_failures.push(msg);
                }
                false
            }
        };
        tiers.seen += 1;
        if let Some(jit) = tiers.jit.as_mut() {
            if tiers.jit_every != 0 && tiers.seen.is_multiple_of(tiers.jit_every) {
                match run_test(&t, meta, form, out.first_failures.len() < verbose, jit) {
                    Ok(()) => out.jit_passed += 1,
                    Err(msg) => {
                        out.jit_failed += 1;
                        // Only what the interpreter gets right is a JIT bug.
                        if interp_ok && !msg.is_empty() {
                            out.first_failures.push(format!("(jit) {msg}"));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let dir = conformance_dir().join(SUITE);
    if !dir.join("metadata.json").exists() {
        println!("{SUITE}: SKIPPED: no test data at {} (set CRANEBOX_CONFORMANCE)", dir.display());
        return ExitCode::SUCCESS;
    }
    let meta: Value = match std::fs::read_to_string(dir.join("metadata.json"))
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            println!("{SUITE}: cannot read metadata.json: {e}");
            return ExitCode::FAILURE;
        }
    };
    let excl_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/singlestep-286-real.exclude");
    let excluded = match load_exclusions(&excl_path) {
        Ok(x) => x,
        Err(e) => {
            println!("{SUITE}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let only: Option<Vec<String>> =
        std::env::var("SINGLESTEP_FORMS").ok().map(|s| s.split(',').map(|f| f.trim().to_uppercase()).collect());
    let verbose: usize = std::env::var("SINGLESTEP_VERBOSE").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    // SINGLESTEP_JIT_EVERY=N runs every N-th test under the JIT too (default 1: all; 0: none).
    let jit_every: u64 = std::env::var("SINGLESTEP_JIT_EVERY").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let jit = if jit_every == 0 {
        None
    } else {
        match translator::Interpreter::with_jit(0) {
            Ok(j) => Some(j),
            Err(e) => {
                println!("{SUITE}: the JIT does not start on this host, interpreter only: {e}");
                None
            }
        }
    };
    let mut tiers = Tiers { interp: translator::Interpreter::new(), jit, jit_every, seen: 0 };
    let (mut jit_passed, mut jit_failed) = (0u64, 0u64);

    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(rd) => {
            rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".jsonl.gz")).collect()
        }
        Err(e) => {
            println!("{SUITE}: cannot list {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    files.sort();
    let (mut passed, mut failed, mut skipped) = (0u64, 0u64, 0u64);
    let mut per_form: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for path in &files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let form = name.trim_end_matches(".jsonl.gz").to_string();
        if let Some(o) = &only {
            if !o.contains(&form) {
                continue;
            }
        }
        if excluded.contains_key(&form) {
            let n = std::io::BufReader::new(flate2::read::GzDecoder::new(match std::fs::File::open(path) {
                Ok(f) => f,
                Err(_) => continue,
            }))
            .lines()
            .count() as u64;
            skipped += n;
            continue;
        }
        match run_form(path, &meta, &form, verbose, &excluded, &mut tiers) {
            Ok(o) => {
                jit_passed += o.jit_passed;
                jit_failed += o.jit_failed;
                skipped += o.excluded;
                passed += o.passed;
                failed += o.failed;
                if o.failed > 0 {
                    per_form.insert(form.clone(), (o.passed, o.failed));
                }
                for f in o.first_failures {
                    println!("  FAIL {form}: {f}");
                }
            }
            Err(e) => {
                println!("{SUITE}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    for (form, (p, f)) in &per_form {
        println!("  form {form}: {p} passed, {f} failed");
    }
    let total = passed + failed;
    let share_excluded = skipped as f64 / (total + skipped).max(1) as f64;
    let rules = excluded.keys().filter(|k| k.starts_with("rule:")).count();
    println!(
        "{SUITE}: excluded {skipped} tests ({:.2}%) by {} forms and {rules} rules",
        share_excluded * 100.0,
        excluded.len() - rules
    );
    println!("{SUITE}: {passed} passed, {failed} failed");
    if tiers.jit.is_some() {
        println!("{SUITE} under the JIT (every {jit_every}th test): {jit_passed} passed, {jit_failed} failed");
    }
    let rate = passed as f64 / total.max(1) as f64;
    let jit_rate = jit_passed as f64 / (jit_passed + jit_failed).max(1) as f64;
    if only.is_none() && (rate < 0.995 || jit_rate < 0.995 || share_excluded >= 0.03) {
        println!("{SUITE}: below the bar (99.5% passed, under 3% excluded)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
