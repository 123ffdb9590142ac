//! A dense layer's weight for candle models: packed for [`PackedMatrix`] when detox's kernels
//! run (CPU, f32, AVX2 or AVX-512), a plain candle tensor otherwise.

use crate::gemm::PackedMatrix;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use std::sync::Arc;

/// `W^T` (`[in, out]`) of a dense layer `y = x W^T`, held once: packed, or as a tensor.
#[derive(Debug, Clone)]
pub enum DenseWeight {
    /// `W^T` as a contiguous `[in, out]` tensor (GPU, other dtypes, `DETOX_CPU=generic`).
    Transposed(Tensor),
    /// `W^T` packed for detox's CPU kernels.
    Packed(Arc<PackedMatrix>),
}

impl DenseWeight {
    /// From `W^T` (`[in, out]`): packed when it is an f32 CPU tensor and detox's kernels are on.
    pub fn new(w_t: Tensor) -> Result<Self> {
        if w_t.device().is_cpu() && w_t.dtype() == DType::F32 {
            let (k, n) = w_t.dims2()?;
            let rows = w_t.flatten_all()?.to_vec1::<f32>()?;
            if let Some(p) = PackedMatrix::new(&rows, k, n).map_err(candle_core::Error::wrap)? {
                return Ok(Self::Packed(Arc::new(p)));
            }
        }
        Ok(Self::Transposed(w_t.contiguous()?))
    }

    /// From `W` laid out `[out, in]` (PyTorch's `Linear`, GGUF): packed straight from that
    /// layout when the kernels run, so no transposed copy is made.
    pub fn from_out_in(w: &Tensor) -> Result<Self> {
        if w.device().is_cpu() && w.dtype() == DType::F32 {
            let (n, k) = w.dims2()?;
            let rows = w.flatten_all()?.to_vec1::<f32>()?;
            if let Some(p) =
                PackedMatrix::from_transposed(&rows, n, k).map_err(candle_core::Error::wrap)?
            {
                return Ok(Self::Packed(Arc::new(p)));
            }
        }
        Ok(Self::Transposed(w.t()?.contiguous()?))
    }

    /// Input features.
    pub fn in_features(&self) -> Result<usize> {
        match self {
            Self::Transposed(t) => t.dim(0),
            Self::Packed(p) => Ok(p.k()),
        }
    }

    /// Output features.
    pub fn out_features(&self) -> Result<usize> {
        match self {
            Self::Transposed(t) => t.dim(1),
            Self::Packed(p) => Ok(p.n()),
        }
    }

    /// `W^T` as an `[in, out]` tensor on the weight's device (a packed weight is unpacked on
    /// the CPU, where packed weights live).
    pub fn transposed(&self) -> Result<Tensor> {
        match self {
            Self::Transposed(t) => Ok(t.clone()),
            Self::Packed(p) => Tensor::from_vec(p.to_rows(), (p.k(), p.n()), &Device::Cpu),
        }
    }

    /// The same weight multiplied by `s`.
    pub fn scaled(self, s: f64) -> Result<Self> {
        Ok(match self {
            Self::Transposed(t) => Self::Transposed((t * s)?),
            Self::Packed(p) => {
                let mut p = Arc::unwrap_or_clone(p);
                p.scale(s as f32);
                Self::Packed(Arc::new(p))
            }
        })
    }

    /// `x W^T` over the last dimension of `x` (`[..., in]` -> `[..., out]`), without bias.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let Some((&k, lead)) = dims.split_last() else {
            candle_core::bail!("a dense layer needs at least one dimension");
        };
        let rows = lead.iter().product::<usize>();
        let x2 = x.reshape((rows, k))?;
        let y = match self {
            Self::Packed(p) => x2
                .contiguous()?
                .apply_op1_no_bwd(&PackedMatmul { packed: p })?,
            Self::Transposed(w_t) if rows <= 64 => {
                // Few rows (decoding): `(W x^T)^T` lets candle's gemm read the large weight in
                // place instead of repacking it on every call.
                w_t.t()?.matmul(&x2.t()?)?.t()?.contiguous()?
            }
            Self::Transposed(w_t) => x2.matmul(w_t)?,
        };
        let mut shape = lead.to_vec();
        shape.push(self.out_features()?);
        y.reshape(shape)
    }
}

/// The f32 values of a contiguous CPU tensor's storage; `op` names the operation in errors.
pub fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: input must be contiguous");
    };
    Ok(&data[start..end])
}

/// The candle operation `x [m, k] -> x B [m, n]` through a [`PackedMatrix`].
struct PackedMatmul<'a> {
    packed: &'a PackedMatrix,
}

impl CustomOp1 for PackedMatmul<'_> {
    fn name(&self) -> &'static str {
        "detox-packed-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let (m, k) = layout.shape().dims2()?;
        if k != self.packed.k() {
            candle_core::bail!(
                "{}: input has {k} features, the weight expects {}",
                self.name(),
                self.packed.k()
            );
        }
        let n = self.packed.n();
        let mut dst = vec![0f32; m * n];
        self.packed
            .matmul(src, m, &mut dst)
            .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed path and candle's own product agree, for a batch of rows in a 3-d input.
    #[test]
    fn packed_and_candle_products_agree() -> Result<()> {
        let w = Tensor::arange(0f32, 35.0 * 9.0, &Device::Cpu)?
            .reshape((35, 9))?
            .sin()?;
        let x = Tensor::arange(0f32, 2.0 * 7.0 * 9.0, &Device::Cpu)?
            .reshape((2, 7, 9))?
            .cos()?;
        let weight = DenseWeight::from_out_in(&w)?;
        if crate::isa() != crate::Isa::Generic {
            assert!(matches!(weight, DenseWeight::Packed(_)));
        }
        let got = weight.matmul(&x)?;
        assert_eq!(got.dims(), &[2, 7, 35]);
        let want = x.reshape((14, 9))?.matmul(&w.t()?)?.reshape((2, 7, 35))?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        let scaled = weight.scaled(2.0)?.matmul(&x)?;
        let twice = (x.reshape((14, 9))?.matmul(&w.t()?)? * 2.0)?.reshape((2, 7, 35))?;
        let diff = (scaled - twice)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }
}
