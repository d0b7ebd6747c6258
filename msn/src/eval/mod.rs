//! Evaluation with few labels (`msn-spec.md` §7): features from a frozen
//! encoder, then few-shot logistic regression, a linear probe and k-NN.

mod features;
mod knn;
mod logistic;
mod monitor;

pub use features::{
    default_normalisation, encoder_from_file, extract_features, pixel_features, preprocess_rows,
    FeatureKind, Normalisation,
};
pub use knn::knn_accuracy;
pub use logistic::{fit_logistic, LogisticModel};
pub use monitor::{Monitor, MonitorReport};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::{Error, Result};

/// `shots` random indices per class (sorted by class), drawn with `seed`.
pub fn sample_shots(
    labels: &[usize],
    classes: usize,
    shots: usize,
    seed: u64,
) -> Result<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen = Vec::with_capacity(classes * shots);
    for class in 0..classes {
        let mut members: Vec<usize> = labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == class)
            .map(|(i, _)| i)
            .collect();
        if members.len() < shots {
            return Err(Error::Config(format!(
                "{shots} shots requested but class {class} has only {} training images",
                members.len()
            )));
        }
        members.shuffle(&mut rng);
        chosen.extend_from_slice(&members[..shots]);
    }
    Ok(chosen)
}

/// Mean and (population) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}
