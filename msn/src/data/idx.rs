//! Fashion-MNIST in its original IDX format, gzipped.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::{Image, ImageSet, Split};
use crate::{Error, Result};

const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::data(path, format!("cannot open ({e}); Fashion-MNIST is expected under data/fashion-mnist (or set MSN_FASHION_MNIST)")))?;
    let mut bytes = Vec::new();
    GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::data(path, format!("not a readable gzip file ({e})")))?;
    Ok(bytes)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Parses an IDX image file: `[count, rows, cols]` then bytes.
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<Vec<Image>> {
    if bytes.len() < 16 || be_u32(bytes, 0) != 0x0803 {
        return Err(Error::data(
            path,
            "not an IDX image file (expected magic 0x00000803 and a 16-byte header)",
        ));
    }
    let (count, rows, cols) = (
        be_u32(bytes, 4) as usize,
        be_u32(bytes, 8) as usize,
        be_u32(bytes, 12) as usize,
    );
    if rows == 0 || cols == 0 {
        return Err(Error::data(
            path,
            format!("IDX header promises images of {rows}×{cols} pixels"),
        ));
    }
    // Checked: a lying header must not wrap around to the file's length.
    let expected = count
        .checked_mul(rows * cols)
        .and_then(|n| n.checked_add(16));
    if expected != Some(bytes.len()) {
        return Err(Error::data(path, format!("truncated or padded IDX file: header promises {count} images of {rows}×{cols}, file has {} bytes", bytes.len())));
    }
    Ok(bytes[16..]
        .chunks_exact(rows * cols)
        .map(|px| Image {
            channels: 1,
            height: rows,
            width: cols,
            pixels: px.to_vec(),
        })
        .collect())
}

/// Parses an IDX label file: `[count]` then one byte per label.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<usize>> {
    if bytes.len() < 8 || be_u32(bytes, 0) != 0x0801 {
        return Err(Error::data(
            path,
            "not an IDX label file (expected magic 0x00000801 and an 8-byte header)",
        ));
    }
    let count = be_u32(bytes, 4) as usize;
    if bytes.len() - 8 != count {
        return Err(Error::data(
            path,
            format!(
                "truncated or padded IDX file: header promises {count} labels, file has {} bytes",
                bytes.len() - 8
            ),
        ));
    }
    Ok(bytes[8..].iter().map(|&b| b as usize).collect())
}

pub fn fashion_mnist(dir: &Path, split: Split) -> Result<ImageSet> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let image_path = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let label_path = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let images = parse_images(&image_path, &read_gz(&image_path)?)?;
    let labels = parse_labels(&label_path, &read_gz(&label_path)?)?;
    if images.len() != labels.len() {
        return Err(Error::data(
            &label_path,
            format!("{} labels for {} images", labels.len(), images.len()),
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= CLASSES.len()) {
        return Err(Error::data(
            &label_path,
            format!("label {bad} is not one of the 10 classes"),
        ));
    }
    Ok(ImageSet::in_memory(
        String::new(),
        images,
        labels,
        CLASSES.iter().map(|s| s.to_string()).collect(),
        1,
    ))
}
