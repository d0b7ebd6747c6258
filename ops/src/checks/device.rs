//! The same random cases run on another device: each op's output and input
//! gradients there against the CPU kernels, in f32, and the GPU's bf16 matrix
//! products against the CPU's f32 ones on bf16-rounded values.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Case, OpCheck};
use crate::error::shape_err;
use crate::{autocast, round_to_bf16, DType, Device, Precision, Result, Tape, Tensor};

/// Agreement of one case between the CPU and a device.
#[derive(Clone, Debug)]
pub struct DeviceReport {
    /// Largest `|device − cpu| / (1 + |cpu|)` over the output and every gradient.
    pub worst: f64,
    /// Where it was: "output" or "gradient of input i", and the flat index.
    pub worst_at: String,
}

/// An f32 CPU tensor's values rounded to bf16: what a GPU product reads of it
/// under bf16 autocast, and so the CPU reference's input.
pub fn rounded_to_bf16(t: &Tensor) -> Result<Tensor> {
    let mut t = t.clone();
    t.map_in_place::<f32>(|v| v.iter_mut().for_each(|x| *x = round_to_bf16(*x)))?;
    Ok(t)
}

/// f32 differences between two correct kernels come from summation order and
/// from the device's exp/log/erf (a few ulp): ~1e-6 relative on these small
/// cases. A wrong kernel is off by O(1). 1e-4 separates the two.
pub const DEVICE_TOLERANCE: f64 = 1e-4;

impl DeviceReport {
    pub fn passed(&self) -> bool {
        self.worst <= DEVICE_TOLERANCE
    }
}

/// Runs `case` with f32 inputs on `device`: the output, and the gradients of
/// every input for one random output gradient (the same on both sides). With
/// `rounded`, the inputs and the output gradient are first rounded to bf16.
fn run(
    case: &Case,
    device: Device,
    upstream_seed: u64,
    rounded: bool,
) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
    let prepare = |t: Tensor| -> Result<Tensor> {
        let t = t.to_dtype(DType::F32)?;
        let t = if rounded { rounded_to_bf16(&t)? } else { t };
        t.to_device(device)
    };
    let tape = Tape::new();
    let inputs: Vec<Tensor> = case
        .inputs
        .iter()
        .map(|t| Ok(tape.watch(&prepare(t.clone())?)))
        .collect::<Result<_>>()?;
    let out = (case.function)(&inputs)?;
    let mut rng = StdRng::seed_from_u64(upstream_seed);
    let upstream = prepare(Tensor::from_fn(out.shape(), DType::F32, |_| {
        rng.gen_range(-1.0..1.0)
    }))?;
    let grads = tape.backward_with(&out, upstream)?;
    let grads = inputs
        .iter()
        .map(|t| grads.get(t).map(|g| g.to_vec_f32()).unwrap_or_default())
        .collect();
    Ok((out.to_vec_f32(), grads))
}

fn compare(worst: &mut (f64, String), what: &str, cpu: &[f32], dev: &[f32]) {
    if cpu.len() != dev.len() {
        *worst = (
            f64::INFINITY,
            format!("{what}: {} vs {} elements", cpu.len(), dev.len()),
        );
        return;
    }
    for (i, (&c, &d)) in cpu.iter().zip(dev).enumerate() {
        let err = (c as f64 - d as f64).abs() / (1.0 + (c as f64).abs());
        if err > worst.0 || err.is_nan() {
            *worst = (
                if err.is_nan() { f64::INFINITY } else { err },
                format!("{what}[{i}]: cpu {c}, device {d}"),
            );
        }
    }
}

/// Generates the case of `check` for `seed` and compares `device` with the CPU.
pub fn compare_with_cpu(
    check: &OpCheck,
    seed: u64,
    device: Device,
) -> Result<(Case, DeviceReport)> {
    compare_runs(check, seed, device, false)
}

/// Compares the case of `check` run on `device` under bf16 autocast with the
/// CPU's f32 kernels run on the same values rounded to bf16. For an op whose
/// every input and output gradient is a matrix product operand (`matmul`),
/// the two compute the same exact products (a product of two bf16 values is
/// exact in f32), so they differ only by summation order.
pub fn compare_bf16_with_cpu(
    check: &OpCheck,
    seed: u64,
    device: Device,
) -> Result<(Case, DeviceReport)> {
    compare_runs(check, seed, device, true)
}

fn compare_runs(
    check: &OpCheck,
    seed: u64,
    device: Device,
    bf16: bool,
) -> Result<(Case, DeviceReport)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let case = (check.generate)(&mut rng);
    let (cpu_out, cpu_grads) = run(&case, Device::Cpu, seed, bf16)?;
    let (dev_out, dev_grads) = {
        let _precision = autocast(if bf16 {
            Precision::Bf16
        } else {
            Precision::F32
        });
        run(&case, device, seed, false)?
    };
    let mut worst = (0.0, String::from("nowhere"));
    compare(&mut worst, "output", &cpu_out, &dev_out);
    for (i, (c, d)) in cpu_grads.iter().zip(&dev_grads).enumerate() {
        compare(&mut worst, &format!("gradient of input {i}"), c, d);
    }
    Ok((
        case,
        DeviceReport {
            worst: worst.0,
            worst_at: worst.1,
        },
    ))
}

/// The GPU product `op(a)·op(b)` of two batches of matrices `[batch, rows,
/// cols]` on their device, under every plan of the GPU matrix product that
/// the device can run (tile sizes, split-K, tensor cores), each named. The
/// product's own choice depends on the device's size; the tests must reach
/// every kernel on any device.
pub fn gpu_matmul_every_plan(
    a: &Tensor,
    b: &Tensor,
    (ta, tb): (bool, bool),
    precision: Precision,
) -> Result<Vec<(String, Tensor)>> {
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() != 3 || sb.len() != 3 || sa[0] != sb[0] {
        return Err(shape_err!(
            "matmul",
            "expected two batches [batch, rows, cols], got {sa:?} and {sb:?}"
        ));
    }
    let (m, k) = if ta { (sa[2], sa[1]) } else { (sa[1], sa[2]) };
    let (kb, n) = if tb { (sb[2], sb[1]) } else { (sb[1], sb[2]) };
    if k != kb {
        return Err(shape_err!(
            "matmul",
            "inner sizes differ: {sa:?} and {sb:?}"
        ));
    }
    let bf16 = precision == Precision::Bf16;
    crate::gpu::matmul_every_plan(a, b, sa[0], (m, n, k), (ta, tb), bf16)
}
