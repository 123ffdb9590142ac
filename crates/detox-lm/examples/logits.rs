//! Prints a model's logits at every position of the token ids given, as JSON: the detox side
//! of `scripts/check_finetune_export.py`, which compares them with PyTorch `transformers` on a
//! folder `detox finetune` wrote.
//!
//!     cargo run --release -p detox-lm --example logits -- MODEL_DIR_OR_GGUF 1 2 3 ...

use candle_core::{Device, Tensor};
use detox_lm::CausalLm;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: logits MODEL ID...")?;
    let ids: Vec<u32> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    let path = Path::new(&path);
    let dev = Device::Cpu;
    let model: Box<dyn CausalLm> = if path.is_dir() {
        let c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.join("config.json"))?)?;
        match c["model_type"].as_str() {
            Some("llama") => Box::new(detox_lm::llama::Llama::load_hf(path, &dev)?),
            _ => Box::new(detox_lm::gpt2::Gpt2::load(path, &dev)?),
        }
    } else {
        Box::new(detox_lm::llama::Llama::load_with(
            path,
            &dev,
            detox_lm::llama::WeightMode::F32,
        )?)
    };
    let n = ids.len();
    let t = Tensor::from_vec(ids, (1, n), &dev)?;
    let logits = model.forward(&t, &mut model.new_cache(), true)?;
    let rows: Vec<Vec<f32>> = logits.squeeze(0)?.to_vec2()?;
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}
