//! CPU kernels shared by detox's scorers and language models.
//!
//! - [`cpu`]: which instruction set detox's own kernels use. It is detected at run time and can
//!   be lowered with the `DETOX_CPU` environment variable (`avx2` on an AVX-512 machine
//!   measures and tests the AVX2 path anywhere).
//! - [`gemm`]: `C = A B` for a weight matrix `B` packed once at load time, with AVX2 + FMA and
//!   AVX-512 micro-kernels. It is what every dense layer of the encoders and of f32 decoding
//!   runs through on x86-64.
//! - [`dense`]: [`DenseWeight`], a layer's weight held packed (or as a candle tensor where the
//!   kernels do not run), with the candle operation that applies it.
//!
//! Every x86 kernel sits behind `cfg(target_arch = "x86_64")` and a run-time check; on other
//! architectures [`cpu::isa`] is [`cpu::Isa::Generic`] and callers keep candle's own kernels.

#![warn(missing_docs)]

pub mod cpu;
pub mod dense;
pub mod gemm;

pub use cpu::{isa, Isa};
pub use dense::DenseWeight;
pub use gemm::PackedMatrix;
