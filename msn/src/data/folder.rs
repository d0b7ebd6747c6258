//! An ImageFolder: one sub-folder per class, JPEG or PNG files anywhere
//! below it. The folder is scanned once into an index of paths and labels;
//! an image is read and decoded only when a batch needs it, so memory does
//! not grow with the number of images.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::pixels::{decode_file, DecodeTally, Pixels};
use super::{ImageSet, Storage};
use crate::{Error, Result};

/// How deep a class folder may nest: past this a symbolic link loops.
const MAX_DEPTH: usize = 64;
/// Files whose headers are read at open to choose the set's channel count.
const CHANNEL_PROBES: usize = 32;

/// The image files of a folder: paths relative to its root, packed into one
/// buffer (a million ImageNet paths take about 40 MB, not a `PathBuf` each).
#[derive(Debug)]
pub struct FileIndex {
    root: PathBuf,
    /// The relative paths' OS-encoded bytes, end to end.
    names: Vec<u8>,
    /// Where each path ends in `names`.
    ends: Vec<usize>,
    /// Files passed over because they are not JPEG or PNG.
    pub(super) ignored: usize,
    tally: Arc<DecodeTally>,
}

impl FileIndex {
    fn relative(&self, i: usize) -> &OsStr {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        // SAFETY: `names` holds only whole paths taken from
        // `OsStr::as_encoded_bytes` in this process, cut at their own ends.
        unsafe { OsStr::from_encoded_bytes_unchecked(&self.names[start..self.ends[i]]) }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The full path of file `i`.
    pub fn path(&self, i: usize) -> PathBuf {
        self.root.join(self.relative(i))
    }

    /// Reads and decodes file `i`.
    pub fn decode(&self, i: usize) -> Result<Pixels<'static>> {
        let path = self.path(i);
        let bytes =
            std::fs::read(&path).map_err(|e| Error::data(&path, format!("cannot read ({e})")))?;
        decode_file(&path, &bytes, &self.tally)
    }

    pub(super) fn tally(&self) -> &DecodeTally {
        &self.tally
    }

    fn empty(root: &Path) -> Self {
        FileIndex {
            root: root.to_path_buf(),
            names: Vec::new(),
            ends: Vec::new(),
            ignored: 0,
            tally: Arc::default(),
        }
    }

    /// Adds `other`'s files (under the same root) after this index's.
    fn append(&mut self, other: FileIndex) {
        let offset = self.names.len();
        self.names.extend_from_slice(&other.names);
        self.ends.extend(other.ends.iter().map(|e| e + offset));
        self.ignored += other.ignored;
    }

    /// The files at `indices`, in that order (with a tally of their own).
    pub(super) fn subset(&self, indices: &[usize]) -> FileIndex {
        let mut index = FileIndex::empty(&self.root);
        index.ends.reserve(indices.len());
        for &i in indices {
            index.push(self.relative(i));
        }
        index
    }

    fn push(&mut self, relative: &OsStr) {
        self.names.extend_from_slice(relative.as_encoded_bytes());
        self.ends.push(self.names.len());
    }
}

fn is_image(name: &OsStr) -> bool {
    matches!(
        Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// Dot-files and dot-folders (`.DS_Store`, macOS's `._photo.jpg`, `.ipynb_checkpoints`) are not data.
fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn read_folder(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| Error::data(dir, format!("cannot read folder ({e})")))?;
    let mut entries = read
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::data(dir, format!("cannot read folder ({e})")))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Whether an entry is a folder, following a symbolic link to its target.
fn is_folder(entry: &std::fs::DirEntry) -> bool {
    match entry.file_type() {
        Ok(t) if t.is_symlink() => entry.path().is_dir(),
        Ok(t) => t.is_dir(),
        Err(_) => false,
    }
}

/// Adds the image files below `dir` to `index` (paths relative to its
/// root), in sorted order, and counts the other files it passes over.
fn scan_class(index: &mut FileIndex, dir: &Path, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::data(
            dir,
            format!("folders nest deeper than {MAX_DEPTH} levels (a symbolic link loop?)"),
        ));
    }
    for entry in read_folder(dir)? {
        let name = entry.file_name();
        if is_folder(&entry) {
            if !is_hidden(&name) {
                scan_class(index, &entry.path(), depth + 1)?;
            }
        } else if is_image(&name) && !is_hidden(&name) {
            let path = entry.path();
            index.push(path.strip_prefix(&index.root).unwrap_or(&path).as_os_str());
        } else {
            index.ignored += 1;
        }
    }
    Ok(())
}

/// RGB if any of a sample of the files is in colour, else gray: read off
/// their headers, without decoding. Unreadable files are left to fail when
/// a batch decodes them, with the error naming them.
fn probe_channels(index: &FileIndex) -> usize {
    let step = (index.len() / CHANNEL_PROBES).max(1);
    let mut seen_any = false;
    for i in (0..index.len()).step_by(step).take(CHANNEL_PROBES) {
        let colour = image::ImageReader::open(index.path(i))
            .ok()
            .and_then(|r| r.with_guessed_format().ok())
            .and_then(|r| r.into_decoder().ok())
            .map(|d| image::ImageDecoder::color_type(&d).has_color());
        match colour {
            Some(true) => return 3,
            Some(false) => seen_any = true,
            None => {}
        }
    }
    if seen_any {
        1
    } else {
        3
    }
}

/// Scans `root`: class names are its sub-folders' names, sorted; a class's
/// images are the JPEG and PNG files anywhere below its folder (any case of
/// extension). Nothing is decoded here.
pub fn image_folder(root: &Path) -> Result<ImageSet> {
    if !root.is_dir() {
        return Err(Error::data(
            root,
            "no such folder; expected one sub-folder per class with JPEG/PNG images",
        ));
    }
    let class_dirs: Vec<_> = read_folder(root)?
        .into_iter()
        .filter(|e| is_folder(e) && !is_hidden(&e.file_name()))
        .collect();
    if class_dirs.is_empty() {
        return Err(Error::data(
            root,
            "no class sub-folders; expected one sub-folder per class with JPEG/PNG images",
        ));
    }
    // Each class is scanned into a packed index of its own, in parallel.
    let scanned = class_dirs
        .par_iter()
        .map(|dir| {
            let mut class = FileIndex::empty(root);
            scan_class(&mut class, &dir.path(), 1).map(|()| class)
        })
        .collect::<Result<Vec<_>>>()?;
    // Sized once: a million paths grown by doubling would leave their
    // discarded copies in the allocator's keep.
    let mut index = FileIndex::empty(root);
    let files: usize = scanned.iter().map(FileIndex::len).sum();
    index
        .names
        .reserve_exact(scanned.iter().map(|c| c.names.len()).sum());
    index.ends.reserve_exact(files);
    let (mut labels, mut classes) = (Vec::with_capacity(files), Vec::new());
    for (label, (dir, class)) in class_dirs.iter().zip(scanned).enumerate() {
        if class.is_empty() {
            return Err(Error::data(
                dir.path(),
                "class folder holds no JPEG or PNG images",
            ));
        }
        classes.push(dir.file_name().to_string_lossy().into_owned());
        labels.resize(labels.len() + class.len(), label);
        index.append(class);
    }
    let channels = probe_channels(&index);
    Ok(ImageSet {
        name: String::new(),
        labels,
        classes,
        channels,
        storage: Storage::Files(Arc::new(index)),
    })
}
