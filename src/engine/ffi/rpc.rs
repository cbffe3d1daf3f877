//! ggml's RPC backend (`ggml/src/ggml-rpc`): the client side registers remote devices
//! (`--rpc HOST:PORT,…`, llama.cpp's `add_rpc_devices`) and the worker side serves this
//! process's devices (`gemfilter rpc-server`, llama.cpp's `rpc-server`). Both entry points are
//! looked up through the RPC registry's `get_proc_address`, as llama.cpp's `common` does, so a
//! build without the RPC backend links and says so instead. Also the device list
//! (`--list-devices`, `-dev` names to indices).
//!
//! ggml's RPC client aborts (`GGML_ABORT`) on an unreachable server, a failed handshake or a
//! server that dies mid-run; [`probe`] checks each server first with a TCP connect and the
//! protocol's HELLO, each with a timeout, so the common mistakes end in one clear line, and the
//! abort callback (`abort.rs`) turns a later death into one line.
#![allow(unsafe_code)]

use std::ffi::{c_char, CStr, CString};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use llama_cpp_sys_2 as sys;

/// `ggml_backend_rpc_add_server` (ggml-rpc.h).
type AddServerFn = unsafe extern "C" fn(endpoint: *const c_char) -> sys::ggml_backend_reg_t;
/// `ggml_backend_rpc_set_server_mem` (vendor patch, ggml-rpc.cpp): the server's memory budget.
type SetServerMemFn = unsafe extern "C" fn(bytes: u64);
/// `ggml_backend_rpc_start_server` (ggml-rpc.h).
type StartServerFn = unsafe extern "C" fn(
    endpoint: *const c_char,
    cache_dir: *const c_char,
    n_threads: usize,
    n_devices: usize,
    devices: *mut sys::ggml_backend_dev_t,
);

/// The protocol version this build speaks (`RPC_PROTO_MAJOR_VERSION`, ggml-rpc.h).
const PROTO_MAJOR: u8 = 7;
/// `RPC_CMD_HELLO` and the sizes of its request and response (`RPC_CONN_CAPS_SIZE` = 24).
const CMD_HELLO: u8 = 14;
const HELLO_REQ: u64 = 24;
const HELLO_RSP: u64 = 28;
/// The HELLO response of protocols before 4 (major, minor, patch).
const HELLO_RSP_OLD: u64 = 3;
/// `RPC_CMD_GET_DEVICE_MEMORY` (request: device u32; response: free u64, total u64).
const CMD_GET_DEVICE_MEMORY: u8 = 11;
/// `RPC_CMD_DEVICE_COUNT` (no request; response: count u32).
const CMD_DEVICE_COUNT: u8 = 15;

/// How long a server may take to accept the connection and to answer each request.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most devices one server may offer: ggml's client creates every device the server claims, so
/// a claim of 2^32-1 would exhaust memory inside llama.cpp (where nothing can catch it).
pub const MAX_DEVICES: u32 = 64;
/// Most memory one remote device may claim (1 PiB): more is no real device.
pub const MAX_DEVICE_BYTES: u64 = 1 << 50;

/// A C symbol the RPC registry exports, or an error when this build has no RPC backend.
fn proc_address(name: &CStr) -> Result<*mut std::ffi::c_void> {
    // SAFETY: registry lookups by NUL-terminated name; ggml's registry is initialised on first
    // use and never freed. A null registry is checked before it is used.
    let f = unsafe {
        let reg = sys::ggml_backend_reg_by_name(c"RPC".as_ptr());
        if reg.is_null() {
            bail!("this gemfilter was built without ggml's RPC backend");
        }
        sys::ggml_backend_reg_get_proc_address(reg, name.as_ptr())
    };
    if f.is_null() {
        bail!(
            "ggml's RPC backend does not export {}",
            name.to_string_lossy()
        );
    }
    Ok(f)
}

