//! Parsers for list-valued flags, one meaning each across every subcommand.

use anyhow::{bail, ensure, Context, Result};

/// Largest token count any list accepts (2^24, far beyond any model's context); keeps the
/// arithmetic on parsed values from overflowing before the context check refuses them.
pub const MAX_TOKENS: usize = 1 << 24;

/// Comma list of token counts, sorted and deduplicated. `k` = 1024 and `m` = 1024², as
/// llama-bench users read them; fractions are allowed with a suffix (`7.5k` = 7680).
///
/// # Errors
/// Malformed, zero or absurdly large entries, or an empty list.
pub fn parse_lengths(s: &str) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let lower = part.to_ascii_lowercase();
        let (num, mul) = match lower.strip_suffix('k') {
            Some(n) => (n, 1024.0),
            None => match lower.strip_suffix('m') {
                Some(n) => (n, 1024.0 * 1024.0),
                None => (lower.as_str(), 1.0),
            },
        };
        let x: f64 = num.parse().map_err(|_| {
            anyhow::anyhow!("bad length '{part}' (token counts like 2000, 8k = 8192 or 7.5k)")
        })?;
        let tokens = (x * mul).round();
        ensure!(
            tokens.is_finite() && tokens >= 1.0,
            "bad length '{part}' (must be a positive token count)"
        );
        #[allow(clippy::cast_precision_loss)]
        let max = MAX_TOKENS as f64;
        ensure!(
            tokens <= max,
            "length '{part}' is too large (at most {MAX_TOKENS} tokens)"
        );
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        v.push(tokens as usize);
    }
    ensure!(!v.is_empty(), "no lengths given");
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Comma list of depths in percent (0..=100), sorted and deduplicated.
///
/// # Errors
/// Malformed entries or depths over 100.
pub fn parse_depths(s: &str) -> Result<Vec<u32>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d: u32 = part
            .trim_end_matches('%')
            .parse()
            .map_err(|_| anyhow::anyhow!("bad depth '{part}' (use percentages 0-100)"))?;
        ensure!(d <= 100, "depth {d}% is out of range (0-100)");
        v.push(d);
    }
    ensure!(!v.is_empty(), "no depths given");
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// `a-b` or `a,b,c` into sorted layer indices, each below `n_layer` (checked before any range
/// is expanded, so `0-18446744073709551615` is refused rather than allocated).
///
/// # Errors
/// Malformed lists or layers out of range.
pub fn parse_layers(s: &str, n_layer: usize) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    let one = |t: &str| -> Result<usize> {
        let l: usize = t
            .trim()
            .parse()
            .with_context(|| format!("bad layer '{}' in --layers", t.trim()))?;
        if l >= n_layer {
            bail!(
                "--layers: layer {l} is out of range: the model has {n_layer} layers (0..{})",
                n_layer.saturating_sub(1)
            );
        }
        Ok(l)
    };
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (one(a)?, one(b)?);
            ensure!(a <= b, "bad layer range '{}' in --layers", part.trim());
            v.extend(a..=b);
        } else {
            v.push(one(part)?);
        }
    }
    ensure!(!v.is_empty(), "--layers lists no layer");
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Comma list of odd pooling kernels (`--pools`), deduplicated in order.
///
/// # Errors
/// Even, zero, too wide or malformed sizes.
pub fn parse_pools(s: &str) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let k: usize = part
            .parse()
            .map_err(|_| anyhow::anyhow!("bad pooling kernel '{part}' in --pools"))?;
        ensure!(k % 2 == 1, "--pools: kernel {k} must be odd");
        ensure!(
            k <= MAX_TOKENS,
            "--pools: kernel {k} is too wide (at most {MAX_TOKENS})"
        );
        if !v.contains(&k) {
            v.push(k);
        }
    }
    ensure!(!v.is_empty(), "--pools is empty");
    Ok(v)
}

