//! k-nearest-neighbour classification by cosine similarity with DINO's
//! temperature-weighted vote: each of the k nearest training images votes for
//! its class with weight exp(similarity / T).

use ops::Tensor;

use crate::Result;

/// Accuracy on `test` (rows L2-normalised by the caller) against `train`.
pub fn knn_accuracy(
    train: &Tensor,
    train_labels: &[usize],
    test: &Tensor,
    test_labels: &[usize],
    classes: usize,
    k: usize,
    temperature: f64,
) -> Result<f64> {
    let n_train = train.shape()[0];
    let k = k.min(n_train);
    let mut correct = 0usize;
    let mut order: Vec<usize> = Vec::with_capacity(n_train);
    for start in (0..test.shape()[0]).step_by(512) {
        let rows = (test.shape()[0] - start).min(512);
        let sims = test.narrow(0, start, rows)?.matmul_nt(train)?.to_vec_f32();
        for (r, row) in sims.chunks(n_train).enumerate() {
            order.clear();
            order.extend(0..n_train);
            order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            let mut votes = vec![0.0f64; classes];
            for &j in &order[..k] {
                votes[train_labels[j]] += (row[j] as f64 / temperature).exp();
            }
            let predicted = votes
                .iter()
                .enumerate()
                .fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                .0;
            if predicted == test_labels[start + r] {
                correct += 1;
            }
        }
    }
    Ok(correct as f64 / test_labels.len().max(1) as f64)
}
