//! `msn viz`: pictures of what MSN sees and learns — the views of a few
//! images with the dropped patches shown, the last block's CLS attention over
//! each image, and how a batch's targets spread over the prototypes.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use msn::config::PretrainConfig;
use msn::views::make_batch;
use ops::Tensor;
use plotters::prelude::*;

use crate::eval::load_encoder;

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint of `msn pretrain` (or `random`).
    #[arg(long, default_value = "random")]
    checkpoint: String,
    #[arg(long, default_value = "fashion-mnist:test")]
    data: String,
    /// Output folder for views.png, attention.png and prototypes.png.
    #[arg(long, default_value = "runs/viz")]
    out: PathBuf,
    /// How many images to draw.
    #[arg(long, default_value_t = 8)]
    images: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

const SCALE: u32 = 4;
const GAP: u32 = 6;

/// Pixel `(x, y)` of image `i` of a `[B, C, S, S]` tensor as RGB in [0, 1] (normalisation undone).
fn pixel(
    t: &[f32],
    dims: (usize, usize),
    i: usize,
    x: usize,
    y: usize,
    norm: &(Vec<f32>, Vec<f32>),
) -> [f32; 3] {
    let (c, s) = dims;
    let at = |ch: usize| {
        let v = t[((i * c + ch) * s + y) * s + x];
        (v * norm.1[ch % norm.1.len()] + norm.0[ch % norm.0.len()]).clamp(0.0, 1.0)
    };
    if c == 1 {
        [at(0); 3]
    } else {
        [at(0), at(1), at(2)]
    }
}

fn rgb(v: [f32; 3]) -> RGBColor {
    RGBColor(
        (v[0] * 255.0) as u8,
        (v[1] * 255.0) as u8,
        (v[2] * 255.0) as u8,
    )
}

/// Draws image `i` of `images` at `(left, top)`, each source pixel a `cell×cell` square;
/// `shade(x, y)` may replace a pixel's colour.
fn draw_image<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    images: &Tensor,
    i: usize,
    (left, top, cell): (u32, u32, u32),
    norm: &(Vec<f32>, Vec<f32>),
    shade: impl Fn(usize, usize, [f32; 3]) -> [f32; 3],
) -> Result<()> {
    let (c, s) = (images.shape()[1], images.shape()[2]);
    let data = images.data::<f32>()?;
    for y in 0..s {
        for x in 0..s {
            let colour = rgb(shade(x, y, pixel(data, (c, s), i, x, y, norm)));
            let (x0, y0) = (
                (left + x as u32 * cell) as i32,
                (top + y as u32 * cell) as i32,
            );
            area.draw(&Rectangle::new(
                [(x0, y0), (x0 + cell as i32, y0 + cell as i32)],
                colour.filled(),
            ))
            .map_err(|e| anyhow!("{e}"))?;
        }
    }
    Ok(())
}

fn heat(v: f32) -> [f32; 3] {
    [
        v.clamp(0.0, 1.0),
        (1.0 - (2.0 * v - 1.0).abs()).clamp(0.0, 1.0),
        (1.0 - v).clamp(0.0, 1.0),
    ]
}

