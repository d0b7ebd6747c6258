//! Data sources on real files, and the errors bad files give.

use std::io::Write;
use std::path::{Path, PathBuf};

use msn::data::{self, write_cifar10_batch, Image};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/images")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("msn-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The CIFAR-10 samples sorted into class folders by the label in their name.
fn cifar_folder(name: &str) -> PathBuf {
    let root = scratch(name);
    for entry in std::fs::read_dir(fixtures().join("cifar10-samples")).unwrap() {
        let path = entry.unwrap().path();
        let label = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .rsplit('_')
            .next()
            .unwrap()
            .to_string();
        std::fs::create_dir_all(root.join(&label)).unwrap();
        std::fs::copy(&path, root.join(&label).join(path.file_name().unwrap())).unwrap();
    }
    root
}

#[test]
fn fashion_mnist_test_split_loads() {
    let set = data::open("fashion-mnist:test").unwrap();
    assert_eq!(set.len(), 10_000);
    assert_eq!(
        (
            set.channels,
            set.image(0).unwrap().height,
            set.image(0).unwrap().width
        ),
        (1, 28, 28)
    );
    let mut counts = [0usize; 10];
    set.labels.iter().for_each(|&l| counts[l] += 1);
    assert_eq!(counts, [1000; 10], "balanced classes");
}

#[test]
fn a_truncated_idx_file_is_a_clear_error() {
    let dir = scratch("idx");
    let original =
        std::fs::read(data::fashion_mnist_dir().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&original[..]),
        &mut decoded,
    )
    .unwrap();
    decoded.truncate(decoded.len() - 100);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&decoded).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    std::fs::copy(
        data::fashion_mnist_dir().join("t10k-labels-idx1-ubyte.gz"),
        dir.join("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let err = data::fashion_mnist_from(&dir, data::Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated") && err.contains("t10k-images"),
        "{err}"
    );
}

#[test]
fn an_image_folder_loads_rgb_images_with_class_names() {
    let root = cifar_folder("folder");
    let set = data::open(&format!("folder:{}", root.display())).unwrap();
    assert_eq!(set.len(), 20);
    assert_eq!(set.channels, 3);
    assert_eq!(set.image(0).unwrap().pixels.len(), 3 * 32 * 32);
    assert!(set.classes.iter().all(|c| c.parse::<usize>().is_ok()));
}

#[test]
fn folder_errors_name_the_problem() {
    let missing = data::open("folder:/no/such/place").unwrap_err().to_string();
    assert!(
        missing.contains("/no/such/place") && missing.contains("no such folder"),
        "{missing}"
    );

    let root = cifar_folder("empty-class");
    std::fs::create_dir_all(root.join("zz-empty")).unwrap();
    let err = data::open(&format!("folder:{}", root.display()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("zz-empty") && err.contains("no JPEG or PNG"),
        "{err}"
    );

    // A folder is scanned, not decoded, when opened: a corrupt file is
    // found, and named, when an image of it is asked for.
    let root = cifar_folder("corrupt");
    let victim = root.join("3").join("broken.png");
    std::fs::write(&victim, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let set = data::open(&format!("folder:{}", root.display())).unwrap();
    let err = (0..set.len())
        .find_map(|i| set.image(i).err())
        .expect("the corrupt file fails")
        .to_string();
    assert!(
        err.contains("broken.png") && err.contains("cannot decode"),
        "{err}"
    );

    let err = data::open("imagenet").unwrap_err().to_string();
    assert!(err.contains("unknown data source"), "{err}");
}

#[test]
fn cifar10_binary_batches_round_trip_and_truncation_is_caught() {
    let folder = data::open(&format!("folder:{}", cifar_folder("cifar").display())).unwrap();
    let dir = scratch("cifar-bin");
    let images: Vec<Image> = (0..folder.len())
        .map(|i| folder.image(i).unwrap().into_owned())
        .collect();
    write_cifar10_batch(&dir.join("test_batch.bin"), &images, &folder.labels).unwrap();
    let set = data::open(&format!("cifar10:{}:test", dir.display())).unwrap();
    let read: Vec<Image> = (0..set.len())
        .map(|i| set.image(i).unwrap().into_owned())
        .collect();
    assert_eq!(read, images);
    let bytes = std::fs::read(dir.join("test_batch.bin")).unwrap();
    std::fs::write(dir.join("test_batch.bin"), &bytes[..bytes.len() - 7]).unwrap();
    let err = data::open(&format!("cifar10:{}:test", dir.display()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    let gray = Image {
        channels: 1,
        height: 32,
        width: 32,
        pixels: vec![0; 1024],
    };
    assert!(write_cifar10_batch(&dir.join("x.bin"), &[gray], &[0]).is_err());
}

#[test]
fn the_validation_split_is_disjoint_from_the_images_fitted_on() {
    let train = data::open("fashion-mnist:train").unwrap();
    let fit = data::open("fashion-mnist:fit").unwrap();
    let val = data::open("fashion-mnist:val").unwrap();
    assert_eq!((fit.len(), val.len()), (50_000, 10_000));
    // Each of the training images is in exactly one of the two, in order.
    let (mut f, mut v) = (0, 0);
    for i in 0..train.len() {
        let image = train.image(i).unwrap();
        let (part, k) = if i % data::VALIDATION_EVERY == data::VALIDATION_EVERY - 1 {
            (&val, &mut v)
        } else {
            (&fit, &mut f)
        };
        assert_eq!(part.image(*k).unwrap(), image, "training image {i}");
        assert_eq!(part.labels[*k], train.labels[i]);
        *k += 1;
    }
    let mut counts = [0usize; 10];
    val.labels.iter().for_each(|&l| counts[l] += 1);
    assert!(
        counts.iter().all(|&c| (900..1100).contains(&c)),
        "{counts:?}"
    );
    assert_eq!(val.name, "fashion-mnist:val");
    let err = data::open("fashion-mnist:valid").unwrap_err().to_string();
    assert!(err.contains("unknown data source"), "{err}");
}
