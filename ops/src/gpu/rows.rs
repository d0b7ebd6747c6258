//! Row-wise kernels over the last axis: softmax and log-softmax, layer norm
//! and L2 normalisation, forward and backward. One cube of 64 units per row;
//! the units stride over the row and combine partial results in shared memory.

use cubecl::prelude::*;

use super::runtime::{alloc, buffer, cube_index, first_buffer, grid, on_runtime, tensor};
use crate::{Result, Tensor};

/// Units per cube of the row kernels.
const ROW_UNITS: u32 = 64;

/// The sum of `value` over the units of the cube, returned to every unit.
#[cube]
fn cube_sum<F: Float>(value: F) -> F {
    let mut shared = SharedMemory::<F>::new(64usize);
    let t = UNIT_POS_X;
    shared[t as usize] = value;
    sync_cube();
    let mut half = CUBE_DIM_X / 2;
    while half > 0 {
        if t < half {
            let other = shared[(t + half) as usize];
            shared[t as usize] += other;
        }
        sync_cube();
        half /= 2;
    }
    let total = shared[0];
    sync_cube();
    total
}

/// The maximum of `value` over the units of the cube, returned to every unit.
#[cube]
fn cube_max<F: Float>(value: F) -> F {
    let mut shared = SharedMemory::<F>::new(64usize);
    let t = UNIT_POS_X;
    shared[t as usize] = value;
    sync_cube();
    let mut half = CUBE_DIM_X / 2;
    while half > 0 {
        if t < half {
            let other = shared[(t + half) as usize];
            if other > shared[t as usize] {
                shared[t as usize] = other;
            }
        }
        sync_cube();
        half /= 2;
    }
    let best = shared[0];
    sync_cube();
    best
}

#[cube(launch)]
fn softmax_kernel<F: Float>(
    x: &Array<F>,
    out: &mut Array<F>,
    n: u32,
    rows: u32,
    #[comptime] log: bool,
) {
    let row = cube_index();
    if row < rows {
        let base = row * n;
        let mut m = x[base as usize];
        let mut j = UNIT_POS_X;
        while j < n {
            let v = x[(base + j) as usize];
            if v > m {
                m = v;
            }
            j += CUBE_DIM_X;
        }
        m = cube_max::<F>(m);
        let mut s = F::new(0.0);
        j = UNIT_POS_X;
        while j < n {
            s += F::exp(x[(base + j) as usize] - m);
            j += CUBE_DIM_X;
        }
        s = cube_sum::<F>(s);
        let log_sum = F::ln(s) + m;
        let inv = F::recip(s);
        j = UNIT_POS_X;
        while j < n {
            let v = x[(base + j) as usize];
            if log {
                out[(base + j) as usize] = v - log_sum;
            } else {
                out[(base + j) as usize] = F::exp(v - m) * inv;
            }
            j += CUBE_DIM_X;
        }
    }
}

#[cube(launch)]
fn softmax_backward_kernel<F: Float>(
    g: &Array<F>,
    y: &Array<F>,
    dx: &mut Array<F>,
    n: u32,
    rows: u32,
    #[comptime] log: bool,
) {
    let row = cube_index();
    if row < rows {
        let base = row * n;
        let mut acc = F::new(0.0);
        let mut j = UNIT_POS_X;
        while j < n {
            let at = (base + j) as usize;
            if log {
                acc += g[at];
            } else {
                acc += g[at] * y[at];
            }
            j += CUBE_DIM_X;
        }
        acc = cube_sum::<F>(acc);
        j = UNIT_POS_X;
        while j < n {
            let at = (base + j) as usize;
            if log {
                dx[at] = g[at] - F::exp(y[at]) * acc;
            } else {
                dx[at] = y[at] * (g[at] - acc);
            }
            j += CUBE_DIM_X;
        }
    }
}

fn rows_of(t: &Tensor) -> (usize, usize) {
    let n = t.shape().last().copied().unwrap_or(1);
    (t.numel() / n.max(1), n)
}

/// Softmax (or log-softmax) of each row of the last axis.
pub(crate) fn softmax(x: &Tensor, log: bool) -> Result<Tensor> {
    let xb = first_buffer("softmax", x)?;
    let (rows, n) = rows_of(x);
    let out = alloc(xb, xb.len);
    on_runtime!(&xb.client, |client, R| softmax_kernel::launch::<f32, R>(
        client,
        grid(rows, 1),
        CubeDim::new_1d(ROW_UNITS),
        xb.arg::<R>(),
        out.arg::<R>(),
        n as u32,
        rows as u32,
        log,
    ));
    tensor(out, x.shape())
}

