//! The page at `/` in a real browser: Debian's headless Chromium driven over the `DevTools`
//! protocol (`--remote-debugging-pipe`: NUL-separated JSON on fds 3 and 4, so no websocket
//! client is needed). A document is pasted, a question typed and Enter pressed; the streamed
//! answer and the highlighted kept passages must appear. The screenshot is saved as
//! `server-page.png` in the test's folder, or where `GEMFILTER_PAGE_SCREENSHOT` says
//! (docs/server-page.png is made that way).

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::Server;
use crate::util::*;

/// One headless Chromium, killed when dropped.
struct Browser {
    child: Child,
    to: ChildStdin,
    from: mpsc::Receiver<Value>,
    next: u64,
    /// The attached page's id, which the protocol calls `sessionId`.
    page: String,
}

impl Browser {
    /// Chromium with one page attached. The shell moves the pipes to fds 3 and 4, where
    /// `--remote-debugging-pipe` expects them.
    fn start(profile: &std::path::Path) -> Browser {
        assert!(
            Command::new("chromium").arg("--version").output().is_ok(),
            "chromium is missing: apt-get install chromium (make test installs it)"
        );
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(
                "exec chromium --headless --no-sandbox --disable-gpu --no-first-run \
                 --hide-scrollbars --remote-debugging-pipe --user-data-dir=\"$1\" \
                 --window-size=1200,760 about:blank 3<&0 4>&1 0</dev/null 1>/dev/null",
            )
            .arg("chromium")
            .arg(profile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let to = child.stdin.take().unwrap();
        let from = reader(child.stdout.take().unwrap());
        let mut b = Browser {
            child,
            to,
            from,
            next: 0,
            page: String::new(),
        };
        let target = b.call("Target.createTarget", &json!({"url": "about:blank"}));
        let id = target["targetId"].as_str().unwrap().to_owned();
        let s = b.call(
            "Target.attachToTarget",
            &json!({"targetId": id, "flatten": true}),
        );
        s["sessionId"].as_str().unwrap().clone_into(&mut b.page);
        b
    }

    /// One command and its result (events in between are skipped).
    fn call(&mut self, method: &str, params: &Value) -> Value {
        self.next += 1;
        let mut m = json!({"id": self.next, "method": method, "params": params});
        if !self.page.is_empty() {
            m["sessionId"] = json!(self.page);
        }
        let mut bytes = m.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if v["id"] == json!(self.next) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// A JavaScript expression's value.
    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            &json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Focus an element and type `text` into it as keyboard input does.
    fn type_into(&mut self, selector: &str, text: &str) {
        self.eval(&format!("document.querySelector({selector:?}).focus()"));
        self.call("Input.insertText", &json!({"text": text}));
    }

    fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                &json!({"type": kind, "key": "Enter", "code": "Enter",
                    "windowsVirtualKeyCode": 13, "text": "\r"}),
            );
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium's messages, one JSON value each, split at NUL.
fn reader(mut out: ChildStdout) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 65536]);
        while let Ok(n) = out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.iter().position(|&b| b == 0) {
                let msg: Vec<u8> = buf.drain(..=end).collect();
                if let Ok(v) = serde_json::from_slice(&msg[..end]) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Standard base64 (the screenshot's encoding).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|q| {
            let n = q
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
            let bytes = n.to_be_bytes();
            bytes[1..q.len()].to_vec()
        })
        .collect()
}

#[test]
fn base64_decodes() {
    assert_eq!(base64("aGVsbG8="), b"hello");
    assert_eq!(base64("aGk="), b"hi");
    assert_eq!(base64("YWJj"), b"abc");
}

#[test]
fn the_page_streams_an_answer_and_highlights_what_was_kept_in_chromium() {
    let s = Server::start(&["-c", "2048", "--temp", "0", "-n", "24"]);
    let profile = tmpdir("chromium-profile");
    let mut b = Browser::start(&profile);
    b.call("Page.enable", &json!({}));
    b.call(
        "Emulation.setDeviceMetricsOverride",
        &json!({"width": 1200, "height": 700, "deviceScaleFactor": 1, "mobile": false}),
    );
    b.call("Page.navigate", &json!({"url": format!("{}/", s.base)}));
    let loaded = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        b.eval("document.readyState === 'complete' && !!document.getElementById('ask')") == true
    });
    assert!(loaded, "the page did not load");
    let doc = haystack(2500, "The secret passkey for the vault is 48213.", 0.5);
    b.type_into("#doc", &doc);
    b.type_into("#k", "64");
    b.type_into("#q", "What is the secret passkey for the vault?");
    b.press_enter();

    // The answer streams in; the last chunk brings what was kept.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_mins(2);
    let state = loop {
        let v = b.eval(
            "({answer: document.getElementById('answer').textContent,
              stats: document.getElementById('stats').textContent,
              marks: [...document.querySelectorAll('#view mark')].map((m) => m.textContent),
              view: document.getElementById('view').textContent})",
        );
        let answer = v["answer"].as_str().unwrap_or("").to_owned();
        if seen.last() != Some(&answer) {
            seen.push(answer);
        }
        if v["stats"].as_str().unwrap_or("").starts_with("kept")
            || v["stats"].as_str().unwrap_or("").starts_with("error")
        {
            break v;
        }
        assert!(Instant::now() < deadline, "no answer: {v}\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    let answer = state["answer"].as_str().unwrap();
    assert!(answer.contains("48213"), "{state}");
    assert!(
        seen.iter().any(|a| !a.is_empty() && a.len() < answer.len()),
        "the answer grew as it streamed: {seen:?}"
    );
    let stats = state["stats"].as_str().unwrap();
    assert!(
        stats.starts_with("kept ") && stats.contains("top-k 64"),
        "{stats}"
    );
    let marks: Vec<&str> = state["marks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!marks.is_empty(), "highlights: {state}");
    assert!(marks.iter().any(|m| m.contains("48213")), "{marks:?}");
    assert!(
        marks.iter().map(|m| m.len()).sum::<usize>() < doc.len() / 2,
        "only what was kept is highlighted: {marks:?}"
    );
    assert_eq!(
        state["view"],
        json!(doc),
        "the view shows the whole document"
    );

    let shot = b.call(
        "Page.captureScreenshot",
        &json!({"format": "png", "clip": {"x": 0, "y": 0, "width": 1200, "height": 700, "scale": 1}}),
    );
    let png = base64(shot["data"].as_str().unwrap());
    assert_eq!(&png[1..4], b"PNG");
    assert!(png.len() < 200 << 10, "{} bytes", png.len());
    let to = std::env::var_os("GEMFILTER_PAGE_SCREENSHOT")
        .map_or_else(|| tmpdir("server-page").join("server-page.png"), Into::into);
    std::fs::write(&to, &png).unwrap();
}