/// Most devices llama.cpp places a model on (`LLAMA_MAX_DEVICES`, and `GGML_RPC_MAX_SERVERS`).
pub const MAX_DEVICES: usize = 16;

/// `-ts`: device shares, comma- or slash-separated (llama-cli accepts both), non-negative and
/// not all zero.
///
/// # Errors
/// Malformed, negative or non-finite entries, too many, or all zero.
pub fn parse_tensor_split(s: &str) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    for part in s.split([',', '/']).map(str::trim) {
        let x: f32 = part.parse().map_err(|_| {
            anyhow::anyhow!(
                "-ts: bad share {} (numbers like 3,1)",
                crate::sanitize::quote(part)
            )
        })?;
        ensure!(
            x.is_finite() && x >= 0.0,
            "-ts: shares must be non-negative numbers, got {part}"
        );
        v.push(x);
    }
    ensure!(
        v.len() <= MAX_DEVICES,
        "-ts: at most {MAX_DEVICES} devices, got {}",
        v.len()
    );
    ensure!(v.iter().any(|&x| x > 0.0), "-ts: every share is zero");
    Ok(v)
}

/// `--rpc`: `HOST:PORT` endpoints, comma-separated, deduplicated in order.
///
/// # Errors
/// An entry without a port, a bad port, an empty host, or more than [`MAX_DEVICES`] servers.
pub fn parse_endpoints(s: &str) -> Result<Vec<String>> {
    let mut v: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let shown = crate::sanitize::quote(part);
        let (host, port) = part.rsplit_once(':').with_context(|| {
            format!("--rpc: {shown} has no port (HOST:PORT, e.g. 127.0.0.1:50052)")
        })?;
        ensure!(
            !host.is_empty() && !host.contains(char::is_whitespace),
            "--rpc: {shown} has no host (HOST:PORT)"
        );
        ensure!(
            port.parse::<u16>().is_ok_and(|p| p > 0),
            "--rpc: {shown} has a bad port (1 to 65535)"
        );
        if !v.iter().any(|e| e == part) {
            v.push(part.to_owned());
        }
    }
    ensure!(!v.is_empty(), "--rpc lists no server (HOST:PORT,...)");
    ensure!(
        v.len() <= MAX_DEVICES,
        "--rpc: at most {MAX_DEVICES} servers, got {}",
        v.len()
    );
    Ok(v)
}

/// `-dev`/`--gem-device`: device names, comma-separated; "none" = no device (the CPU only).
///
/// # Errors
/// An empty list or empty name, "none" beside names, or too many devices.
pub fn parse_devices(flag: &str, s: &str) -> Result<Vec<String>> {
    let names: Vec<String> = s.split(',').map(|p| p.trim().to_owned()).collect();
    ensure!(
        names.iter().all(|n| !n.is_empty()),
        "{flag}: empty device name in {} (names as --list-devices prints them, or none)",
        crate::sanitize::quote(s)
    );
    if names.iter().any(|n| n.eq_ignore_ascii_case("none")) {
        ensure!(
            names.len() == 1,
            "{flag}: none cannot be listed with devices"
        );
        return Ok(Vec::new());
    }
    ensure!(
        names.len() <= MAX_DEVICES,
        "{flag}: at most {MAX_DEVICES} devices"
    );
    Ok(names)
}