/// The gradient of softmax (`y` its output) or of log-softmax (`y` the log-probabilities).
pub(crate) fn softmax_backward(g: &Tensor, y: &Tensor, log: bool) -> Result<Tensor> {
    let gb = first_buffer("softmax", g)?;
    let yb = buffer("softmax", y, gb.device)?;
    let (rows, n) = rows_of(g);
    let dx = alloc(gb, gb.len);
    on_runtime!(&gb.client, |client, R| softmax_backward_kernel::launch::<
        f32,
        R,
    >(
        client,
        grid(rows, 1),
        CubeDim::new_1d(ROW_UNITS),
        gb.arg::<R>(),
        yb.arg::<R>(),
        dx.arg::<R>(),
        n as u32,
        rows as u32,
        log,
    ));
    tensor(dx, g.shape())
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn layer_norm_kernel<F: Float>(
    x: &Array<F>,
    w: &Array<F>,
    b: &Array<F>,
    out: &mut Array<F>,
    mean_out: &mut Array<F>,
    rstd_out: &mut Array<F>,
    n: u32,
    rows: u32,
    eps: f32,
) {
    let row = cube_index();
    if row < rows {
        let base = row * n;
        let count = F::cast_from(n);
        let mut s = F::new(0.0);
        let mut j = UNIT_POS_X;
        while j < n {
            s += x[(base + j) as usize];
            j += CUBE_DIM_X;
        }
        let mean = cube_sum::<F>(s) / count;
        let mut sq = F::new(0.0);
        j = UNIT_POS_X;
        while j < n {
            let d = x[(base + j) as usize] - mean;
            sq += d * d;
            j += CUBE_DIM_X;
        }
        let var = cube_sum::<F>(sq) / count;
        let rstd = F::recip(F::sqrt(var + F::cast_from(eps)));
        j = UNIT_POS_X;
        while j < n {
            let at = (base + j) as usize;
            out[at] = (x[at] - mean) * rstd * w[j as usize] + b[j as usize];
            j += CUBE_DIM_X;
        }
        if UNIT_POS_X == 0 {
            mean_out[row as usize] = mean;
            rstd_out[row as usize] = rstd;
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn layer_norm_backward_kernel<F: Float>(
    g: &Array<F>,
    x: &Array<F>,
    w: &Array<F>,
    mean: &Array<F>,
    rstd: &Array<F>,
    dx: &mut Array<F>,
    n: u32,
    rows: u32,
) {
    let row = cube_index();
    if row < rows {
        let base = row * n;
        let mu = mean[row as usize];
        let r = rstd[row as usize];
        let mut sum_h = F::new(0.0);
        let mut sum_hx = F::new(0.0);
        let mut j = UNIT_POS_X;
        while j < n {
            let at = (base + j) as usize;
            let h = g[at] * w[j as usize];
            sum_h += h;
            sum_hx += h * (x[at] - mu) * r;
            j += CUBE_DIM_X;
        }
        let count = F::cast_from(n);
        let mean_h = cube_sum::<F>(sum_h) / count;
        let mean_hx = cube_sum::<F>(sum_hx) / count;
        j = UNIT_POS_X;
        while j < n {
            let at = (base + j) as usize;
            let xhat = (x[at] - mu) * r;
            dx[at] = (g[at] * w[j as usize] - mean_h - xhat * mean_hx) * r;
            j += CUBE_DIM_X;
        }
    }
}

/// One cube per feature: `dw = Σ_rows g·x̂`, `db = Σ_rows g`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn layer_norm_params_kernel<F: Float>(
    g: &Array<F>,
    x: &Array<F>,
    mean: &Array<F>,
    rstd: &Array<F>,
    dw: &mut Array<F>,
    db: &mut Array<F>,
    n: u32,
    rows: u32,
) {
    let col = cube_index();
    if col < n {
        let mut sw = F::new(0.0);
        let mut sb = F::new(0.0);
        let mut r = UNIT_POS_X;
        while r < rows {
            let at = (r * n + col) as usize;
            sw += g[at] * (x[at] - mean[r as usize]) * rstd[r as usize];
            sb += g[at];
            r += CUBE_DIM_X;
        }
        sw = cube_sum::<F>(sw);
        sb = cube_sum::<F>(sb);
        if UNIT_POS_X == 0 {
            dw[col as usize] = sw;
            db[col as usize] = sb;
        }
    }
}

/// Layer norm over the last axis: the output and each row's mean and 1/σ.
pub(crate) fn layer_norm(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let xb = first_buffer("layer_norm", x)?;
    let (wb, bb) = (
        buffer("layer_norm", w, xb.device)?,
        buffer("layer_norm", b, xb.device)?,
    );
    let (rows, n) = rows_of(x);
    let (out, mean, rstd) = (alloc(xb, xb.len), alloc(xb, rows), alloc(xb, rows));
    on_runtime!(&xb.client, |client, R| layer_norm_kernel::launch::<f32, R>(
        client,
        grid(rows, 1),
        CubeDim::new_1d(ROW_UNITS),
        xb.arg::<R>(),
        wb.arg::<R>(),
        bb.arg::<R>(),
        out.arg::<R>(),
        mean.arg::<R>(),
        rstd.arg::<R>(),
        n as u32,
        rows as u32,
        eps as f32,
    ));
    Ok((
        tensor(out, x.shape())?,
        tensor(mean, &[rows])?,
        tensor(rstd, &[rows])?,
    ))
}

/// Gradients of layer norm with respect to the input, weight and bias.
pub(crate) fn layer_norm_backward(
    g: &Tensor,
    x: &Tensor,
    w: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "layer_norm";
    let gb = first_buffer(OP, g)?;
    let dev = gb.device;
    let (xb, wb) = (buffer(OP, x, dev)?, buffer(OP, w, dev)?);
    let (mb, rb) = (buffer(OP, mean, dev)?, buffer(OP, rstd, dev)?);
    let (rows, n) = rows_of(x);
    let (dx, dw, db) = (alloc(gb, gb.len), alloc(gb, n), alloc(gb, n));
    on_runtime!(&gb.client, |client, R| {
        layer_norm_backward_kernel::launch::<f32, R>(
            client,
            grid(rows, 1),
            CubeDim::new_1d(ROW_UNITS),
            gb.arg::<R>(),
            xb.arg::<R>(),
            wb.arg::<R>(),
            mb.arg::<R>(),
            rb.arg::<R>(),
            dx.arg::<R>(),
            n as u32,
            rows as u32,
        );
        layer_norm_params_kernel::launch::<f32, R>(
            client,
            grid(n, 1),
            CubeDim::new_1d(ROW_UNITS),
            gb.arg::<R>(),
            xb.arg::<R>(),
            mb.arg::<R>(),
            rb.arg::<R>(),
            dw.arg::<R>(),
            db.arg::<R>(),
            n as u32,
            rows as u32,
        );
    });
    Ok((tensor(dx, x.shape())?, tensor(dw, &[n])?, tensor(db, &[n])?))
}

#[cube(launch)]
fn l2_normalize_kernel<F: Float>(
    x: &Array<F>,
    out: &mut Array<F>,
    norms: &mut Array<F>,
    n: u32,
    rows: u32,
    eps: f32,
) {
    let row = cube_index();
    if row < rows {
        let base = row * n;
        let mut sq = F::new(0.0);
        let mut j = UNIT_POS_X;
        while j < n {
            let v = x[(base + j) as usize];
            sq += v * v;
            j += CUBE_DIM_X;
        }
        let norm = F::sqrt(cube_sum::<F>(sq));
        let mut clamped = norm;
        if clamped < F::cast_from(eps) {
            clamped = F::cast_from(eps);
        }
        let inv = F::recip(clamped);
        j = UNIT_POS_X;
        while j < n {
            let at = (base + j) as usize;
            out[at] = x[at] * inv;
            j += CUBE_DIM_X;
        }
        if UNIT_POS_X == 0 {
            norms[row as usize] = norm;
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn l2_normalize_backward_kernel<F: Float>(
    g: &Array<F>,
    y: &Array<F>,
    norms: &Array<F>,
    dx: &mut Array<F>,
    n: u32,
    rows: u32,
    eps: f32,
) {
    let row = cube_index();
    if row < rows {
        let base = row * n;
        let norm = norms[row as usize];
        let mut dot = F::new(0.0);
        let mut j = UNIT_POS_X;
        while j < n {
            let at = (base + j) as usize;
            dot += g[at] * y[at];
            j += CUBE_DIM_X;
        }
        dot = cube_sum::<F>(dot);
        let eps = F::cast_from(eps);
        j = UNIT_POS_X;
        while j < n {
            let at = (base + j) as usize;
            if norm > eps {
                dx[at] = (g[at] - y[at] * dot) / norm;
            } else {
                dx[at] = g[at] / eps;
            }
            j += CUBE_DIM_X;
        }
    }
}

/// Rows divided by their L2 norm (at least `eps`), and the norms.
pub(crate) fn l2_normalize(x: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
    let xb = first_buffer("l2_normalize", x)?;
    let (rows, n) = rows_of(x);
    let (out, norms) = (alloc(xb, xb.len), alloc(xb, rows));
    on_runtime!(
        &xb.client,
        |client, R| l2_normalize_kernel::launch::<f32, R>(
            client,
            grid(rows, 1),
            CubeDim::new_1d(ROW_UNITS),
            xb.arg::<R>(),
            out.arg::<R>(),
            norms.arg::<R>(),
            n as u32,
            rows as u32,
            eps as f32,
        )
    );
    Ok((tensor(out, x.shape())?, tensor(norms, &[rows])?))
}

pub(crate) fn l2_normalize_backward(
    g: &Tensor,
    y: &Tensor,
    norms: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    const OP: &str = "l2_normalize";
    let gb = first_buffer(OP, g)?;
    let (yb, nb) = (buffer(OP, y, gb.device)?, buffer(OP, norms, gb.device)?);
    let (rows, n) = rows_of(g);
    let dx = alloc(gb, gb.len);
    on_runtime!(
        &gb.client,
        |client, R| l2_normalize_backward_kernel::launch::<f32, R>(
            client,
            grid(rows, 1),
            CubeDim::new_1d(ROW_UNITS),
            gb.arg::<R>(),
            yb.arg::<R>(),
            nb.arg::<R>(),
            dx.arg::<R>(),
            n as u32,
            rows as u32,
            eps as f32,
        )
    );
    tensor(dx, g.shape())
}