/// Connect to `endpoint`, exchange the protocol's HELLO and ask for its devices and their
/// memory, each within [`PROBE_TIMEOUT`], before ggml's client (which waits forever and aborts
/// on what it does not expect) ever connects: a clear error for a server that is down, busy
/// with another client (an rpc-server serves one at a time), silent, not an RPC server, of
/// another protocol version, or claiming more devices or memory than a machine has.
///
/// # Errors
/// As above, one line naming the endpoint.
pub fn probe(endpoint: &str) -> Result<()> {
    let shown = crate::sanitize::quote(endpoint);
    let addrs: Vec<_> = endpoint
        .to_socket_addrs()
        .with_context(|| format!("--rpc: cannot resolve {shown}"))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, PROBE_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(s) = stream else {
        let why = last.map_or_else(|| "no address".to_owned(), |e| e.to_string());
        bail!("cannot reach RPC server {shown} ({why}); is `gemfilter rpc-server` (or llama.cpp's rpc-server) running there?");
    };
    s.set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(PROBE_TIMEOUT)))
        .with_context(|| format!("RPC server {shown}: cannot set a timeout"))?;
    let mut peer = Peer { s, shown: &shown };
    peer.hello()?;
    let count = u32::from_le_bytes(peer.call(CMD_DEVICE_COUNT, &[], "the device count")?);
    if count == 0 || count > MAX_DEVICES {
        bail!("RPC server {shown} claims {count} devices (at most {MAX_DEVICES} are accepted): not a working llama.cpp RPC server");
    }
    for dev in 0..count {
        let rsp: [u8; 16] = peer.call(
            CMD_GET_DEVICE_MEMORY,
            &dev.to_le_bytes(),
            "a device's memory",
        )?;
        let free = u64::from_le_bytes(rsp[..8].try_into().unwrap_or_default());
        let total = u64::from_le_bytes(rsp[8..].try_into().unwrap_or_default());
        if total > MAX_DEVICE_BYTES || free > total {
            bail!(
                "RPC server {shown} claims {free} bytes free of {total} on its device {dev}: not a working llama.cpp RPC server"
            );
        }
    }
    Ok(())
}

/// One probing connection.
struct Peer<'a> {
    s: TcpStream,
    shown: &'a str,
}

