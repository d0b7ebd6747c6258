//! `msn embed`: the features of every image of a data set, with labels, as safetensors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use msn::eval::FeatureKind;
use ops::{DType, Tensor};

use crate::eval::{features_of, load_encoder};

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint of `msn pretrain`, plain timm ViT weights, or `random`.
    #[arg(long)]
    checkpoint: String,
    /// fashion-mnist[:train|:test], folder:PATH or cifar10:PATH[:train|:test].
    #[arg(long)]
    data: String,
    /// Output .safetensors: `features` [N, D] and `labels` [N].
    #[arg(long)]
    out: PathBuf,
    /// cls-prenorm (MSN's evaluation features), cls or mean-tokens.
    #[arg(long, default_value = "cls-prenorm")]
    features: String,
    /// target (EMA) or anchor.
    #[arg(long, default_value = "target")]
    encoder: String,
    /// Attention heads, for plain timm weights (default width/64).
    #[arg(long)]
    heads: Option<usize>,
    /// Where to run the encoder: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: ops::Device,
}

pub fn run(args: Args) -> Result<()> {
    let kind: FeatureKind = args.features.parse()?;
    let set = msn::data::open(&args.data)?;
    let (model, norm, what) =
        load_encoder(&args.checkpoint, &args.encoder, args.heads, set.channels)?;
    crate::device::check_built(args.device)?;
    let model = model.to_device(args.device)?;
    let features = features_of(&model, &set, kind, &norm)?;
    let labels = Tensor::from_f64s(
        &set.labels.iter().map(|&l| l as f64).collect::<Vec<_>>(),
        &[set.len()],
        DType::F32,
    )?;
    let meta = BTreeMap::from([
        ("msn.features".to_string(), args.features.clone()),
        ("msn.source".to_string(), what.clone()),
        ("msn.data".to_string(), args.data.clone()),
        ("msn.classes".to_string(), set.classes.join(",")),
    ]);
    vit::write_safetensors(
        &args.out,
        &[
            ("features".into(), features.clone()),
            ("labels".into(), labels),
        ],
        &meta,
    )?;
    println!(
        "wrote {} features of {} images ({}-d, from {what}) to {}",
        args.features,
        set.len(),
        features.shape()[1],
        args.out.display()
    );
    Ok(())
}
