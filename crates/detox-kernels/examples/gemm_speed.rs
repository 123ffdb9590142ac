//! Side by side on this CPU: detox's packed matrix product vs the `gemm` crate candle uses,
//! single-threaded, on the shapes of MiniLM-L6 (batch 32 of ~40 tokens, and one short text)
//! and of SmolLM2 decoding 25 samples. Run with `DETOX_CPU=avx2` to measure the AVX2 kernel.
//!
//! `cargo run --release -p detox-kernels --example gemm_speed` compares with gemm's AVX2 kernels;
//! add `--features gemm-avx512` for its AVX-512 ones (what the detox binary links).
use detox_kernels::{cpu, PackedMatrix};
use std::time::Instant;

fn main() {
    println!("{}", cpu::describe());
    let shapes = [
        ("minilm qkv b32", 1280, 384, 1152),
        ("minilm ff1 b32", 1280, 384, 1536),
        ("minilm ff2 b32", 1280, 1536, 384),
        ("minilm qkv b1", 20, 384, 1152),
        ("minilm ff2 b1", 20, 1536, 384),
        ("smollm2 mlp decode 25", 25, 576, 1536),
        ("smollm2 down decode 25", 25, 1536, 576),
    ];
    for (name, m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let mut c = vec![0f32; m * n];
        let flop = 2.0 * (m * k * n) as f64;
        let reps = ((2e9 / flop) as usize).max(3);
        let ours = PackedMatrix::new(&b, k, n).expect("shape").map(|p| {
            p.matmul(&a, m, &mut c).expect("shape");
            let t = Instant::now();
            for _ in 0..reps {
                p.matmul(&a, m, &mut c).expect("shape");
            }
            flop * reps as f64 / t.elapsed().as_secs_f64() / 1e9
        });
        let mut c2 = vec![0f32; m * n];
        let run = |c2: &mut [f32]| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c2.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        };
        run(&mut c2);
        let t = Instant::now();
        for _ in 0..reps {
            run(&mut c2);
        }
        let theirs = flop * reps as f64 / t.elapsed().as_secs_f64() / 1e9;
        let diff = c
            .iter()
            .zip(&c2)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        match ours {
            Some(g) => println!(
                "{name:26} {m:5}x{k:5}x{n:5}  detox {g:6.1} GFLOP/s  gemm {theirs:6.1}  ratio {:.2}x  max diff {diff:.1e}",
                g / theirs
            ),
            None => println!("{name:26} gemm {theirs:6.1} GFLOP/s (detox kernels off)"),
        }
    }
}