impl Peer<'_> {
    /// The HELLO exchange: the response's size tells an RPC server of this protocol from an
    /// older one and from something else (an echo server answers with our own request).
    fn hello(&mut self) -> Result<()> {
        let shown = self.shown;
        let mut req = Vec::with_capacity(33);
        req.push(CMD_HELLO);
        req.extend_from_slice(&HELLO_REQ.to_le_bytes());
        req.extend_from_slice(&[0u8; 24]);
        let mut size = [0u8; 8];
        let sent = self
            .s
            .write_all(&req)
            .and_then(|()| self.s.read_exact(&mut size));
        if let Err(e) = sent {
            if timed_out(&e) {
                bail!(
                    "RPC server {shown} accepted the connection but did not answer within {} s; an rpc-server serves one client at a time: is another one connected?",
                    PROBE_TIMEOUT.as_secs()
                );
            }
            bail!("RPC server {shown} closed the connection during the handshake ({e}); is it an RPC server of this protocol version?");
        }
        match u64::from_le_bytes(size) {
            HELLO_RSP => {}
            HELLO_RSP_OLD => {
                bail!("RPC server {shown} speaks an older protocol than this gemfilter ({PROTO_MAJOR}.x): use the same llama.cpp version on both sides")
            }
            _ => bail!("{shown} is not a llama.cpp RPC server (it answered the handshake with something else)"),
        }
        let mut rsp = [0u8; 28];
        self.s
            .read_exact(&mut rsp)
            .map_err(|e| self.lost(&e, "the handshake"))?;
        if rsp[0] != PROTO_MAJOR {
            bail!(
                "RPC server {shown} speaks protocol {}.{}.{}, this gemfilter {PROTO_MAJOR}.x: use the same llama.cpp version on both sides",
                rsp[0],
                rsp[1],
                rsp[2]
            );
        }
        Ok(())
    }

    /// One request with an `N`-byte response, within the timeouts.
    fn call<const N: usize>(&mut self, cmd: u8, input: &[u8], what: &str) -> Result<[u8; N]> {
        let mut req = Vec::with_capacity(9 + input.len());
        req.push(cmd);
        req.extend_from_slice(&(input.len() as u64).to_le_bytes());
        req.extend_from_slice(input);
        let mut size = [0u8; 8];
        let mut rsp = [0u8; N];
        self.s
            .write_all(&req)
            .and_then(|()| self.s.read_exact(&mut size))
            .map_err(|e| self.lost(&e, what))?;
        if u64::from_le_bytes(size) != N as u64 {
            bail!(
                "RPC server {} answered the request for {what} with {} bytes instead of {N}: not a working llama.cpp RPC server",
                self.shown,
                u64::from_le_bytes(size)
            );
        }
        self.s
            .read_exact(&mut rsp)
            .map_err(|e| self.lost(&e, what))?;
        Ok(rsp)
    }

    fn lost(&self, e: &std::io::Error, what: &str) -> anyhow::Error {
        if timed_out(e) {
            anyhow::anyhow!(
                "RPC server {} did not answer the request for {what} within {} s",
                self.shown,
                PROBE_TIMEOUT.as_secs()
            )
        } else {
            anyhow::anyhow!(
                "RPC server {} closed the connection when asked for {what} ({e})",
                self.shown
            )
        }
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Register the devices of each RPC server (idempotent per endpoint, as ggml's own registry).
/// Call after the backend is initialised and before a model is loaded; [`probe`] first.
///
/// # Errors
/// No RPC backend in this build, an endpoint with a NUL byte, a server with no device.
pub fn add_servers(endpoints: &[String]) -> Result<()> {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static ADDED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if endpoints.is_empty() {
        return Ok(());
    }
    let add = proc_address(c"ggml_backend_rpc_add_server")?;
    // SAFETY: the symbol ggml exports under this name has exactly `AddServerFn`'s signature
    // (ggml-rpc.h); a non-null data pointer to a function is a valid function pointer on every
    // platform ggml supports.
    let add: AddServerFn =
        unsafe { std::mem::transmute::<*mut std::ffi::c_void, AddServerFn>(add) };
    let mut added = ADDED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let added = added.get_or_insert_with(HashSet::new);
    for ep in endpoints {
        if added.contains(ep) {
            continue;
        }
        probe(ep)?;
        let c = CString::new(ep.as_str()).context("--rpc: endpoint has a NUL byte")?;
        // SAFETY: `c` is NUL-terminated and alive across the call; the returned registry is
        // owned by ggml for the life of the process (or null when the server has no device).
        // ggml_backend_register stores it and its devices in the global registry.
        unsafe {
            let reg = add(c.as_ptr());
            if reg.is_null() {
                bail!("RPC server {} offers no device", crate::sanitize::quote(ep));
            }
            sys::ggml_backend_register(reg);
        }
        added.insert(ep.clone());
    }
    Ok(())
}

/// One device llama.cpp can place layers on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Index in ggml's device registry (`LlamaModelParams::with_devices`).
    pub index: usize,
    /// "CPU", "CUDA0", "RPC0[127.0.0.1:50052]"-style name as `-dev` takes it.
    pub name: String,
    pub description: String,
    pub kind: DeviceKind,
    pub free_mib: usize,
    pub total_mib: usize,
}

/// What a device is, for choosing defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Gpu,
    Rpc,
    Other,
}

