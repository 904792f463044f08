//! The N-body step three ways, on the same state: a plain Rust loop (the reference, built with
//! `--release`), the Cranelift code aiic generates (one thread, then every core), and the
//! reference interpreter. Run with `cargo bench --bench nbody_step` (N = 4096 by default;
//! `NBODY_N=8192 cargo bench --bench nbody_step` for another size).

use aiic_compiler::driver::compile_file;
use aiic_compiler::ir::interp::Interp;
use aiic_compiler::sema::CheckOptions;
use aiic_runtime::backend::Backend;
use aiic_runtime::cpu::exec::CpuBackend;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const DT: f32 = 1e-3;
const EPS2: f32 = 0.05 * 0.05;

/// The step of `examples/nbody.aii`, written by hand: kick, drift, all-pairs softened gravity
/// with Newton's third law (each unordered pair once), kick.
struct Reference {
    m: Vec<f32>,
    x: [Vec<f32>; 3],
    v: [Vec<f32>; 3],
    f: [Vec<f32>; 3],
}

impl Reference {
    fn forces(&mut self) {
        let n = self.m.len();
        for d in 0..3 {
            self.f[d].fill(0.0);
        }
        let [x, y, z] = &self.x;
        let [fx, fy, fz] = &mut self.f;
        for i in 0..n {
            let (xi, yi, zi, mi) = (x[i], y[i], z[i], self.m[i]);
            let (mut ax, mut ay, mut az) = (0.0f32, 0.0f32, 0.0f32);
            for j in i + 1..n {
                let (dx, dy, dz) = (xi - x[j], yi - y[j], zi - z[j]);
                let r2 = dx * dx + dy * dy + dz * dz + EPS2;
                let inv = 1.0 / r2.sqrt();
                let s = mi * self.m[j] * inv * inv * inv;
                ax -= s * dx;
                ay -= s * dy;
                az -= s * dz;
                fx[j] += s * dx;
                fy[j] += s * dy;
                fz[j] += s * dz;
            }
            fx[i] += ax;
            fy[i] += ay;
            fz[i] += az;
        }
    }

    fn step(&mut self) {
        let n = self.m.len();
        for d in 0..3 {
            for i in 0..n {
                self.v[d][i] += 0.5 * DT * self.f[d][i] / self.m[i];
                self.x[d][i] += DT * self.v[d][i];
            }
        }
        self.forces();
        for d in 0..3 {
            for i in 0..n {
                self.v[d][i] += 0.5 * DT * self.f[d][i] / self.m[i];
            }
        }
    }
}

fn time(budget: f64, mut step: impl FnMut()) -> f64 {
    step();
    let start = Instant::now();
    let mut steps = 0u64;
    while steps < 2 || start.elapsed() < Duration::from_secs_f64(budget) {
        step();
        steps += 1;
    }
    steps as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("NBODY_N").ok().and_then(|s| s.parse().ok()).unwrap_or(4096);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/nbody.aii");
    let c = compile_file(&path, &CheckOptions::default()).expect("examples/nbody.aii is readable");
    let module = c.module.expect("examples/nbody.aii compiles");
    let mut sim = Interp::new(&module, 1);
    sim.init(&HashMap::from([("Body".to_string(), n as u64)])).expect("init");
    let world = sim.world.clone();
    let cols = &world.agents[0].columns;
    let f32s = |c: usize| cols[c].iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let mut reference = Reference {
        m: f32s(0),
        x: [f32s(1), f32s(2), f32s(3)],
        v: [f32s(4), f32s(5), f32s(6)],
        f: [f32s(7), f32s(8), f32s(9)],
    };
    let pairs = (n * (n - 1) / 2) as f64;
    let code = aiic_compiler::backend::cpu::emit_module(&module).expect("cpu code");
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());

    println!("N-body step, N = {n}, f32, {cores} cores");
    println!("{:<28} {:>10} {:>16} {:>10}", "implementation", "steps/s", "interactions/s", "vs Rust");
    let rust = time(3.0, || reference.step());
    let row =
        |name: &str, rate: f64| println!("{:<28} {:>10.2} {:>16.4e} {:>9.2}x", name, rate, rate * pairs, rate / rust);
    row("Rust reference (1 thread)", rust);
    for threads in [1, cores] {
        let mut cpu = CpuBackend::new(&module, &code, &world, threads).expect("cpu backend");
        let rate = time(3.0, || cpu.step().expect("step"));
        row(&format!("aiic cpu ({threads} thread{})", if threads == 1 { "" } else { "s" }), rate);
        if cores == 1 {
            break;
        }
    }
    let mut interp = Interp::new(&module, 1);
    interp.world = world.clone();
    let rate = time(3.0, || interp.step().expect("step"));
    row("aiic interp (f64)", rate);
}
