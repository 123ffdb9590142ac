//! Sampling speed of a GGUF model on the RTP protocol's shape: k samples of `max_new` tokens
//! per prompt, the samples of a prompt decoded as one batch.
//!
//! ```text
//! cargo run --release -p detox-lm --example sample_speed -- MODEL.gguf [k] [max_new] [prompts]
//! ```

use candle_core::Device;
use detox_lm::llama::Llama;
use detox_lm::sampling::SamplingParams;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: sample_speed MODEL.gguf [k] [max_new] [prompts]")?;
    let k: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(25);
    let max_new: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let prompts: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(4);
    let t = Instant::now();
    let mode = if std::env::var_os("DETOX_LM_F32").is_some() {
        detox_lm::llama::WeightMode::F32
    } else {
        detox_lm::llama::WeightMode::AsStored
    };
    let m = Llama::load_with(path.as_ref(), &Device::Cpu, mode)?;
    println!("loaded {:?} in {:.2}s", m.config, t.elapsed().as_secs_f64());
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 0.9,
        top_k: 0,
        seed: 1,
    };
    let t = Instant::now();
    let mut tokens = 0;
    for p in 0..prompts {
        // A 12-token prompt of ordinary ids (tokenization is not part of this measurement).
        let prompt: Vec<u32> = (0..12)
            .map(|i| 1000 + (p * 37 + i * 101) as u32 % 20000)
            .collect();
        let out = detox_lm::generate(&m, &prompt, k, max_new, &[], &params, p as u64)?;
        tokens += out.iter().map(|s| s.len()).sum::<usize>();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{prompts} prompts x {k} samples x {max_new} tokens: {:.2}s, {:.1} generations/s, {:.0} tokens/s",
        secs,
        (prompts * k) as f64 / secs,
        tokens as f64 / secs
    );
    Ok(())
}
