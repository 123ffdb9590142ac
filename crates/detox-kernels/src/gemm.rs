//! `C = A B` for a constant right-hand matrix `B` (a layer's weights), packed once.
//!
//! The layout and loop order are the textbook ones of GotoBLAS / BLIS (Goto and van de Geijn,
//! "Anatomy of high-performance matrix multiplication", 2008): `B` is stored as column panels
//! `NR` wide (`[K][NR]` each, zero-padded), `A` is packed per call into row panels `MR` tall for
//! a block of `KC` columns, and a register-blocked micro-kernel computes an `MR x NR` tile of `C`
//! with `KC` fused multiply-adds per element. Packing `B` at load time is what a general BLAS
//! call cannot do: candle's `gemm` repacks the weights on every call, which for the few rows of
//! short texts or batched decoding costs about as much as the arithmetic.
//!
//! Micro-kernels: AVX2 + FMA `6 x 16` (12 accumulators of 8 lanes) and AVX-512 `8 x 32`
//! (16 accumulators of 16 lanes), picked by [`crate::cpu::isa`] when the matrix is packed.
//! Each tile is one chain of fused multiply-adds over `k` in order, so results differ from a
//! plain dot product only by floating-point rounding order (about 1e-6 relative).
//! The product is single-threaded: detox runs independent batches side by side instead.

use crate::cpu::{isa, Isa};

/// Row panels of `A` per block (`MC = MR * MC_PANELS` rows, about 64-100 KiB: L2).
const MC_PANELS: usize = 12;

/// A shape that does not fit the packed matrix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("matrix product: {what}")]
pub struct ShapeError {
    what: String,
}

/// Rows of the AVX2 tile.
const AVX2_MR: usize = 6;
/// Rows of the AVX-512 tile.
const AVX512_MR: usize = 8;

/// Which micro-kernel a matrix was packed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Avx2,
    Avx512,
}

impl Kernel {
    fn for_isa(isa: Isa) -> Option<Self> {
        match isa {
            Isa::Avx512 => Some(Kernel::Avx512),
            Isa::Avx2 => Some(Kernel::Avx2),
            Isa::Generic => None,
        }
    }

    /// Rows of the register tile.
    fn mr(self) -> usize {
        match self {
            Kernel::Avx2 => AVX2_MR,
            Kernel::Avx512 => AVX512_MR,
        }
    }

    /// Columns of the register tile (the width of `B`'s panels).
    fn nr(self) -> usize {
        match self {
            Kernel::Avx2 => 16,
            Kernel::Avx512 => 32,
        }
    }
}

/// 64-byte aligned f32 storage, so that every row of a packed panel starts on a cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

#[derive(Clone)]
struct Aligned {
    lines: Vec<Line>,
    len: usize,
}

impl Aligned {
    fn zeros(len: usize) -> Self {
        Self {
            lines: vec![Line([0.0; 16]); len.div_ceil(16)],
            len,
        }
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: `Line` is `repr(C)` over `[f32; 16]`, so the lines are `16 * lines.len()`
        // contiguous, initialised f32 values, and `len` does not exceed that.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}

/// A `K x N` matrix packed for the micro-kernel of this process's instruction set.
#[derive(Clone)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    kernel: Kernel,
    data: Aligned,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("k", &self.k)
            .field("n", &self.n)
            .field("kernel", &self.kernel)
            .finish()
    }
}

impl PackedMatrix {
    /// Packs `B` given row-major as `[k, n]`. `None` when detox's kernels are off
    /// ([`Isa::Generic`]): the caller keeps its own matrix product.
    pub fn new(b: &[f32], k: usize, n: usize) -> Result<Option<Self>, ShapeError> {
        check_len("B", b.len(), k, n)?;
        Ok(Self::pack(isa(), k, n, |kk, j| b[kk * n + j]))
    }

    /// Packs `B = W^T` from a weight `W` given row-major as `[n, k]` (PyTorch's `Linear`
    /// layout, `[out, in]`). `None` when detox's kernels are off.
    pub fn from_transposed(w: &[f32], n: usize, k: usize) -> Result<Option<Self>, ShapeError> {
        check_len("W", w.len(), n, k)?;
        Ok(Self::pack(isa(), k, n, |kk, j| w[j * k + kk]))
    }

    fn pack(isa: Isa, k: usize, n: usize, get: impl Fn(usize, usize) -> f32) -> Option<Self> {
        let kernel = Kernel::for_isa(isa)?;
        let nr = kernel.nr();
        let panels = n.div_ceil(nr);
        let mut data = Aligned::zeros(panels * k * nr);
        let out = data.as_mut_slice();
        for p in 0..panels {
            let panel = &mut out[p * k * nr..][..k * nr];
            for (kk, row) in panel.chunks_exact_mut(nr).enumerate() {
                for (jj, v) in row.iter_mut().enumerate() {
                    let j = p * nr + jj;
                    if j < n {
                        *v = get(kk, j);
                    }
                }
            }
        }
        Some(Self { k, n, kernel, data })
    }

