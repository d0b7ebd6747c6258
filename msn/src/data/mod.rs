//! Image data sets behind one interface: the embedded Fashion-MNIST, a folder
//! of class sub-folders (ImageFolder), and CIFAR-10's binary batches.

mod cifar;
mod folder;
mod idx;

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One decoded image, 8-bit, channel-major (`[C, H, W]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
}

/// Labelled images, all with the same channel count.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// How the set was named on the command line.
    pub name: String,
    pub images: Vec<Image>,
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
    pub channels: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Where the embedded Fashion-MNIST lives: `MSN_FASHION_MNIST` if set, else
/// the repository's `data/fashion-mnist`.
pub fn fashion_mnist_dir() -> PathBuf {
    std::env::var_os("MSN_FASHION_MNIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fashion-mnist"))
}

fn split_suffix(spec: &str) -> (&str, Split) {
    if let Some(rest) = spec.strip_suffix(":train") {
        (rest, Split::Train)
    } else if let Some(rest) = spec.strip_suffix(":test") {
        (rest, Split::Test)
    } else {
        (spec, Split::Train)
    }
}

/// Opens a data source: `fashion-mnist[:train|:test]`, `folder:PATH`, or
/// `cifar10:PATH[:train|:test]` (train is the default split).
pub fn open(source: &str) -> Result<ImageSet> {
    let mut set = if source == "fashion-mnist" || source.starts_with("fashion-mnist:") {
        let (_, split) = split_suffix(source);
        idx::fashion_mnist(&fashion_mnist_dir(), split)?
    } else if let Some(path) = source.strip_prefix("folder:") {
        folder::image_folder(Path::new(path))?
    } else if let Some(rest) = source.strip_prefix("cifar10:") {
        let (path, split) = split_suffix(rest);
        cifar::cifar10(Path::new(path), split)?
    } else {
        return Err(Error::Source(source.to_string()));
    };
    set.name = source.to_string();
    Ok(set)
}

pub use cifar::write_cifar10_batch;

/// Fashion-MNIST's IDX files from `dir`.
pub fn fashion_mnist_from(dir: &Path, split: Split) -> Result<ImageSet> {
    idx::fashion_mnist(dir, split)
}
