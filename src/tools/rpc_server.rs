//! `gemfilter rpc-server` (llama.cpp's rpc-server on ggml's RPC backend, so one binary is both
//! client and worker) and `--list-devices`.

use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::engine::{self, LoadOptions};

/// What `gemfilter rpc-server` was asked for.
#[derive(Debug, Clone)]
pub struct RpcServerSettings {
    pub host: String,
    pub port: u16,
    /// Keep received tensors in llama.cpp's local file cache.
    pub cache: bool,
    pub threads: usize,
    /// Memory a client may allocate, in bytes (`-m`, MiB on the command line); None: the
    /// served devices' free memory.
    pub mem: Option<u64>,
}

/// The warning for a server that listens beyond this machine.
pub const NO_AUTH_WARNING: &str = "the RPC protocol has no authentication and no encryption: \
    anyone who can reach this port can use this machine's devices and read or write their memory; \
    listen on 127.0.0.1 (the default) unless the network is trusted";

/// `host` names this machine only (127.0.0.0/8, `::1`, localhost).
#[must_use]
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// llama.cpp's cache directory (`fs_get_cache_directory`): `$LLAMA_CACHE`, else
/// `$XDG_CACHE_HOME/llama.cpp`, else `~/.cache/llama.cpp`; the RPC server's is `rpc/` in it.
fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = env("LLAMA_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("llama.cpp")))
        .or_else(|| env("HOME").map(|p| p.join(".cache").join("llama.cpp")))?;
    Some(base.join("rpc"))
}

/// Serve until killed.
///
/// # Errors
/// The address cannot be bound, the cache cannot be created, or the server stops.
pub fn run(s: &RpcServerSettings) -> Result<()> {
    let endpoint = if s.host.contains(':') && !s.host.starts_with('[') {
        format!("[{}]:{}", s.host, s.port)
    } else {
        format!("{}:{}", s.host, s.port)
    };
    if !is_loopback(&s.host) {
        eprintln!(
            "gemfilter: warning: listening on {}: {NO_AUTH_WARNING}",
            crate::sanitize::quote(&endpoint)
        );
    }
    // ggml's server reports a failed bind on its own stderr line and returns; check first so the
    // usual mistakes (port in use, address not on this machine) are one clear line.
    drop(
        TcpListener::bind((s.host.as_str(), s.port)).with_context(|| {
            format!(
                "rpc-server: cannot listen on {}",
                crate::sanitize::quote(&endpoint)
            )
        })?,
    );
    let cache = if s.cache {
        let dir = cache_dir().context("rpc-server -c: no cache directory (set LLAMA_CACHE)")?;
        std::fs::create_dir_all(&dir).with_context(|| {
            format!(
                "rpc-server -c: cannot create {}",
                crate::sanitize::path(&dir)
            )
        })?;
        Some(dir)
    } else {
        None
    };
    let quiet = LoadOptions {
        n_gpu_layers: 0,
        use_mmap: true,
        verbose: false,
        placement: engine::Placement::default(),
        adjust: engine::adapters::Adjust::default(),
    };
    engine::add_rpc_servers(&quiet)?;
    engine::ffi::rpc::serve(&endpoint, cache.as_deref(), s.threads, s.mem)
}

/// `--list-devices`: one line per device on stdout (llama-cli's format).
///
/// # Errors
/// An unreachable `--rpc` server.
pub fn list_devices(load: &LoadOptions) -> Result<()> {
    use std::io::Write;
    let lines = engine::device_lines(load)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Available devices:")?;
    for l in lines {
        writeln!(out, "  {l}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["0.0.0.0", "192.168.1.5", "::", "example.org"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
