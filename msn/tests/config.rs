//! Run configurations as TOML: presets round-trip, a file changes only what
//! it names, and unknown keys and bad values are refused naming the key.

use msn::config::{PretrainConfig, PRESETS};

#[test]
fn every_preset_round_trips_through_toml() {
    for name in PRESETS {
        let preset = PretrainConfig::preset(name).unwrap();
        preset.validate().unwrap();
        let text = preset.to_toml();
        let back = PretrainConfig::from_toml(&text, "printed", None).unwrap();
        assert_eq!(back, preset, "{name}");
        assert_eq!(back.to_toml(), text);
    }
}

#[test]
fn a_file_changes_only_the_fields_it_names() {
    let text = "preset = \"msn-vit-small-16\"\nsteps = 20\n[views.focal]\nsize = 64\n";
    let c = PretrainConfig::from_toml(text, "recipe.toml", None).unwrap();
    let mut expected = PretrainConfig::msn_vit_small_16();
    expected.steps = 20;
    expected.views.focal.size = 64;
    assert_eq!(c, expected);
    // Without `preset`, the base given (--preset), else fmnist-tiny.
    let c = PretrainConfig::from_toml("lr = 0.002", "f", None).unwrap();
    assert_eq!((c.preset.as_str(), c.lr), ("fmnist-tiny", 0.002));
    let c = PretrainConfig::from_toml("lr = 0.002", "f", Some("msn-vit-small-16")).unwrap();
    assert_eq!(c.encoder.width, 384);
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_naming_them() {
    for (text, needle) in [
        ("stepz = 3", "stepz"),
        ("[loss]\ntemprature = 0.2", "temprature"),
        ("[views.target.jitter]\nhues = 0.1", "hues"),
        ("steps = \"many\"", "steps"),
        ("preset = \"vit-huge\"", "vit-huge"),
        ("[loss\n", "parse error"),
    ] {
        let err = PretrainConfig::from_toml(text, "bad.toml", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{text}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// Every numeric field, with values it must refuse: zero, negative, NaN,
/// infinite and absurdly large, as far as each is invalid for that field.
#[test]
fn every_numeric_field_refuses_bad_values_naming_itself() {
    let huge = "1e300";
    let integer_huge = "1000000000000";
    let cases: &[(&str, &[&str])] = &[
        ("encoder.image_size", &["0", integer_huge]),
        ("encoder.patch_size", &["0", "29"]),
        ("encoder.in_channels", &["0", "5"]),
        ("encoder.width", &["0", integer_huge]),
        ("encoder.depth", &["0", integer_huge]),
        ("encoder.heads", &["0", "193", integer_huge]),
        ("encoder.mlp_ratio", &["0", integer_huge]),
        ("views.focal_views", &[integer_huge]),
        ("views.patch_drop", &["-0.1", "1.0", "nan", "inf"]),
        ("views.patch_size", &["0", "8"]),
        ("views.target.size", &["0", "30", integer_huge]),
        ("views.anchor.size", &["0", "2"]),
        ("views.focal.size", &["0", "13"]),
        (
            "views.target.scale",
            &["[0.0, 1.0]", "[0.5, 0.4]", "[0.3, 2.0]", "[nan, 1.0]"],
        ),
        (
            "views.focal.ratio",
            &["[0.0, 1.0]", "[2.0, 1.0]", "[0.5, inf]"],
        ),
        ("views.target.flip_p", &["-0.5", "1.5", "nan"]),
        ("views.anchor.grayscale_p", &["-1.0", "2.0"]),
        ("views.focal.blur_p", &["nan", "inf"]),
        ("views.target.jitter.brightness", &["-0.4", "nan", huge]),
        ("views.anchor.jitter.contrast", &["-1.0", "inf"]),
        ("views.focal.jitter.saturation", &["nan"]),
        ("views.target.jitter.hue", &["-0.1", "0.6", "nan"]),
        ("views.target.jitter.p", &["-0.1", "1.1"]),
        ("views.mean", &["[nan]", "[0.1, 0.2]"]),
        ("views.std", &["[0.0]", "[-1.0]", "[inf]", "[0.1, 0.2]"]),
        ("head_hidden", &["0", integer_huge]),
        ("head_output", &["0", integer_huge]),
        ("prototypes", &["0", "1", integer_huge]),
        ("loss.temperature", &["0.0", "-0.1", "nan", "inf"]),
        ("loss.sharpen", &["0.0", "-1.0", "nan"]),
        ("loss.memax_weight", &["-1.0", "nan", "inf"]),
        ("loss.sinkhorn_iterations", &[integer_huge]),
        ("batch_size", &["0", "1", integer_huge]),
        ("steps", &["0"]),
        ("lr", &["0.0", "-0.001", "nan", "inf", huge]),
        ("start_lr", &["0.0", "nan", huge]),
        ("final_lr", &["-1e-6", "nan", huge]),
        ("warmup_fraction", &["-0.1", "1.5", "nan"]),
        ("start_wd", &["-0.04", "nan", "inf"]),
        ("final_wd", &["-0.4", "nan"]),
        ("start_momentum", &["-0.5", "1.5", "nan"]),
        ("final_momentum", &["2.0", "nan"]),
        ("clip", &["0.0", "-3.0", "nan", "inf"]),
        ("schedule_stretch", &["0.0", "0.5", "nan", "inf", huge]),
    ];
    for (key, values) in cases {
        for value in *values {
            let (table, field) = key.rsplit_once('.').unwrap_or(("", key));
            let text = if table.is_empty() {
                format!("{field} = {value}")
            } else {
                format!("[{table}]\n{field} = {value}")
            };
            let err = PretrainConfig::from_toml(&text, "case.toml", None)
                .and_then(|c| c.validate())
                .err()
                .unwrap_or_else(|| panic!("{key} = {value} was accepted"));
            let err = err.to_string();
            let named = err.contains(&format!("`{key}`")) || err.contains(&format!("`{field}`"));
            assert!(named, "{key} = {value}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}
