//! CIFAR-10's binary batches: records of one label byte and 32×32×3 pixel bytes (R, G, B planes).

use std::path::{Path, PathBuf};

use super::{Image, ImageSet, Split};
use crate::{Error, Result};

const RECORD: usize = 1 + 3 * 32 * 32;
const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

fn batch_files(root: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let dir = if root.join("cifar-10-batches-bin").is_dir() {
        root.join("cifar-10-batches-bin")
    } else {
        root.to_path_buf()
    };
    let names: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    };
    let present: Vec<PathBuf> = names
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    if present.is_empty() {
        return Err(Error::data(
            &dir,
            format!(
                "no CIFAR-10 binary batches found; expected {}",
                names.join(", ")
            ),
        ));
    }
    Ok(present)
}

pub fn cifar10(root: &Path, split: Split) -> Result<ImageSet> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in batch_files(root, split)? {
        let bytes =
            std::fs::read(&path).map_err(|e| Error::data(&path, format!("cannot read ({e})")))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(Error::data(&path, format!("{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated file?)", bytes.len())));
        }
        for record in bytes.chunks_exact(RECORD) {
            if record[0] as usize >= CLASSES.len() {
                return Err(Error::data(
                    &path,
                    format!("label {} is not one of the 10 classes", record[0]),
                ));
            }
            labels.push(record[0] as usize);
            images.push(Image {
                channels: 3,
                height: 32,
                width: 32,
                pixels: record[1..].to_vec(),
            });
        }
    }
    Ok(ImageSet::in_memory(
        String::new(),
        images,
        labels,
        CLASSES.iter().map(|s| s.to_string()).collect(),
        3,
    ))
}

/// Writes images (32×32 RGB) and labels in CIFAR-10's binary record layout.
pub fn write_cifar10_batch(path: &Path, images: &[Image], labels: &[usize]) -> Result<()> {
    let mut bytes = Vec::with_capacity(images.len() * RECORD);
    for (img, &label) in images.iter().zip(labels) {
        if (img.channels, img.height, img.width) != (3, 32, 32) {
            return Err(Error::data(
                path,
                format!(
                    "CIFAR-10 records hold 3×32×32 images, got {}×{}×{}",
                    img.channels, img.height, img.width
                ),
            ));
        }
        bytes.push(label as u8);
        bytes.extend_from_slice(&img.pixels);
    }
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}