/// llama.cpp's `parse_csv_row`: comma-separated fields, a field may be double-quoted (a comma
/// inside it kept, `""` a quote); an empty input is one empty field.
#[must_use]
pub fn csv_row(input: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = input.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '"' if !in_quotes && field.is_empty() => in_quotes = true,
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if in_quotes => in_quotes = false,
            ',' if !in_quotes => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// `FNAME:SCALE` items of `--lora-scaled`/`--control-vector-scaled` (exactly one `:`, as
/// llama.cpp splits them).
///
/// # Errors
/// An item without exactly one `:` or with a scale that is not a number.
pub fn parse_scaled(flag: &str, value: &str) -> Result<Vec<(String, f32)>> {
    csv_row(value)
        .into_iter()
        .map(|item| {
            let parts: Vec<&str> = item.split(':').collect();
            let [name, scale] = parts[..] else {
                bail!(
                    "{flag}: {} is not FNAME:SCALE",
                    crate::sanitize::quote(&item)
                );
            };
            let s: f32 = scale.trim().parse().map_err(|_| {
                anyhow::anyhow!(
                    "{flag}: bad scale {} in {}",
                    crate::sanitize::quote(scale),
                    crate::sanitize::quote(&item)
                )
            })?;
            ensure!(
                s.is_finite(),
                "{flag}: the scale in {} must be finite",
                crate::sanitize::quote(&item)
            );
            Ok((name.to_owned(), s))
        })
        .collect()
}

/// `--control-vector-layer-range START END` (two integers).
///
/// # Errors
/// Not two integers.
pub fn parse_layer_range(value: &str) -> Result<(i32, i32)> {
    let parts: Vec<&str> = value.split(' ').collect();
    let [a, b] = parts[..] else {
        bail!("--control-vector-layer-range expects START END");
    };
    let n = |s: &str| {
        s.trim().parse::<i32>().map_err(|_| {
            anyhow::anyhow!(
                "--control-vector-layer-range: {} is not a layer number",
                crate::sanitize::quote(s)
            )
        })
    };
    Ok((n(a)?, n(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_binary_suffixes() {
        assert_eq!(
            parse_lengths("8k, 32K,100").unwrap(),
            vec![100, 8192, 32768]
        );
        assert_eq!(parse_lengths("7.5k,2000,2000").unwrap(), vec![2000, 7680]);
        assert_eq!(parse_lengths("1m").unwrap(), vec![1 << 20]);
        for bad in [
            "8q",
            "0",
            "x",
            "",
            "18446744073709551615",
            "nan",
            "-3",
            "inf",
        ] {
            assert!(parse_lengths(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn depths_parse() {
        assert_eq!(parse_depths("100,0,50%").unwrap(), vec![0, 50, 100]);
        assert!(parse_depths("120")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(parse_depths("x").is_err());
    }

    #[test]
    fn layers_are_bounded_before_expanding() {
        assert_eq!(parse_layers("3-5,1,4", 30).unwrap(), vec![1, 3, 4, 5]);
        assert!(parse_layers("5-3", 30).is_err());
        let e = parse_layers("0-18446744073709551615", 30).unwrap_err();
        assert!(format!("{e:#}").contains("--layers"), "{e:#}");
        assert!(parse_layers("0-30", 30).is_err());
        assert!(parse_layers("", 30).is_err());
    }

    #[test]
    fn pools_parse() {
        assert_eq!(parse_pools("5,15,5").unwrap(), vec![5, 15]);
        assert!(parse_pools("4").is_err());
        assert!(parse_pools("").is_err());
        assert!(parse_pools("99999999999").is_err());
    }

    #[test]
    fn placement_lists() {
        assert_eq!(parse_tensor_split("3,1").unwrap(), vec![3.0, 1.0]);
        assert_eq!(parse_tensor_split("1/0/2").unwrap(), vec![1.0, 0.0, 2.0]);
        for bad in ["", "a", "-1,2", "0,0", "inf", "1,,2"] {
            assert!(parse_tensor_split(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_endpoints("127.0.0.1:50052, host:1,127.0.0.1:50052").unwrap(),
            vec!["127.0.0.1:50052", "host:1"]
        );
        for bad in ["", "host", ":50052", "h:0", "h:70000", "h:x", "a b:1"] {
            assert!(parse_endpoints(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_devices("-dev", "CUDA0,RPC0").unwrap(),
            ["CUDA0", "RPC0"]
        );
        assert!(parse_devices("-dev", "none").unwrap().is_empty());
        for bad in ["", "CUDA0,", "none,CUDA0"] {
            assert!(parse_devices("-dev", bad).is_err(), "{bad}");
        }
    }
}