/// Every device in ggml's registry (remote ones once [`add_servers`] ran); with `memory`, their
/// free and total memory (a round trip to each RPC server), else zeros.
#[must_use]
pub fn devices(memory: bool) -> Vec<Device> {
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: ggml returns NUL-terminated strings it owns for the device's lifetime
            // (the process); copied out at once.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let mut out = Vec::new();
    // SAFETY: read-only enumeration of registered devices; indices are below
    // ggml_backend_dev_count, null devices are skipped, out-pointers point at live locals.
    unsafe {
        for i in 0..sys::ggml_backend_dev_count() {
            let dev = sys::ggml_backend_dev_get(i);
            if dev.is_null() {
                continue;
            }
            let reg = sys::ggml_backend_dev_backend_reg(dev);
            let is_rpc = !reg.is_null() && text(sys::ggml_backend_reg_name(reg)).starts_with("RPC");
            let kind = match sys::ggml_backend_dev_type(dev) {
                _ if is_rpc => DeviceKind::Rpc,
                sys::GGML_BACKEND_DEVICE_TYPE_CPU => DeviceKind::Cpu,
                sys::GGML_BACKEND_DEVICE_TYPE_GPU | sys::GGML_BACKEND_DEVICE_TYPE_IGPU => {
                    DeviceKind::Gpu
                }
                _ => DeviceKind::Other,
            };
            let (mut free, mut total) = (0usize, 0usize);
            if memory {
                sys::ggml_backend_dev_memory(dev, &raw mut free, &raw mut total);
            }
            out.push(Device {
                index: i,
                name: text(sys::ggml_backend_dev_name(dev)),
                description: text(sys::ggml_backend_dev_description(dev)),
                kind,
                free_mib: free >> 20,
                total_mib: total >> 20,
            });
        }
    }
    out
}

/// Serve this process's devices to RPC clients at `endpoint` (`host:port`) until the process
/// ends: GPUs when there are any, else the CPU (llama.cpp's rpc-server default). A client's
/// buffers, and any one message it sends, must fit in `mem_budget` bytes (default: the served
/// devices' free memory now), and the devices report at most that much memory: a client cannot
/// make the server allocate more than it was given by claiming a size.
///
/// # Errors
/// No RPC backend in this build, no device, or ggml's server returning (it could not bind or
/// accept; its reason is on stderr).
pub fn serve(
    endpoint: &str,
    cache_dir: Option<&std::path::Path>,
    threads: usize,
    mem_budget: Option<u64>,
) -> Result<()> {
    let set_mem = proc_address(c"ggml_backend_rpc_set_server_mem")?;
    // SAFETY: as in `add_servers`: the symbol the vendor patch exports under this name has
    // `SetServerMemFn`'s signature.
    let set_mem: SetServerMemFn =
        unsafe { std::mem::transmute::<*mut std::ffi::c_void, SetServerMemFn>(set_mem) };
    let start = proc_address(c"ggml_backend_rpc_start_server")?;
    // SAFETY: as in `add_servers`: the exported symbol has `StartServerFn`'s signature.
    let start: StartServerFn =
        unsafe { std::mem::transmute::<*mut std::ffi::c_void, StartServerFn>(start) };
    let all = devices(false);
    let gpus: Vec<usize> = all
        .iter()
        .filter(|d| d.kind == DeviceKind::Gpu)
        .map(|d| d.index)
        .collect();
    let chosen = if gpus.is_empty() {
        all.iter()
            .filter(|d| d.kind == DeviceKind::Cpu)
            .map(|d| d.index)
            .take(1)
            .collect()
    } else {
        gpus
    };
    if chosen.is_empty() {
        bail!("no device to serve");
    }
    let budget = mem_budget.unwrap_or_else(|| {
        devices(true)
            .iter()
            .filter(|d| chosen.contains(&d.index))
            .map(|d| (d.free_mib as u64) << 20)
            .sum()
    });
    // SAFETY: stores a number before the server starts; no pointer is passed.
    unsafe { set_mem(budget.max(1)) };
    let mut devs: Vec<sys::ggml_backend_dev_t> = chosen
        .iter()
        // SAFETY: indices come from the enumeration above, below ggml_backend_dev_count.
        .map(|&i| unsafe { sys::ggml_backend_dev_get(i) })
        .collect();
    let ep = CString::new(endpoint).context("endpoint has a NUL byte")?;
    let cache = cache_dir
        .map(|p| CString::new(p.as_os_str().as_encoded_bytes()))
        .transpose()
        .context("cache path has a NUL byte")?;
    // SAFETY: every pointer is NUL-terminated (or null for no cache) and outlives the call,
    // which only returns when the server stops; `devs` holds `devs.len()` registered devices.
    unsafe {
        start(
            ep.as_ptr(),
            cache.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            threads,
            devs.len(),
            devs.as_mut_ptr(),
        );
    }
    bail!(
        "the RPC server at {} stopped",
        crate::sanitize::quote(endpoint)
    )
}
