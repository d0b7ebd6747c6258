//! An ImageFolder: one sub-folder per class, JPEG or PNG files inside.

use std::path::Path;

use super::{Image, ImageSet};
use crate::{Error, Result};

fn is_image(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

fn sorted_entries(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| Error::data(dir, format!("cannot read folder ({e})")))?;
    let mut paths: Vec<_> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    Ok(paths)
}

/// Decodes every image; the set is gray (1 channel) if every image is, else RGB.
pub fn image_folder(root: &Path) -> Result<ImageSet> {
    if !root.is_dir() {
        return Err(Error::data(
            root,
            "no such folder; expected one sub-folder per class with JPEG/PNG images",
        ));
    }
    let class_dirs: Vec<_> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if class_dirs.is_empty() {
        return Err(Error::data(
            root,
            "no class sub-folders; expected one sub-folder per class with JPEG/PNG images",
        ));
    }
    let mut decoded = Vec::new();
    let mut classes = Vec::new();
    for (label, dir) in class_dirs.iter().enumerate() {
        let files: Vec<_> = sorted_entries(dir)?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        if files.is_empty() {
            return Err(Error::data(dir, "class folder holds no JPEG or PNG images"));
        }
        classes.push(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        for file in files {
            let img = image::open(&file)
                .map_err(|e| Error::data(&file, format!("cannot decode image ({e})")))?;
            decoded.push((img, label));
        }
    }
    let rgb = decoded.iter().any(|(img, _)| img.color().has_color());
    let mut images = Vec::with_capacity(decoded.len());
    let mut labels = Vec::with_capacity(decoded.len());
    for (img, label) in decoded {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let pixels = if rgb {
            let rgb = img.to_rgb8();
            let raw = rgb.as_raw();
            (0..3)
                .flat_map(|c| (0..w * h).map(move |i| raw[i * 3 + c]))
                .collect()
        } else {
            img.to_luma8().into_raw()
        };
        images.push(Image {
            channels: if rgb { 3 } else { 1 },
            height: h,
            width: w,
            pixels,
        });
        labels.push(label);
    }
    Ok(ImageSet {
        name: String::new(),
        images,
        labels,
        classes,
        channels: if rgb { 3 } else { 1 },
    })
}
