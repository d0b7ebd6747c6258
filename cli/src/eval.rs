//! `msn eval`: what an encoder learned, measured with few labels — few-shot
//! logistic regression, a linear probe and k-NN — beside built-in baselines
//! (`--checkpoint random`, `--features pixels`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use msn::config::PretrainConfig;
use msn::data::ImageSet;
use msn::eval::{self, FeatureKind, Normalisation};
use ops::Tensor;
use rand::SeedableRng;
use serde_json::json;
use vit::VisionTransformer;

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint of `msn pretrain`, plain timm ViT weights, or `random` (a freshly initialised fmnist-tiny encoder).
    #[arg(long, default_value = "random")]
    checkpoint: String,
    /// Training (labelled) data; fashion-mnist and cifar10:PATH use their test split for testing.
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// Test data, for sources without a test split (e.g. folder:PATH).
    #[arg(long)]
    test_data: Option<String>,
    /// cls-prenorm (MSN's), cls, mean-tokens, or pixels (raw pixels, no encoder).
    #[arg(long, default_value = "cls-prenorm")]
    features: String,
    /// Which encoder of a checkpoint: target (EMA, MSN's choice) or anchor.
    #[arg(long, default_value = "target")]
    encoder: String,
    /// Comma-separated: fewshot, linear, knn.
    #[arg(long, value_delimiter = ',', default_value = "fewshot,linear,knn")]
    protocol: Vec<String>,
    /// Labelled images per class for the few-shot protocol.
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10")]
    shots: Vec<usize>,
    /// Random labelled subsets per shot count.
    #[arg(long, default_value_t = 5)]
    draws: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Attention heads, for plain timm weights (default width/64).
    #[arg(long)]
    heads: Option<usize>,
    /// Also write the table as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where to run the encoder: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: ops::Device,
}

fn test_source(args: &Args) -> Result<String> {
    if let Some(t) = &args.test_data {
        return Ok(t.clone());
    }
    let base = msn::data::without_split(&args.data);
    if base == "fashion-mnist" || base.starts_with("cifar10:") {
        Ok(format!("{base}:test"))
    } else {
        bail!(
            "--data {} has no test split; give one with --test-data",
            args.data
        )
    }
}

/// The encoder to evaluate and its normalisation statistics.
pub fn load_encoder(
    checkpoint: &str,
    encoder: &str,
    heads: Option<usize>,
    channels: usize,
) -> Result<(VisionTransformer, Normalisation, String)> {
    let use_anchor = match encoder {
        "target" => false,
        "anchor" => true,
        other => bail!("unknown --encoder `{other}`; expected target or anchor"),
    };
    if checkpoint == "random" {
        let config = PretrainConfig::fmnist_tiny().encoder;
        let model = VisionTransformer::new(config, &mut rand::rngs::StdRng::seed_from_u64(0))?;
        return Ok((
            model,
            eval::default_normalisation(channels),
            "a randomly initialised fmnist-tiny encoder".into(),
        ));
    }
    let path = PathBuf::from(checkpoint);
    if !path.is_file() {
        bail!("checkpoint {checkpoint}: no such file; expected a .safetensors file or `random`");
    }
    let (model, norm) = eval::encoder_from_file(&path, use_anchor, heads)?;
    Ok((
        model,
        norm.unwrap_or_else(|| eval::default_normalisation(channels)),
        format!("the {encoder} encoder of {checkpoint}"),
    ))
}