pub fn run(args: Args) -> Result<()> {
    if args.images == 0 {
        bail!("--images must be at least 1");
    }
    let set = msn::data::open(&args.data)?;
    let n = args.images.min(set.len());
    let config = if args.checkpoint == "random" {
        PretrainConfig::fmnist_tiny()
    } else {
        msn::checkpoint::read_config(Path::new(&args.checkpoint))?.0
    };
    let (encoder, norm, _) = load_encoder(&args.checkpoint, "target", None, set.channels)?;
    std::fs::create_dir_all(&args.out)?;
    let indices: Vec<usize> = (0..n)
        .map(|i| (i * 997 + args.seed as usize) % set.len())
        .collect();
    let batch = make_batch(&set, &indices, &config.views, args.seed)?;
    let size = config.views.anchor.size as u32;
    let grid = size as usize / config.views.patch_size;

    // views.png: target | anchor with dropped patches | focal views.
    let columns = 2 + config.views.focal_views as u32;
    let (w, h) = (
        columns * (size * SCALE + GAP),
        n as u32 * (size * SCALE + GAP),
    );
    let path = args.out.join("views.png");
    {
        let root = BitMapBackend::new(&path, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        for i in 0..n {
            let top = i as u32 * (size * SCALE + GAP);
            draw_image(&root, &batch.target, i, (0, top, SCALE), &norm, |_, _, c| c)?;
            let p = config.views.patch_size;
            let kept = &batch.keep;
            draw_image(
                &root,
                &batch.anchor,
                i,
                (size * SCALE + GAP, top, SCALE),
                &norm,
                |x, y, c| {
                    if kept.contains(&((y / p) * grid + x / p)) {
                        c
                    } else {
                        [0.55 + 0.2 * c[0], 0.2 * c[1], 0.2 * c[2]]
                    }
                },
            )?;
            if let Some(focal) = &batch.focal {
                let fsize = focal.shape()[2] as u32;
                let cell = (size * SCALE / fsize).max(1);
                for v in 0..config.views.focal_views {
                    let left = (2 + v as u32) * (size * SCALE + GAP);
                    draw_image(
                        &root,
                        focal,
                        v * n + i,
                        (left, top, cell),
                        &norm,
                        |_, _, c| c,
                    )?;
                }
            }
        }
        root.present()
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }

    // attention.png: image | CLS attention of the last block (mean over heads).
    let images = batch.target.clone();
    let maps = encoder.cls_attention_map(&images)?.to_vec_f32();
    let cells = grid * grid;
    let path_att = args.out.join("attention.png");
    {
        let root = BitMapBackend::new(&path_att, (2 * (size * SCALE + GAP), h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        for i in 0..n {
            let top = i as u32 * (size * SCALE + GAP);
            let map = &maps[i * cells..(i + 1) * cells];
            let max = map.iter().copied().fold(f32::MIN, f32::max).max(1e-12);
            draw_image(&root, &images, i, (0, top, SCALE), &norm, |_, _, c| c)?;
            let p = config.views.patch_size;
            draw_image(
                &root,
                &images,
                i,
                (size * SCALE + GAP, top, SCALE),
                &norm,
                |x, y, c| {
                    let a = map[((y / p).min(grid - 1)) * grid + (x / p).min(grid - 1)] / max;
                    let hcol = heat(a);
                    [
                        0.4 * c[0] + 0.6 * hcol[0],
                        0.4 * c[1] + 0.6 * hcol[1],
                        0.4 * c[2] + 0.6 * hcol[2],
                    ]
                },
            )?;
        }
        root.present()
            .map_err(|e| anyhow!("{}: {e}", path_att.display()))?;
    }
    println!("wrote {} and {}", path.display(), path_att.display());

    // prototypes.png: needs the run folder (target head and prototypes).
    let dir = Path::new(&args.checkpoint)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if args.checkpoint == "random" || !msn::checkpoint::is_run(&dir) {
        println!("no training run beside the checkpoint: prototypes.png skipped");
        return Ok(());
    }
    let trainer = msn::checkpoint::load(&dir)?;
    let all: Vec<usize> = (0..config.batch_size.min(set.len()))
        .map(|i| (i * 7919 + 13) % set.len())
        .collect();
    let big = make_batch(&set, &all, &config.views, args.seed + 1)?;
    let (h_out, _) = trainer.target.forward(&big.target, None)?;
    let q = msn::loss::msn_targets(&h_out, &trainer.prototypes, &config.loss)?;
    let k = config.prototypes;
    let mut counts = vec![0u32; k];
    for row in q.to_vec_f32().chunks(k) {
        let arg = row
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (j, &v)| if v > b.1 { (j, v) } else { b })
            .0;
        counts[arg] += 1;
    }
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let used = counts.iter().filter(|&&c| c > 0).count();
    crate::plot::plot_bars(
        &counts,
        &args.out.join("prototypes.png"),
        &format!(
            "target arg-max per prototype, {} images: {used} of {k} used",
            all.len()
        ),
    )?;
    println!("wrote {}", args.out.join("prototypes.png").display());
    Ok(())
}
