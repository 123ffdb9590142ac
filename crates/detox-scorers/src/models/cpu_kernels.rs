//! Vectorisable CPU kernels for the two element-wise hot spots of encoder inference: exact-GELU
//! (which needs `erf`) and the attention softmax (which needs `exp`). candle calls the scalar
//! libm functions for both; these branch-free versions let the compiler use SIMD and run on
//! AVX2/FMA when the CPU has it (checked at run time, [`detox_kernels::isa`]), at about 1e-7
//! relative error.

use candle_core::{CpuStorage, CustomOp1, InplaceOp1, InplaceOp2, Layout, Result, Shape, Tensor};
use detox_kernels::dense::contiguous_f32;
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
    // Round to nearest by the 1.5 * 2^23 trick (|x * log2 e| < 2^22 here), which vectorises.
    let n = (x * LOG2_E + 12_582_912.0) - 12_582_912.0;
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

#[inline(always)]
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gelu_slice_avx512(src: &[f32], dst: &mut [f32]) {
    gelu_slice_generic(src, dst)
}

fn gelu_slice(src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if detox_kernels::isa() >= detox_kernels::Isa::Avx512 {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { gelu_slice_avx512(src, dst) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if detox_kernels::isa() >= detox_kernels::Isa::Avx2 {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { gelu_slice_avx2(src, dst) };
        return;
    }
    gelu_slice_generic(src, dst)
}

#[inline(always)]
fn softmax_rows_generic(src: &[f32], dst: &mut [f32], width: usize) {
    for (s, d) in src.chunks_exact(width).zip(dst.chunks_exact_mut(width)) {
        let max = max_lanes(s);
        for (o, &v) in d.iter_mut().zip(s) {
            *o = exp(v - max);
        }
        let inv = 1.0 / sum_lanes(d);
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn softmax_rows_avx512(src: &[f32], dst: &mut [f32], width: usize) {
    softmax_rows_generic(src, dst, width)
}

fn softmax_rows(src: &[f32], dst: &mut [f32], width: usize) {
    #[cfg(target_arch = "x86_64")]
    if detox_kernels::isa() >= detox_kernels::Isa::Avx512 {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { softmax_rows_avx512(src, dst, width) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if detox_kernels::isa() >= detox_kernels::Isa::Avx2 {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { softmax_rows_avx2(src, dst, width) };
        return;
    }
    softmax_rows_generic(src, dst, width)
}

/// Work below this many elements runs on the calling thread.
const PAR_MIN: usize = 1 << 15;

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
        let t = Tensor::new(
            &[-3.0f32, -1.0, 0.0, 0.5, 2.0, 10.0],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let ours = gelu_erf(&t).unwrap().to_vec1::<f32>().unwrap();
        let theirs = t.gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    /// The AVX2 intrinsics GELU (reciprocal estimate instead of a division) against the
    /// scalar formula, over every lane position and the remainder.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_gelu_matches_the_scalar_formula() {
        if detox_kernels::isa() < detox_kernels::Isa::Avx2 {
            eprintln!("skipped: no AVX2 kernels on this CPU (or DETOX_CPU=generic)");
            return;
        }
        let xs: Vec<f32> = (0..20_003).map(|i| i as f32 * 0.001 - 10.0).collect();
        let bias: Vec<f32> = (0..xs.len()).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut got = xs.clone();
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { bias_gelu_row_avx2(&mut got, &bias) };
        let mut worst = 0f32;
        for ((g, x), b) in got.iter().zip(&xs).zip(&bias) {
            let want = libm_erf(((x + b) as f64) * std::f64::consts::FRAC_1_SQRT_2);
            let want = (0.5 * (x + b) as f64 * (1.0 + want)) as f32;
            worst = worst.max((g - want).abs() / want.abs().max(1.0));
        }
        assert!(worst < 1e-6, "worst relative GELU error {worst}");
    }

    #[test]
    fn softmax_matches_candle_including_masked_entries() {
        let data: Vec<f32> = (0..4 * 37)
            .map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let mut data = data;
        data[3] = f32::MIN;
        let t = Tensor::from_vec(data, (4, 37), &candle_core::Device::Cpu).unwrap();
        let ours = softmax_last_dim(&t).unwrap().to_vec2::<f32>().unwrap();
        let theirs = candle_nn::ops::softmax_last_dim(&t)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
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

/// Dot product with eight independent accumulators, so it vectorises without fast-math.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let (Ok(x), Ok(y)) = (<&[f32; 8]>::try_from(x), <&[f32; 8]>::try_from(y)) else {
            continue;
        };
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Largest element, with eight independent lanes (vectorises).
#[inline(always)]
fn max_lanes(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let c = xs.chunks_exact(8);
    let r = c.remainder();
    for x in c {
        if let Ok(x) = <&[f32; 8]>::try_from(x) {
            for l in 0..8 {
                acc[l] = acc[l].max(x[l]);
            }
        }
    }
    r.iter().copied().fold(
        acc.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        f32::max,
    )
}

/// Sum, with eight independent lanes (vectorises).
#[inline(always)]
fn sum_lanes(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let c = xs.chunks_exact(8);
    let r = c.remainder();
    for x in c {
        if let Ok(x) = <&[f32; 8]>::try_from(x) {
            for l in 0..8 {
                acc[l] += x[l];
            }
        }
    }
    acc.iter().sum::<f32>() + r.iter().sum::<f32>()
}

/// Self-attention of one sequence: `qkv` is [L, 3, H, D] (the fused projection's output rows),
/// keys beyond `n` are masked, `out` is [L, H * D].
#[inline(always)]
fn attend_generic(qkv: &[f32], out: &mut [f32], l: usize, n: usize, heads: usize, d: usize) {
    let hidden = heads * d;
    let n = n.max(1);
    // Per head, gather K and V into contiguous [n, d] blocks, so every inner loop is unit-stride.
    let mut k = vec![0f32; n * d];
    let mut v = vec![0f32; n * d];
    let mut p = vec![0f32; n];
    for h in 0..heads {
        for (j, (kj, vj)) in k.chunks_exact_mut(d).zip(v.chunks_exact_mut(d)).enumerate() {
            kj.copy_from_slice(&qkv[(j * 3 + 1) * hidden + h * d..][..d]);
            vj.copy_from_slice(&qkv[(j * 3 + 2) * hidden + h * d..][..d]);
        }
        for i in 0..l {
            let q = &qkv[i * 3 * hidden + h * d..][..d];
            for (pj, kj) in p.iter_mut().zip(k.chunks_exact(d)) {
                *pj = dot(q, kj);
            }
            let max = max_lanes(&p);
            for pj in p.iter_mut() {
                *pj = exp(*pj - max);
            }
            let inv = 1.0 / sum_lanes(&p);
            let o = &mut out[i * hidden + h * d..][..d];
            o.fill(0.0);
            for (&pj, vj) in p.iter().zip(v.chunks_exact(d)) {
                let w = pj * inv;
                for (oc, vc) in o.iter_mut().zip(vj) {
                    *oc += w * vc;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(qkv: &[f32], out: &mut [f32], l: usize, n: usize, heads: usize, d: usize) {
    attend_generic(qkv, out, l, n, heads, d)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn attend_avx512(qkv: &[f32], out: &mut [f32], l: usize, n: usize, heads: usize, d: usize) {
    attend_generic(qkv, out, l, n, heads, d)
}

fn attend(qkv: &[f32], out: &mut [f32], l: usize, n: usize, heads: usize, d: usize) {
    #[cfg(target_arch = "x86_64")]
    if detox_kernels::isa() >= detox_kernels::Isa::Avx512 {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { attend_avx512(qkv, out, l, n, heads, d) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if detox_kernels::isa() >= detox_kernels::Isa::Avx2 {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { attend_avx2(qkv, out, l, n, heads, d) };
        return;
    }
    attend_generic(qkv, out, l, n, heads, d)
}

struct FusedAttention<'a> {
    lengths: &'a [usize],
    heads: usize,
    head_dim: usize,
    /// Only the first token's query (the others' contexts are not needed).
    first_only: bool,
}

impl CustomOp1 for FusedAttention<'_> {
    fn name(&self) -> &'static str {
        "detox-fused-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let (b, l, three_hidden) = layout.shape().dims3()?;
        let hidden = self.heads * self.head_dim;
        if three_hidden != 3 * hidden || self.lengths.len() != b {
            candle_core::bail!(
                "{}: shape {:?} does not match the heads or lengths",
                self.name(),
                layout.shape()
            );
        }
        let queries = if self.first_only { l.min(1) } else { l };
        let mut dst = vec![0f32; b * queries * hidden];
        let per_in = l * three_hidden;
        let per_out = queries * hidden;
        let run = |(i, o): (usize, &mut [f32])| {
            let n = self.lengths[i].min(l);
            attend(
                &src[i * per_in..][..per_in],
                o,
                queries,
                n,
                self.heads,
                self.head_dim,
            );
        };
        if b > 1 && src.len() >= PAR_MIN {
            dst.par_chunks_mut(per_out).enumerate().for_each(run);
        } else {
            dst.chunks_mut(per_out).enumerate().for_each(run);
        }
        Ok((CpuStorage::F32(dst), Shape::from((b, queries, hidden))))
    }
}

/// Masked multi-head self-attention straight from the fused QKV projection [B, L, 3 * H * D]
/// (queries pre-scaled), keys of row `b` limited to its first `lengths[b]` tokens.
/// Returns the context [B, L, H * D], or [B, 1, H * D] of the first token only with
/// `first_only`. CPU f32 only: callers fall back to matrix products.
pub fn fused_attention(
    qkv: &Tensor,
    lengths: &[usize],
    heads: usize,
    head_dim: usize,
    first_only: bool,
) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1_no_bwd(&FusedAttention {
        lengths,
        heads,
        head_dim,
        first_only,
    })
}

/// Whether the fused attention kernel applies (CPU, f32, sequences short enough that the
/// direct loops beat batched matrix products).
pub fn fused_attention_applies(x: &Tensor, seq_len: usize) -> bool {
    on_cpu_f32(x) && seq_len <= 160
}

fn contiguous_f32_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: input must be contiguous");
    };
    Ok(&mut data[start..end])
}

/// Runs `f` over rows of `width`, in parallel when there is enough work.
fn for_rows(data: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if data.len() >= PAR_MIN {
        let rows = data.len() / width;
        let per = rows.div_ceil(rayon::current_num_threads().max(1)).max(1);
        data.par_chunks_mut(per * width)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (r, row) in chunk.chunks_exact_mut(width).enumerate() {
                    f(c * per + r, row)
                }
            });
    } else {
        for (r, row) in data.chunks_exact_mut(width).enumerate() {
            f(r, row)
        }
    }
}

#[inline(always)]
fn bias_gelu_row(row: &mut [f32], bias: &[f32]) {
    for (x, b) in row.iter_mut().zip(bias) {
        *x = gelu_erf_scalar(*x + b);
    }
}

#[inline(always)]
fn bias_row(row: &mut [f32], bias: &[f32]) {
    for (x, b) in row.iter_mut().zip(bias) {
        *x += b;
    }
}

#[inline(always)]
fn residual_ln_row(row: &mut [f32], res: &[f32], bias: &[f32], w: &[f32], beta: &[f32], eps: f32) {
    for ((x, r), b) in row.iter_mut().zip(res).zip(bias) {
        *x += r + b;
    }
    let n = row.len() as f32;
    let mean = sum_lanes(row) / n;
    let mut acc = [0f32; 8];
    let c = row.chunks_exact(8);
    let rem = c.remainder();
    for x in c {
        if let Ok(x) = <&[f32; 8]>::try_from(x) {
            for l in 0..8 {
                let d = x[l] - mean;
                acc[l] += d * d;
            }
        }
    }
    let var =
        (acc.iter().sum::<f32>() + rem.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>()) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((x, g), b) in row.iter_mut().zip(w).zip(beta) {
        *x = (*x - mean) * inv * g + b;
    }
}

macro_rules! dispatch {
    ($generic:ident, $avx512:ident, $avx2:ident, ($($arg:ident : $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn $avx512($($arg: $ty),*) { $generic($($arg),*) }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) { $generic($($arg),*) }
    };
}

/// `x = gelu_erf(x + bias)` eight lanes at a time with AVX2 + FMA intrinsics (used on AVX-512
/// CPUs too). The same formulas as [`erf`] and [`exp`], except that `1 / (1 + p|x|)` is the
/// CPU's reciprocal estimate refined by one Newton step (relative error about 2e-7) instead
/// of a division, which the compiler cannot vectorise cheaply.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bias_gelu_row_avx2(row: &mut [f32], bias: &[f32]) {
    use std::arch::x86_64::*;
    let n = row.len().min(bias.len());
    let full = n - n % 8;
    let set = _mm256_set1_ps;
    for i in (0..full).step_by(8) {
        let p = row.as_mut_ptr().add(i);
        let x = _mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(bias.as_ptr().add(i)));
        let z = _mm256_mul_ps(x, set(std::f32::consts::FRAC_1_SQRT_2));
        let sign = _mm256_and_ps(z, set(-0.0));
        let a = _mm256_andnot_ps(set(-0.0), z);
        // t = 1 / (1 + 0.3275911 a): estimate, then one Newton step r (2 - d r).
        let d = _mm256_fmadd_ps(a, set(0.327_591_1), set(1.0));
        let r = _mm256_rcp_ps(d);
        let t = _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, set(2.0)));
        let mut q = set(1.061_405_4);
        q = _mm256_fmadd_ps(q, t, set(-1.453_152));
        q = _mm256_fmadd_ps(q, t, set(1.421_413_8));
        q = _mm256_fmadd_ps(q, t, set(-0.284_496_72));
        q = _mm256_fmadd_ps(q, t, set(0.254_829_6));
        // e^(-a^2), as in `exp`: clamp, n = round(x log2 e), r = x - n ln 2, Taylor to r^7.
        let e_in = _mm256_max_ps(_mm256_mul_ps(_mm256_sub_ps(set(0.0), a), a), set(-87.0));
        let k = _mm256_round_ps(
            _mm256_mul_ps(e_in, set(LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let rr = _mm256_fnmadd_ps(k, set(LN2_LO), _mm256_fnmadd_ps(k, set(LN2_HI), e_in));
        let mut ep = set(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            ep = _mm256_fmadd_ps(ep, rr, set(c));
        }
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)),
            23,
        ));
        let e = _mm256_mul_ps(ep, scale);
        // erf(|z|) = 1 - q t e, with z's sign; gelu = x (1 + erf) / 2.
        let erf = _mm256_or_ps(_mm256_fnmadd_ps(_mm256_mul_ps(q, t), e, set(1.0)), sign);
        let g = _mm256_mul_ps(_mm256_mul_ps(set(0.5), x), _mm256_add_ps(set(1.0), erf));
        _mm256_storeu_ps(p, g);
    }
    bias_gelu_row(&mut row[full..n], &bias[full..n]);
}

dispatch!(residual_ln_row, residual_ln_row_avx512, residual_ln_row_avx2,
    (row: &mut [f32], res: &[f32], bias: &[f32], w: &[f32], beta: &[f32], eps: f32));

/// In place: `x = gelu_erf(x + bias)` (`gelu = false`: `x = x + bias`), row by row.
pub struct BiasAct<'a> {
    /// One value per column.
    pub bias: &'a [f32],
    /// Whether to apply exact GELU after the bias.
    pub gelu: bool,
}

impl InplaceOp1 for BiasAct<'_> {
    fn name(&self) -> &'static str {
        "detox-bias-act"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = contiguous_f32_mut(storage, layout, "detox-bias-act")?;
        let width = self.bias.len();
        if width == 0 || data.len() % width != 0 {
            candle_core::bail!("detox-bias-act: bias of {width} for {} values", data.len());
        }
        let isa = detox_kernels::isa();
        let gelu = self.gelu;
        for_rows(data, width, |_, row| {
            #[cfg(target_arch = "x86_64")]
            if gelu && isa >= detox_kernels::Isa::Avx2 {
                // SAFETY: `isa` found AVX2 and FMA on this CPU.
                return unsafe { bias_gelu_row_avx2(row, self.bias) };
            }
            let _ = isa;
            if gelu {
                bias_gelu_row(row, self.bias)
            } else {
                bias_row(row, self.bias)
            }
        });
        Ok(())
    }
}

