//! Weights as safetensors, with timm's key names.
//!
//! A state dict saved from timm's `VisionTransformer` with
//! `safetensors.torch.save_file` loads as it is; so does the official MSN
//! layout once its `module.` / `target_encoder.` prefixes are stripped (done
//! here). Files are written atomically: to a temporary file in the same
//! folder, then renamed over the target.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ops::{DType, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::{Error, Result, VisionTransformer};

/// Named tensors in file order.
pub type NamedTensors = Vec<(String, Tensor)>;

/// Keys that belong to something other than the encoder and are skipped when
/// loading one: timm's classifier, MSN's projection head (`fc.`) and
/// prototypes, and this project's own training extras (`msn.`).
const NOT_ENCODER: [&str; 5] = ["head.", "fc.", "fc_norm.", "prototypes", "msn."];

/// Writes tensors (as f32) and string metadata to `path`, atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let err = |reason: String| Error::Write {
        file: path.display().to_string(),
        reason,
    };
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                t.to_vec_f32()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                t.shape().to_vec(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(name, data, shape)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data).map_err(|e| err(e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let serialized = safetensors::serialize(views, &Some(meta)).map_err(|e| err(e.to_string()))?;
    write_atomically(path, &serialized).map_err(|e| err(e.to_string()))
}

/// Fault injection for tests: with `MSN_TEST_DISK_FULL_AFTER_BYTES=N`, the
/// process's atomic writes find the disk full once N bytes in all have gone
/// through them. Returns how many of the next `len` bytes fit.
fn room_on_test_disk(len: usize) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static WRITTEN: AtomicUsize = AtomicUsize::new(0);
    let Some(limit) = std::env::var("MSN_TEST_DISK_FULL_AFTER_BYTES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return len;
    };
    let before = WRITTEN.fetch_add(len, Ordering::SeqCst);
    len.min(limit.saturating_sub(before))
}

/// Writes `bytes` to a temporary sibling of `path`, syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        let room = room_on_test_disk(bytes.len());
        file.write_all(&bytes[..room])?;
        if room < bytes.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "No space left on device (the test limit MSN_TEST_DISK_FULL_AFTER_BYTES)",
            ));
        }
        file.sync_all()
    });
    // A full disk fails the write; the partial file goes, the old one stays.
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// Reads every tensor of a safetensors file (f64 as f64, other float types as f32), with its metadata.
pub fn read_safetensors(path: &Path) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let err = |reason: String| Error::Read {
        file: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| err(format!("not a safetensors file ({e})")))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| err(format!("not a safetensors file ({e})")))?;
    let mut out = Vec::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let tensor = match view.dtype() {
            // f64 stays f64 (reference fixtures); everything else becomes f32.
            Dtype::F64 => {
                let values: Vec<f64> = data
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect();
                Tensor::from_vec(values, view.shape())
            }
            dtype => {
                let values: Vec<f32> = match dtype {
                    Dtype::F32 => data
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    Dtype::F16 => data
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    Dtype::BF16 => data
                        .chunks_exact(2)
                        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    other => {
                        return Err(err(format!(
                            "tensor `{name}` has dtype {other:?}; expected a floating-point dtype"
                        )))
                    }
                };
                Tensor::from_vec(values, view.shape())
            }
        };
        out.push((name.clone(), tensor.map_err(|e| err(e.to_string()))?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, metadata))
}

/// Removes the wrappers the official MSN checkpoints put around timm's names.
pub fn strip_wrappers(name: &str) -> &str {
    let mut name = name;
    loop {
        match name
            .strip_prefix("module.")
            .or_else(|| name.strip_prefix("target_encoder."))
        {
            Some(rest) => name = rest,
            None => return name,
        }
    }
}

impl VisionTransformer {
    /// The parameters under timm's names and layouts (patch weight `[D, C, p, p]`).
    pub fn state_dict(&self) -> NamedTensors {
        let (c, p) = (self.config.in_channels, self.config.patch_size);
        self.named_parameters()
            .into_iter()
            .map(|(name, t)| {
                if name == "patch_embed.proj.weight" {
                    let d = t.shape()[0];
                    (name, t.reshape(&[d, c, p, p]).expect("same element count"))
                } else {
                    (name, t)
                }
            })
            .collect()
    }

    /// Replaces every parameter with the tensor of the same timm name in
    /// `tensors` (names may carry MSN's wrappers; keys of the head, the
    /// prototypes and this project's extras are skipped). Missing, unexpected
    /// or mis-shaped keys are an error listing each of them.
    pub fn load_state_dict(&mut self, tensors: &[(String, Tensor)], file: &str) -> Result<()> {
        let mut available: BTreeMap<&str, &Tensor> = BTreeMap::new();
        for (name, t) in tensors {
            let name = strip_wrappers(name);
            if !NOT_ENCODER.iter().any(|skip| name.starts_with(skip)) {
                available.insert(name, t);
            }
        }
        let (c, p) = (self.config.in_channels, self.config.patch_size);
        let mut problems = Vec::new();
        let mut used = Vec::new();
        self.visit("", &mut |name, param| {
            let Some(&found) = available.get(name.as_str()) else {
                problems.push(format!("missing `{name}` {:?}", param.shape()));
                return;
            };
            used.push(name.clone());
            let want = param.shape().to_vec();
            let fits = if name == "patch_embed.proj.weight" {
                found.shape() == [want[0], c, p, p]
            } else {
                found.shape() == want.as_slice()
            };
            if !fits {
                problems.push(format!(
                    "`{name}` has shape {:?}, expected {:?}",
                    found.shape(),
                    want
                ));
                return;
            }
            *param = found
                .reshape(&want)
                .expect("element count checked")
                .to_dtype(DType::F32)
                .expect("f32");
        });
        for name in available.keys() {
            if !used.iter().any(|u| u == name) {
                problems.push(format!("unexpected `{name}`"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Mismatch {
                file: file.to_string(),
                problems: problems.join("; "),
            })
        }
    }

    /// Saves the encoder alone, as timm would (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_safetensors(path, &self.state_dict(), &BTreeMap::new())
    }

    /// Loads weights into a model of `config`.
    pub fn load(config: crate::VitConfig, path: &Path) -> Result<Self> {
        let mut model = VisionTransformer::new(
            config,
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0),
        )?;
        let (tensors, _) = read_safetensors(path)?;
        model.load_state_dict(&tensors, &path.display().to_string())?;
        Ok(model)
    }
}
