//! An 8-bit image as its source holds it: borrowed from an in-memory set
//! (channel-major) or freshly decoded from a file (interleaved, as decoders
//! give it), so that a view crops and resizes it without a whole-image copy.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Image;
use crate::{Error, Result};

/// How the channels of a pixel buffer are arranged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[C, H, W]`: one plane per channel.
    Planar,
    /// `[H, W, C]`: a pixel's channels side by side.
    Interleaved,
}

/// Counts the decoded images of one set alive at once: the evidence that a
/// streamed set's memory is bounded by the loader, not by the set's size.
#[derive(Debug, Default)]
pub struct DecodeTally {
    alive: AtomicUsize,
    peak: AtomicUsize,
    total: AtomicUsize,
}

impl DecodeTally {
    /// Decoded images alive now.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    /// The most decoded images ever alive at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Images decoded so far.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    fn hold(self: &Arc<Self>) -> Held {
        let now = self.alive.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
        Held(Arc::clone(self))
    }
}

/// One decoded image counted in its set's tally until it is dropped.
#[derive(Debug)]
struct Held(Arc<DecodeTally>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// 8-bit pixels with their geometry and layout.
#[derive(Debug)]
pub struct Pixels<'a> {
    pub width: usize,
    pub height: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    pub layout: Layout,
    pub data: Cow<'a, [u8]>,
    _held: Option<Held>,
}

impl<'a> Pixels<'a> {
    /// An in-memory image, borrowed.
    pub fn planar(img: &'a Image) -> Self {
        Pixels {
            width: img.width,
            height: img.height,
            channels: img.channels,
            layout: Layout::Planar,
            data: Cow::Borrowed(&img.pixels),
            _held: None,
        }
    }

    /// Channel `c` of pixel (`y`, `x`).
    fn at(&self, c: usize, y: usize, x: usize) -> u8 {
        match self.layout {
            Layout::Planar => self.data[(c * self.height + y) * self.width + x],
            Layout::Interleaved => self.data[(y * self.width + x) * self.channels + c],
        }
    }

    /// The image channel-major, converted to `channels` (gray is replicated
    /// into RGB; RGB becomes ITU-R 601 luma, rounded).
    pub fn to_image(&self, channels: usize) -> Image {
        let (h, w) = (self.height, self.width);
        let mut pixels = Vec::with_capacity(channels * h * w);
        if channels == self.channels {
            for c in 0..channels {
                pixels.extend((0..h * w).map(|i| self.at(c, i / w, i % w)));
            }
        } else if self.channels == 1 {
            for _ in 0..channels {
                pixels.extend((0..h * w).map(|i| self.at(0, i / w, i % w)));
            }
        } else {
            pixels.extend((0..h * w).map(|i| {
                let (y, x) = (i / w, i % w);
                let luma = 0.299 * self.at(0, y, x) as f32
                    + 0.587 * self.at(1, y, x) as f32
                    + 0.114 * self.at(2, y, x) as f32;
                luma.round().clamp(0.0, 255.0) as u8
            }));
        }
        Image {
            channels,
            height: h,
            width: w,
            pixels,
        }
    }
}

/// Decodes a JPEG (zune-jpeg, strict: a truncated or damaged file is an
/// error, as in PIL, not a partly gray image) or PNG file's bytes, the
/// format read off its first bytes, not its name, into gray or RGB pixels;
/// `tally` counts the image while it lives.
pub(super) fn decode_file(
    path: &Path,
    bytes: &[u8],
    tally: &Arc<DecodeTally>,
) -> Result<Pixels<'static>> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::data(path, format!("cannot decode image ({})", one_line(e)))
    };
    let (width, height, channels, data) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes).map_err(|e| failed(&e))?
    } else {
        decode_other(bytes).map_err(|e| failed(&e))?
    };
    if width == 0 || height == 0 {
        return Err(Error::data(path, "image has no pixels"));
    }
    Ok(Pixels {
        width,
        height,
        channels,
        layout: Layout::Interleaved,
        data: Cow::Owned(data),
        _held: Some(tally.hold()),
    })
}

type Decoded = (usize, usize, usize, Vec<u8>);

fn decode_jpeg(bytes: &[u8]) -> std::result::Result<Decoded, zune_jpeg::errors::DecodeErrors> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let options = DecoderOptions::default().set_strict_mode(true);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers()?;
    let gray = decoder.input_colorspace() == Some(ColorSpace::Luma);
    let (out, channels) = if gray {
        (ColorSpace::Luma, 1)
    } else {
        (ColorSpace::RGB, 3)
    };
    decoder.set_options(options.jpeg_set_out_colorspace(out));
    let data = decoder.decode()?;
    let (width, height) = decoder.dimensions().unwrap_or((0, 0));
    Ok((width, height, channels, data))
}

fn decode_other(bytes: &[u8]) -> image::ImageResult<Decoded> {
    let decoded = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()?
        .decode()?;
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let (channels, data) = match decoded {
        image::DynamicImage::ImageLuma8(gray) => (1, gray.into_raw()),
        image::DynamicImage::ImageRgb8(rgb) => (3, rgb.into_raw()),
        other if other.color().has_color() => (3, other.into_rgb8().into_raw()),
        other => (1, other.into_luma8().into_raw()),
    };
    Ok((width, height, channels, data))
}

/// A decoder's message on one line: zune-jpeg's span several.
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
