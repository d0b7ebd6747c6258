//! Image data sets behind one interface: the embedded Fashion-MNIST and
//! CIFAR-10's binary batches, held decoded in memory, and a folder of class
//! sub-folders (ImageFolder), held as an index of paths and decoded when a
//! batch needs an image.

mod cifar;
mod folder;
pub mod idx;
mod pixels;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use folder::FileIndex;
pub use pixels::{DecodeTally, Layout, Pixels};

use crate::{Error, Result};

/// One decoded image, 8-bit, channel-major (`[C, H, W]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
}

/// Where a set's images are.
#[derive(Clone, Debug)]
enum Storage {
    /// Decoded, for the small sets (Fashion-MNIST, CIFAR-10).
    Memory(Arc<Vec<Image>>),
    /// Files, decoded one at a time when asked for.
    Files(Arc<FileIndex>),
}

/// Labelled images, all with the same channel count (a file whose own
/// count differs is converted when it is decoded).
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// How the set was named on the command line.
    pub name: String,
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
    pub channels: usize,
    storage: Storage,
}

impl ImageSet {
    /// A set of decoded images (each with `channels` channels).
    pub fn in_memory(
        name: impl Into<String>,
        images: Vec<Image>,
        labels: Vec<usize>,
        classes: Vec<String>,
        channels: usize,
    ) -> Self {
        ImageSet {
            name: name.into(),
            labels,
            classes,
            channels,
            storage: Storage::Memory(Arc::new(images)),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// True when the images are files decoded on demand.
    pub fn is_streamed(&self) -> bool {
        matches!(self.storage, Storage::Files(_))
    }

    /// Where image `i` comes from, for messages: its path, or its index.
    pub fn describe(&self, i: usize) -> String {
        match &self.storage {
            Storage::Memory(_) => format!("image {i} of {}", self.name),
            Storage::Files(index) => index.path(i).display().to_string(),
        }
    }

    /// Image `i` as its source holds it (borrowed when in memory, decoded
    /// from its file otherwise), with its own channel count.
    pub fn pixels(&self, i: usize) -> Result<Pixels<'_>> {
        match &self.storage {
            Storage::Memory(images) => Ok(Pixels::planar(&images[i])),
            Storage::Files(index) => index.decode(i),
        }
    }

    /// Image `i` decoded, channel-major, with the set's channel count.
    pub fn image(&self, i: usize) -> Result<Cow<'_, Image>> {
        match &self.storage {
            Storage::Memory(images) => Ok(Cow::Borrowed(&images[i])),
            Storage::Files(index) => Ok(Cow::Owned(index.decode(i)?.to_image(self.channels))),
        }
    }

    /// The images at `indices`, in that order, as a set of their own.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let storage = match &self.storage {
            Storage::Memory(images) => Storage::Memory(Arc::new(
                indices.iter().map(|&i| images[i].clone()).collect(),
            )),
            Storage::Files(index) => Storage::Files(Arc::new(index.subset(indices))),
        };
        ImageSet {
            name: self.name.clone(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            channels: self.channels,
            storage,
        }
    }

    /// How many decoded images of this set are alive now, and the most
    /// ever at once (files only; in-memory images are not counted).
    pub fn decode_tally(&self) -> Option<&DecodeTally> {
        match &self.storage {
            Storage::Memory(_) => None,
            Storage::Files(index) => Some(index.tally()),
        }
    }

    /// Files the folder scan passed over because they are not JPEG or PNG.
    pub fn ignored_files(&self) -> usize {
        match &self.storage {
            Storage::Memory(_) => 0,
            Storage::Files(index) => index.ignored,
        }
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

/// A part of a training split held out to choose recipes on: every sixth
/// image (index 5, 11, 17, …), so it is stratified for a folder sorted by
/// class as much as for a shuffled set: Fashion-MNIST's 60,000 training
/// images give 50,000 to fit and 10,000 to validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holdout {
    /// The training split without the validation images.
    Fit,
    /// The validation images alone.
    Val,
}

/// Every `VALIDATION_EVERY`-th training image is a validation image.
pub const VALIDATION_EVERY: usize = 6;

/// The indices of `len` training images that `holdout` keeps.
pub fn holdout_indices(len: usize, holdout: Holdout) -> Vec<usize> {
    let is_val = |i: &usize| i % VALIDATION_EVERY == VALIDATION_EVERY - 1;
    match holdout {
        Holdout::Fit => (0..len).filter(|i| !is_val(i)).collect(),
        Holdout::Val => (0..len).filter(is_val).collect(),
    }
}

/// The split a source names, and the source without it.
fn split_suffix(spec: &str) -> (&str, Split, Option<Holdout>) {
    for (suffix, split, holdout) in [
        (":train", Split::Train, None),
        (":test", Split::Test, None),
        (":fit", Split::Train, Some(Holdout::Fit)),
        (":val", Split::Train, Some(Holdout::Val)),
    ] {
        if let Some(rest) = spec.strip_suffix(suffix) {
            return (rest, split, holdout);
        }
    }
    (spec, Split::Train, None)
}

/// The source without its split: `fashion-mnist:fit` → `fashion-mnist`.
pub fn without_split(source: &str) -> &str {
    split_suffix(source).0
}

/// Opens a data source: `fashion-mnist`, `cifar10:PATH` or `folder:PATH`,
/// each with an optional split: `:train` (the default), `:test` (not for
/// folders), or `:fit` and `:val`, the training split without and with
/// only its validation images ([`Holdout`]).
pub fn open(source: &str) -> Result<ImageSet> {
    let set = if source == "fashion-mnist" || source.starts_with("fashion-mnist:") {
        let (base, split, holdout) = split_suffix(source);
        if base != "fashion-mnist" {
            return Err(Error::Source(source.to_string()));
        }
        holdout_of(idx::fashion_mnist(&fashion_mnist_dir(), split)?, holdout)
    } else if let Some(rest) = source.strip_prefix("folder:") {
        let (path, split, holdout) = split_suffix(rest);
        if split == Split::Test {
            return Err(Error::data(
                path,
                "a folder has no test split; give the test images' own folder",
            ));
        }
        holdout_of(folder::image_folder(Path::new(path))?, holdout)
    } else if let Some(rest) = source.strip_prefix("cifar10:") {
        let (path, split, holdout) = split_suffix(rest);
        holdout_of(cifar::cifar10(Path::new(path), split)?, holdout)
    } else {
        return Err(Error::Source(source.to_string()));
    };
    Ok(ImageSet {
        name: source.to_string(),
        ..set
    })
}

fn holdout_of(set: ImageSet, holdout: Option<Holdout>) -> ImageSet {
    match holdout {
        Some(h) => set.subset(&holdout_indices(set.len(), h)),
        None => set,
    }
}

pub use cifar::write_cifar10_batch;

/// Fashion-MNIST's IDX files from `dir`.
pub fn fashion_mnist_from(dir: &Path, split: Split) -> Result<ImageSet> {
    idx::fashion_mnist(dir, split)
}
