//! Measuring an encoder while it trains (`msn pretrain --eval-every N`):
//! k-NN and a quick few-shot logistic regression on a fixed labelled subset,
//! the online monitor of self-supervised tools. Both read the same features
//! as `msn eval` (CLS before the final norm, rows centred and L2-normalised).

use std::time::Instant;

use serde::Serialize;
use vit::VisionTransformer;

use super::{extract_features, fit_logistic, knn_accuracy, preprocess_rows, sample_shots};
use super::{mean_std, FeatureKind};
use crate::data::ImageSet;
use crate::{Error, Result};

/// One measurement, as a line of `metrics.jsonl` carries it.
#[derive(Clone, Debug, Serialize)]
pub struct MonitorReport {
    /// k-NN accuracy (k = 20, DINO's vote) of the queries against the bank.
    pub knn: f64,
    /// Few-shot accuracy on the queries: mean over draws of `shots` labelled bank images per class.
    pub fewshot: f64,
    pub shots: usize,
    /// Seconds the measurement took (features included).
    pub seconds: f64,
}

/// A fixed labelled subset: a bank of labelled images and queries to classify.
pub struct Monitor {
    bank: ImageSet,
    queries: ImageSet,
    classes: usize,
    shots: usize,
    draws: usize,
    seed: u64,
}

impl Monitor {
    /// Takes `images` of `set`, evenly spread over it; every fourth is a
    /// query, the rest the bank. Few-shot draws `shots` per class, `draws` times.
    pub fn new(
        set: &ImageSet,
        images: usize,
        shots: usize,
        draws: usize,
        seed: u64,
    ) -> Result<Self> {
        let images = images.min(set.len());
        if images < 8 || shots == 0 || draws == 0 {
            return Err(Error::Config(format!(
                "the monitor needs at least 8 images (got {images} of {}), 1 shot and 1 draw",
                set.name
            )));
        }
        let (mut bank, mut queries) = (Vec::new(), Vec::new());
        for k in 0..images {
            let i = k * set.len() / images;
            if k % 4 == 3 {
                queries.push(i);
            } else {
                bank.push(i);
            }
        }
        let monitor = Monitor {
            bank: set.subset(&bank),
            queries: set.subset(&queries),
            classes: set.classes.len(),
            shots,
            draws,
            seed,
        };
        // Refuse a bank too small for the shots now, not mid-run.
        sample_shots(&monitor.bank.labels, monitor.classes, shots, seed)?;
        Ok(monitor)
    }

    /// Images measured each time (bank and queries).
    pub fn len(&self) -> usize {
        self.bank.len() + self.queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// k-NN and few-shot accuracy of `encoder`'s features.
    pub fn measure(
        &self,
        encoder: &VisionTransformer,
        normalisation: (&[f32], &[f32]),
    ) -> Result<MonitorReport> {
        let start = Instant::now();
        let features = |set: &ImageSet| -> Result<_> {
            let f = extract_features(encoder, set, FeatureKind::ClsPrenorm, normalisation, |_| {})?;
            preprocess_rows(&f)
        };
        let (bank, queries) = (features(&self.bank)?, features(&self.queries)?);
        let knn = knn_accuracy(
            &bank,
            &self.bank.labels,
            &queries,
            &self.queries.labels,
            self.classes,
            20,
            0.07,
        )?;
        let mut accuracies = Vec::with_capacity(self.draws);
        for draw in 0..self.draws {
            let rows = sample_shots(
                &self.bank.labels,
                self.classes,
                self.shots,
                self.seed + draw as u64,
            )?;
            let x = bank.index_select(0, &rows)?;
            let y: Vec<usize> = rows.iter().map(|&i| self.bank.labels[i]).collect();
            let model = fit_logistic(&x, &y, self.classes, 0.0025 / rows.len() as f64, 300)?;
            accuracies.push(model.accuracy(&queries, &self.queries.labels)?);
        }
        Ok(MonitorReport {
            knn,
            fewshot: mean_std(&accuracies).0,
            shots: self.shots,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
