//! Vectorisable CPU kernels for the two element-wise hot spots of encoder inference: exact-GELU
//! (which needs `erf`) and the attention softmax (which needs `exp`). candle calls the scalar
//! libm functions for both; these branch-free versions let the compiler use SIMD and run on
//! AVX2/FMA when the CPU has it (checked at run time), at about 1e-7 relative error.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const LOG2_E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two (Cody and Waite) so that `n * LN2_HI` is exact in f32.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` by range reduction: `x = n ln2 + r`, `|r| <= ln2/2`, `e^r` by its Taylor series
/// to degree 7 (truncation error below 2e-8), and `2^n` built from the exponent bits.
#[inline(always)]
pub fn exp(x0: f32) -> f32 {
    let x = x0.clamp(-87.0, 88.0);
    let n = (x * LOG2_E).round();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Horner form of sum r^k / k!, k = 0..=7.
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let bits = ((n as i32 + 127) as u32) << 23;
    let y = p * f32::from_bits(bits);
    // Below the normal range (masked attention logits) the answer is 0, as in libm.
    if x0 < -87.0 {
        0.0
    } else {
        y
    }
}

/// `erf(x)` with Abramowitz & Stegun's formula 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4;
    p = p * t - 1.453_152;
    p = p * t + 1.421_413_8;
    p = p * t - 0.284_496_72;
    p = p * t + 0.254_829_6;
    let y = 1.0 - p * t * exp(-a * a);
    y.copysign(x)
}

#[inline(always)]
fn gelu_erf_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

fn gelu_slice_generic(src: &[f32], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = gelu_erf_scalar(s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_slice_avx2(src: &[f32], dst: &mut [f32]) {
    gelu_slice_generic(src, dst)
}

fn gelu_slice(src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { gelu_slice_avx2(src, dst) };
        return;
    }
    gelu_slice_generic(src, dst)
}

fn softmax_rows_generic(src: &[f32], dst: &mut [f32], width: usize) {
    for (s, d) in src.chunks_exact(width).zip(dst.chunks_exact_mut(width)) {
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for (o, &v) in d.iter_mut().zip(s) {
            let e = exp(v - max);
            *o = e;
            sum += e;
        }
        let inv = 1.0 / sum;
        for o in d.iter_mut() {
            *o *= inv;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_rows_avx2(src: &[f32], dst: &mut [f32], width: usize) {
    softmax_rows_generic(src, dst, width)
}

fn softmax_rows(src: &[f32], dst: &mut [f32], width: usize) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { softmax_rows_avx2(src, dst, width) };
        return;
    }
    softmax_rows_generic(src, dst, width)
}

/// Work below this many elements runs on the calling thread.
const PAR_MIN: usize = 1 << 15;

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: input must be contiguous");
    };
    Ok(&data[start..end])
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "detox-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let mut dst = vec![0f32; src.len()];
        if src.len() >= PAR_MIN {
            let chunk = src.len().div_ceil(rayon::current_num_threads().max(1));
            dst.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(|(d, s)| gelu_slice(s, d));
        } else {
            gelu_slice(src, &mut dst);
        }
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "detox-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let width = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut dst = vec![0f32; src.len()];
        if src.len() >= PAR_MIN {
            let rows = src.len() / width;
            let per = rows.div_ceil(rayon::current_num_threads().max(1)).max(1) * width;
            dst.par_chunks_mut(per)
                .zip(src.par_chunks(per))
                .for_each(|(d, s)| softmax_rows(s, d, width));
        } else {
            softmax_rows(src, &mut dst, width);
        }
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

fn on_cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}

/// Exact (erf) GELU; the fast kernel on CPU f32, candle's elsewhere.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(x) {
        x.contiguous()?.apply_op1_no_bwd(&GeluErf)
    } else {
        x.gelu_erf()
    }
}

/// Softmax over the last dimension; the fast kernel on CPU f32, candle's elsewhere.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(x) {
        x.contiguous()?.apply_op1_no_bwd(&SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_softmax_range() {
        let mut worst = 0f64;
        let mut x = -80.0f32;
        while x < 80.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "max relative error {worst}");
        assert_eq!(exp(-1e30), 0.0);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn erf_and_gelu_are_accurate() {
        let mut worst = 0f32;
        let mut x = -6.0f32;
        while x < 6.0 {
            let want = libm_erf(x as f64) as f32;
            worst = worst.max((erf(x) - want).abs());
            x += 0.001;
        }
        assert!(worst < 5e-7, "max abs erf error {worst}");
        assert!(erf(0.0).abs() < 2e-7);
        let t = Tensor::new(&[-3.0f32, -1.0, 0.0, 0.5, 2.0, 10.0], &candle_core::Device::Cpu).unwrap();
        let ours = gelu_erf(&t).unwrap().to_vec1::<f32>().unwrap();
        let theirs = t.gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn softmax_matches_candle_including_masked_entries() {
        let data: Vec<f32> = (0..4 * 37).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
        let mut data = data;
        data[3] = f32::MIN;
        let t = Tensor::from_vec(data, (4, 37), &candle_core::Device::Cpu).unwrap();
        let ours = softmax_last_dim(&t).unwrap().to_vec2::<f32>().unwrap();
        let theirs = candle_nn::ops::softmax_last_dim(&t).unwrap().to_vec2::<f32>().unwrap();
        for (r1, r2) in ours.iter().zip(&theirs) {
            for (a, b) in r1.iter().zip(r2) {
                assert!((a - b).abs() < 1e-6);
            }
        }
        assert_eq!(ours[0][3], 0.0);
    }

    /// erf by its Taylor series (small |x|) or continued fraction (large |x|), in f64.
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let v = if a < 2.5 {
            let mut sum = 0.0;
            let mut term = a;
            let mut n = 0.0;
            while term.abs() > 1e-17 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -a * a / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(a) = exp(-a^2) / sqrt(pi) / (a + (1/2) / (a + 1 / (a + (3/2) / (a + ...)))).
            let mut f = 0.0;
            for k in (1..80).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
        };
        v.copysign(x)
    }
}
