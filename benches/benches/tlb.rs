//! The software TLB's costs in nanoseconds: a hit (`Tlb::lookup`), a miss that walks four
//! levels of page tables and fills, and a CR3 switch (flush of non-global entries) followed by
//! the misses it causes. Run: `cargo bench -p cranebox-benches --bench tlb`.

use std::hint::black_box;
use std::time::Instant;

use softmmu::paging::{cr0, cr4, efer};
use softmmu::{Access, AccessOp, MmuMode, PagingControl, PhysMap, Tlb};

const PML4: u64 = 0x10_0000;

/// 4-level tables mapping 512 4 KiB pages at linear 0x4000_0000 onto physical 0x20_0000.
fn tables() -> Result<PhysMap, String> {
    let mut map = PhysMap::pc(64 << 20).map_err(|e| e.to_string())?;
    let put = |map: &mut PhysMap, at: u64, v: u64| map.load(at, &v.to_le_bytes()).map_err(|e| e.to_string());
    put(&mut map, PML4, 0x10_1000 | 7)?;
    put(&mut map, 0x10_1000 + 8, 0x10_2000 | 7)?; // PDPT[1] -> 1 GiB
    put(&mut map, 0x10_2000, 0x10_3000 | 7)?;
    for k in 0..512u64 {
        // Accessed and dirty already set: the measurement is the walk, not A/D write-back.
        put(&mut map, 0x10_3000 + 8 * k, (0x20_0000 + k * 4096) | 0x67)?;
    }
    Ok(map)
}

fn ns_per(iterations: u64, f: impl FnMut()) -> f64 {
    let mut f = f;
    let t = Instant::now();
    for _ in 0..iterations {
        f();
    }
    t.elapsed().as_nanos() as f64 / iterations as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut map = match tables() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("tlb bench: {e}");
            std::process::exit(1);
        }
    };
    let ctl = PagingControl::new(cr0::PG | cr0::PE, PML4, cr4::PAE, efer::LME | efer::LMA);
    let access = Access::new(AccessOp::Read, 0, false);
    let base = 0x4000_0000u64;
    let mut tlb = Tlb::new();
    for k in 0..256 {
        let _ = tlb.translate(&mut map, &ctl, base + k * 4096, access);
    }

    let hit = median(
        (0..5)
            .map(|_| {
                let mut k = 0u64;
                ns_per(20_000_000, || {
                    let lin = base + ((k & 255) << 12) + 8;
                    black_box(tlb.lookup(MmuMode::Supervisor, AccessOp::Read, black_box(lin), 4));
                    k += 1;
                })
            })
            .collect(),
    );
    let miss = median(
        (0..5)
            .map(|_| {
                let mut k = 0u64;
                ns_per(200_000, || {
                    // Two pages 256 apart share a slot: every access evicts the last one.
                    let lin = base + ((k & 1) << 20);
                    let _ = black_box(tlb.translate(&mut map, &ctl, black_box(lin), access));
                    k += 1;
                })
            })
            .collect(),
    );
    let switch = median(
        (0..5)
            .map(|_| {
                ns_per(200_000, || {
                    tlb.write_cr3(PML4, false);
                    let _ = black_box(tlb.translate(&mut map, &ctl, base, access));
                })
            })
            .collect(),
    );
    println!(
        "tlb: hit {hit:.2} ns, miss with a 4-level walk and fill {miss:.1} ns, CR3 switch + one refill {switch:.1} ns"
    );
}