    /// `B` back as row-major `[k, n]` (to fuse matrices that share an input).
    pub fn to_rows(&self) -> Vec<f32> {
        let nr = self.kernel.nr();
        let data = self.data.as_slice();
        let mut out = vec![0f32; self.k * self.n];
        for (kk, row) in out.chunks_exact_mut(self.n.max(1)).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = data[(j / nr) * self.k * nr + kk * nr + j % nr];
            }
        }
        out
    }

    /// Multiplies every element of `B` by `s` (the packing's zero padding stays zero).
    pub fn scale(&mut self, s: f32) {
        for v in self.data.as_mut_slice() {
            *v *= s;
        }
    }

    /// Rows of `B` (the inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of `B` (the output width).
    pub fn n(&self) -> usize {
        self.n
    }

    /// `C = A B` for row-major `A` `[m, k]`; `C` (`[m, n]`, row-major) is overwritten.
    pub fn matmul(&self, a: &[f32], m: usize, c: &mut [f32]) -> Result<(), ShapeError> {
        check_len("A", a.len(), m, self.k)?;
        check_len("C", c.len(), m, self.n)?;
        if m == 0 || self.n == 0 {
            return Ok(());
        }
        if self.k == 0 {
            c.fill(0.0);
            return Ok(());
        }
        let (k, mc) = (self.k, self.kernel.mr() * MC_PANELS);
        // Equal blocks of at most `kc()` columns; a product that is up to 1.5 blocks deep runs
        // as one, since every further block reads and writes all of `C` once more.
        let kc_max = self.kernel.kc();
        let block = if k * 2 <= kc_max * 3 {
            k
        } else {
            k.div_ceil(k.div_ceil(kc_max))
        };
        A_SCRATCH.with_borrow_mut(|apack| {
            if apack.len < mc * block {
                *apack = Aligned::zeros(mc * block);
            }
            self.blocks(a, m, c, block, apack);
        });
        Ok(())
    }

    /// The blocked loops of [`PackedMatrix::matmul`], `K` cut into blocks of `block` columns.
    fn blocks(&self, a: &[f32], m: usize, c: &mut [f32], block: usize, apack: &mut Aligned) {
        let (mr, nr) = (self.kernel.mr(), self.kernel.nr());
        let (k, n) = (self.k, self.n);
        let mc = mr * MC_PANELS;
        let panels = n.div_ceil(nr);
        let b = self.data.as_slice();
        let mut tile = Aligned::zeros(mr * nr);
        // Row blocks outermost: a block's rows of `C` stay in cache across the `K` blocks.
        for ic in (0..m).step_by(mc) {
            let rows = mc.min(m - ic);
            for pc in (0..k).step_by(block) {
                let kc = block.min(k - pc);
                let accumulate = pc > 0;
                let out = apack.as_mut_slice();
                match self.kernel {
                    Kernel::Avx2 => pack_a::<AVX2_MR>(a, k, ic, rows, pc, kc, out),
                    Kernel::Avx512 => pack_a::<AVX512_MR>(a, k, ic, rows, pc, kc, out),
                }
                for p in 0..panels {
                    let bp = &b[p * k * nr + pc * nr..][..kc * nr];
                    let j0 = p * nr;
                    let cols = nr.min(n - j0);
                    for ir in (0..rows).step_by(mr) {
                        let tr = mr.min(rows - ir);
                        let ap = &apack.as_slice()[(ir / mr) * kc * mr..][..kc * mr];
                        let row0 = ic + ir;
                        if cols == nr {
                            let cs = &mut c[row0 * n + j0..][..(tr - 1) * n + nr];
                            self.kernel.run(tr, kc, ap, bp, cs, n, accumulate);
                        } else {
                            // The last, narrower panel goes through a full-width scratch tile.
                            let t = tile.as_mut_slice();
                            if accumulate {
                                for r in 0..tr {
                                    t[r * nr..][..cols]
                                        .copy_from_slice(&c[(row0 + r) * n + j0..][..cols]);
                                }
                            }
                            self.kernel.run(tr, kc, ap, bp, t, nr, accumulate);
                            for r in 0..tr {
                                c[(row0 + r) * n + j0..][..cols]
                                    .copy_from_slice(&t[r * nr..][..cols]);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check_len(name: &str, len: usize, rows: usize, cols: usize) -> Result<(), ShapeError> {
    if rows.checked_mul(cols) != Some(len) {
        return Err(ShapeError {
            what: format!("{name} has {len} values, expected {rows} x {cols}"),
        });
    }
    Ok(())
}

/// Packs rows `ic..ic+rows`, columns `pc..pc+kc` of row-major `A` (`lda` columns) into row
/// panels `MR` tall: panel `q` is `[kc][MR]`, rows past the end are zero. Each packed row of
/// `MR` values is written in one go, from `MR` row streams of `A`.
fn pack_a<const MR: usize>(
    a: &[f32],
    lda: usize,
    ic: usize,
    rows: usize,
    pc: usize,
    kc: usize,
    out: &mut [f32],
) {
    for (q, panel) in out
        .chunks_exact_mut(kc * MR)
        .take(rows.div_ceil(MR))
        .enumerate()
    {
        let present = MR.min(rows - q * MR);
        let src: [&[f32]; MR] = std::array::from_fn(|r| {
            if r < present {
                &a[(ic + q * MR + r) * lda + pc..][..kc]
            } else {
                &[]
            }
        });
        for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
            for (r, d) in dst.iter_mut().enumerate() {
                *d = if r < present { src[r][p] } else { 0.0 };
            }
        }
    }
}

thread_local! {
    /// Each thread's packing buffer for `A`, kept between calls (no allocation per product).
    static A_SCRATCH: std::cell::RefCell<Aligned> = std::cell::RefCell::new(Aligned::zeros(0));
}

impl Kernel {
    /// Most columns of `A` per packed block: 256, so a `KC x NR` panel of `B` is 16 KiB (AVX2)
    /// or 32 KiB (AVX-512) and stays in the L1 or L2 cache while the row panels of `A` pass over
    /// it. Measured on a 2-core AMD EPYC with AVX-512 (`examples/gemm_speed.rs`): 128 for AVX-512 cost
    /// 5-7% on MiniLM's products (three passes over `C` instead of one when `K` = 384), 512 for
    /// AVX2 cost up to 15% when `K` = 1536.
    fn kc(self) -> usize {
        256
    }

    /// The first `rows` (at most `MR`) rows of a tile:
    /// `c[r * ldc + j] (+)= sum_p a[p * MR + r] * b[p * NR + j]`.
    #[allow(clippy::too_many_arguments)]
    fn run(
        self,
        rows: usize,
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        let (mr, nr) = (self.mr(), self.nr());
        assert!(
            (1..=mr).contains(&rows)
                && a.len() >= kc * mr
                && b.len() >= kc * nr
                && c.len() >= (rows - 1) * ldc + nr
        );
        #[cfg(target_arch = "x86_64")]
        {
            let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
            // SAFETY: the matrix was packed for this kernel only after `isa()` found the CPU
            // supports it, and the slice lengths checked above cover every element touched.
            unsafe {
                use x86::{tile_avx2 as t2, tile_avx512 as t5};
                match (self, rows) {
                    (Kernel::Avx2, 1) => t2::<1>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx2, 2) => t2::<2>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx2, 3) => t2::<3>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx2, 4) => t2::<4>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx2, 5) => t2::<5>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx2, _) => t2::<AVX2_MR>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx512, 1) => t5::<1>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx512, 2) => t5::<2>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx512, 3) => t5::<3>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx512, 4) => t5::<4>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx512, 5) => t5::<5>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx512, 6) => t5::<6>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx512, 7) => t5::<7>(kc, a, b, c, ldc, accumulate),
                    (Kernel::Avx512, _) => t5::<AVX512_MR>(kc, a, b, c, ldc, accumulate),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            // Unreachable: `Kernel::for_isa` yields a kernel only on x86-64.
            let _ = (kc, a, b, c, ldc, accumulate);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Defines a tile function: `R <= $mr` rows x `2 * $lanes` columns (two registers per row)
    /// of `c (+)= a b`, with `a` a panel packed `$mr` rows tall and `b` a panel `2 * $lanes`
    /// wide, both `kc` deep.
    macro_rules! tile {
        ($(#[$doc:meta])* $name:ident, $features:literal, $mr:expr, $lanes:literal,
         $zero:ident, $load:ident, $store:ident, $splat:ident, $fmadd:ident, $add:ident) => {
            $(#[$doc])*
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const R: usize>(
                kc: usize,
                a: *const f32,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                accumulate: bool,
            ) {
                const MR: usize = $mr;
                const L: usize = $lanes;
                let mut acc = [[$zero(); 2]; R];
                for p in 0..kc {
                    let b0 = $load(b.add(p * 2 * L));
                    let b1 = $load(b.add(p * 2 * L + L));
                    for (r, row) in acc.iter_mut().enumerate() {
                        let x = $splat(*a.add(p * MR + r));
                        row[0] = $fmadd(x, b0, row[0]);
                        row[1] = $fmadd(x, b1, row[1]);
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    let dst = c.add(r * ldc);
                    for (h, v) in row.iter().enumerate() {
                        let out = if accumulate {
                            $add(*v, $load(dst.add(h * L)))
                        } else {
                            *v
                        };
                        $store(dst.add(h * L), out);
                    }
                }
            }
        };
    }

    tile!(
        /// The AVX2 + FMA tile: `R <= 6` rows x 16 columns (two 8-lane registers per row).
        ///
        /// # Safety
        /// The CPU must support AVX2 and FMA; `a` holds `6 * kc`, `b` `16 * kc` values, and
        /// `c` addresses `R` rows of 16 values `ldc` apart.
        tile_avx2, "avx2,fma", super::AVX2_MR, 8,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps,
        _mm256_fmadd_ps, _mm256_add_ps
    );

    tile!(
        /// The AVX-512 tile: `R <= 8` rows x 32 columns (two 16-lane registers per row).
        ///
        /// # Safety
        /// The CPU must support AVX-512 F; `a` holds `8 * kc`, `b` `32 * kc` values, and `c`
        /// addresses `R` rows of 32 values `ldc` apart.
        tile_avx512, "avx512f,avx2,fma", super::AVX512_MR, 16,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,
        _mm512_fmadd_ps, _mm512_add_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random matrix in [-1, 1).
    fn matrix(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for p in 0..k {
                let x = a[i * k + p] as f64;
                for j in 0..n {
                    c[i * n + j] += x * b[p * n + j] as f64;
                }
            }
        }
        c.into_iter().map(|v| v as f32).collect()
    }

    /// Every kernel this CPU has, on shapes with ragged edges in all three dimensions and more
    /// than one `KC` block, against a product accumulated in f64.
    #[test]
    fn every_kernel_matches_a_plain_product_on_ragged_shapes() {
        let levels: Vec<Isa> = [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&l| l <= crate::cpu::detected())
            .collect();
        // Every row count up to two tiles and a bit (each remainder kernel), then larger shapes.
        let small = (1..=17).map(|m| (m, 40, 70));
        for (m, k, n) in small.chain([
            (1, 1, 1),
            (5, 7, 3),
            (6, 384, 16),
            (13, 384, 1152),
            (97, 600, 45),
            (25, 576, 1536),
            (200, 1536, 384),
        ]) {
            let a = matrix(m * k, 1);
            let b = matrix(k * n, 2);
            let want = reference(&a, &b, m, k, n);
            for &level in &levels {
                let packed = PackedMatrix::pack(level, k, n, |kk, j| b[kk * n + j])
                    .expect("a kernel for this level");
                let mut c = vec![f32::NAN; m * n];
                packed.matmul(&a, m, &mut c).expect("shapes fit");
                let worst = c
                    .iter()
                    .zip(&want)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 1e-4 * (k as f32).sqrt(),
                    "{level} {m}x{k}x{n}: worst difference {worst}"
                );
            }
        }
    }

    #[test]
    fn transposed_weights_pack_as_their_transpose() {
        if isa() == Isa::Generic {
            eprintln!("skipped: no detox kernels on this CPU");
            return;
        }
        let (n, k, m) = (19, 33, 4);
        let w = matrix(n * k, 3);
        let mut b = vec![0f32; k * n];
        for j in 0..n {
            for p in 0..k {
                b[p * n + j] = w[j * k + p];
            }
        }
        let a = matrix(m * k, 4);
        let (mut c1, mut c2) = (vec![0f32; m * n], vec![0f32; m * n]);
        let p1 = PackedMatrix::from_transposed(&w, n, k).unwrap().unwrap();
        let p2 = PackedMatrix::new(&b, k, n).unwrap().unwrap();
        p1.matmul(&a, m, &mut c1).unwrap();
        p2.matmul(&a, m, &mut c2).unwrap();
        assert_eq!(c1, c2);
    }

    #[test]
    fn unpacking_and_scaling_round_trip() {
        for level in [Isa::Avx2, Isa::Avx512] {
            if level > crate::cpu::detected() {
                continue;
            }
            let (k, n) = (7, 37);
            let b = matrix(k * n, 5);
            let mut p = PackedMatrix::pack(level, k, n, |kk, j| b[kk * n + j]).unwrap();
            assert_eq!(p.to_rows(), b);
            p.scale(0.5);
            let half: Vec<f32> = b.iter().map(|v| v * 0.5).collect();
            assert_eq!(p.to_rows(), half);
        }
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        assert!(PackedMatrix::new(&[0.0; 5], 2, 3).is_err());
        if let Ok(Some(p)) = PackedMatrix::new(&[0.0; 6], 2, 3) {
            let mut c = vec![0f32; 3];
            assert!(p.matmul(&[0.0; 3], 1, &mut c).is_err());
        }
    }
}