pub fn features_of(
    model: &VisionTransformer,
    set: &ImageSet,
    kind: FeatureKind,
    norm: &Normalisation,
) -> Result<Tensor> {
    let bar = ProgressBar::new(set.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "features {msg} {bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    bar.set_message(set.name.clone());
    let out = eval::extract_features(model, set, kind, (&norm.0, &norm.1), |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    Ok(out)
}

pub fn run(args: Args) -> Result<()> {
    for p in &args.protocol {
        if !["fewshot", "linear", "knn"].contains(&p.as_str()) {
            bail!("unknown protocol `{p}`; expected fewshot, linear or knn");
        }
    }
    if args.draws == 0 || args.shots.contains(&0) {
        bail!("--draws and every --shots value must be at least 1");
    }
    let train = msn::data::open(&args.data)?;
    let test = msn::data::open(&test_source(&args)?)?;
    let classes = train.classes.len();
    if let Some(&too_many) = args
        .shots
        .iter()
        .find(|&&s| (0..classes).any(|c| train.labels.iter().filter(|&&l| l == c).count() < s))
    {
        bail!(
            "--shots {too_many} is larger than the smallest class of {}",
            args.data
        );
    }
    // Few-shot alone needs only the sampled training images: extract just those.
    let draws: Vec<(usize, Vec<usize>)> = args
        .shots
        .iter()
        .flat_map(|&shots| (0..args.draws).map(move |draw| (shots, draw)))
        .map(|(shots, draw)| {
            let seed = args
                .seed
                .wrapping_mul(1000)
                .wrapping_add((shots * 100 + draw) as u64);
            Ok((
                shots,
                eval::sample_shots(&train.labels, classes, shots, seed)?,
            ))
        })
        .collect::<Result<_>>()?;
    let needs_all = args.protocol.iter().any(|p| p != "fewshot");
    let used: Vec<usize> = if needs_all {
        (0..train.len()).collect()
    } else {
        let mut used: Vec<usize> = draws
            .iter()
            .flat_map(|(_, idx)| idx.iter().copied())
            .collect();
        used.sort_unstable();
        used.dedup();
        used
    };
    let mut subset = train.subset(&used);
    subset.name = format!("{} ({} images)", train.name, used.len());
    let (train_x, test_x, described) = if args.features == "pixels" {
        (
            eval::pixel_features(&subset)?,
            eval::pixel_features(&test)?,
            "raw pixels".to_string(),
        )
    } else {
        let kind: FeatureKind = args.features.parse()?;
        let (model, norm, what) =
            load_encoder(&args.checkpoint, &args.encoder, args.heads, train.channels)?;
        crate::device::check_built(args.device)?;
        let model = model.to_device(args.device)?;
        if model.config.in_channels != train.channels {
            bail!(
                "{what} expects {} channel(s) but {} has {}",
                model.config.in_channels,
                args.data,
                train.channels
            );
        }
        let desc = format!(
            "{} features ({}-d) of {what}",
            args.features, model.config.width
        );
        (
            features_of(&model, &subset, kind, &norm)?,
            features_of(&model, &test, kind, &norm)?,
            desc,
        )
    };
    let (train_x, test_x) = (
        eval::preprocess_rows(&train_x)?,
        eval::preprocess_rows(&test_x)?,
    );
    // Row of each training image in `train_x`.
    let row_of = |i: usize| {
        used.binary_search(&i)
            .expect("every sampled image was extracted")
    };
    println!(
        "{described}; train {} ({} images), test {} images",
        args.data,
        train.len(),
        test.len()
    );
    println!("{:<12} {:>6}  {:>16}", "protocol", "shots", "test accuracy");
    let mut rows = Vec::new();
    for protocol in &args.protocol {
        match protocol.as_str() {
            "fewshot" => {
                for &shots in &args.shots {
                    let mut accs = Vec::new();
                    for (_, idx) in draws.iter().filter(|(s, _)| *s == shots) {
                        let rows: Vec<usize> = idx.iter().map(|&i| row_of(i)).collect();
                        let x = train_x.index_select(0, &rows)?;
                        let y: Vec<usize> = idx.iter().map(|&i| train.labels[i]).collect();
                        let model =
                            eval::fit_logistic(&x, &y, classes, 0.0025 / idx.len() as f64, 300)?;
                        accs.push(model.accuracy(&test_x, &test.labels)?);
                    }
                    let (mean, std) = eval::mean_std(&accs);
                    println!(
                        "{:<12} {:>6}  {:>8.2} ± {:.2} %",
                        "few-shot",
                        shots,
                        100.0 * mean,
                        100.0 * std
                    );
                    rows.push(json!({"protocol": "fewshot", "shots": shots, "mean": mean, "std": std, "draws": accs}));
                }
            }
            "linear" => {
                let model = eval::fit_logistic(
                    &train_x,
                    &subset.labels,
                    classes,
                    0.0025 / train.len() as f64,
                    300,
                )?;
                let acc = model.accuracy(&test_x, &test.labels)?;
                println!("{:<12} {:>6}  {:>8.2} %", "linear", "all", 100.0 * acc);
                rows.push(json!({"protocol": "linear", "shots": "all", "mean": acc}));
            }
            _ => {
                let acc = eval::knn_accuracy(
                    &train_x,
                    &subset.labels,
                    &test_x,
                    &test.labels,
                    classes,
                    20,
                    0.07,
                )?;
                println!("{:<12} {:>6}  {:>8.2} %", "k-NN (k=20)", "all", 100.0 * acc);
                rows.push(json!({"protocol": "knn", "k": 20, "temperature": 0.07, "shots": "all", "mean": acc}));
            }
        }
    }
    if let Some(path) = &args.json {
        let doc = json!({"features": described, "checkpoint": args.checkpoint, "data": args.data, "seed": args.seed, "results": rows});
        vit::write_atomically(path, serde_json::to_string_pretty(&doc)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