/// In place: `x = LayerNorm(x + bias + residual)`, row by row.
pub struct BiasResidualNorm<'a> {
    /// The dense layer's bias.
    pub bias: &'a [f32],
    /// Layer norm scale.
    pub weight: &'a [f32],
    /// Layer norm shift.
    pub beta: &'a [f32],
    /// Layer norm epsilon.
    pub eps: f32,
}

impl InplaceOp2 for BiasResidualNorm<'_> {
    fn name(&self) -> &'static str {
        "detox-bias-residual-norm"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
    ) -> Result<()> {
        let res = contiguous_f32(rs, rl, self.name())?;
        let data = contiguous_f32_mut(dst, dst_l, "detox-bias-residual-norm")?;
        let width = self.bias.len();
        if width == 0 || data.len() % width != 0 || res.len() != data.len() {
            candle_core::bail!("detox-bias-residual-norm: shapes do not match");
        }
        let isa = detox_kernels::isa();
        for_rows(data, width, |r, row| {
            let rr = &res[r * width..][..width];
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: `isa` is at most what this CPU supports.
                match isa {
                    detox_kernels::Isa::Avx512 => {
                        return unsafe {
                            residual_ln_row_avx512(
                                row,
                                rr,
                                self.bias,
                                self.weight,
                                self.beta,
                                self.eps,
                            )
                        }
                    }
                    detox_kernels::Isa::Avx2 => {
                        return unsafe {
                            residual_ln_row_avx2(
                                row,
                                rr,
                                self.bias,
                                self.weight,
                                self.beta,
                                self.eps,
                            )
                        }
                    }
                    detox_kernels::Isa::Generic => {}
                }
            }
            let _ = isa;
            residual_ln_row(row, rr, self.bias, self.weight, self.beta, self.eps)
        });
        Ok(())
    }
}
