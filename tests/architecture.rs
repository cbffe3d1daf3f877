//! The source layout's rules, read from the source text: no import cycles between modules,
//! nothing below `cli` imports `cli` (flags are resolved once, by `cli::resolve`), and `unsafe`
//! only in `src/engine/ffi/`. An import is a path through `crate`, `super` or `self` that names
//! another file's module; `mod` declarations are not imports, nor are a file's `mod tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

struct Source {
    module: ModPath,
    file: PathBuf,
    /// The text with comments and string and character literals blanked (newlines kept).
    code: String,
}

/// Every library source file under `src/` and its module path (`src/engine/mod.rs` is
/// `engine`, `src/lib.rs` the root). `main.rs` is the binary: it reaches the library by name.
fn sources() -> Vec<Source> {
    let src = crate::util::root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().with_extension("");
        let mut module: ModPath = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module == ["main"] {
            continue;
        }
        if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
            module.pop();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        out.push(Source {
            module,
            file,
            code: blank_comments_and_literals(&text),
        });
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Comments, string literals (plain, byte, raw) and character literals replaced by spaces, so
/// that neither a word in a comment nor one in a message counts as code. Lifetimes stay.
fn blank_comments_and_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| {
        for &ch in s {
            out.push(if ch == '\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < c.len() {
        let rest = &c[i..];
        let prev_ident = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        let end = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|&x| x == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(&['/', '*']) {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(&['*', '/']) {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if !prev_ident && raw_string_start(rest).is_some() {
            let (open, hashes) = raw_string_start(rest).unwrap();
            let mut j = open;
            while j < rest.len() {
                if rest[j] == '"'
                    && rest[j + 1..].iter().take_while(|&&x| x == '#').count() >= hashes
                {
                    break;
                }
                j += 1;
            }
            (j + 1 + hashes).min(rest.len())
        } else if rest[0] == '"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != '"' {
                j += if rest[j] == '\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if rest[0] == '\'' && rest.len() > 2 && (rest[1] == '\\' || rest[2] == '\'') {
            // A character literal ('a', '\n', '\''), not a lifetime ('a).
            let mut j = 1;
            while j < rest.len() && rest[j] != '\'' {
                j += if rest[j] == '\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        blank(&mut out, &rest[..end]);
        i += end;
    }
    out
}

/// `r"`, `r#"`, `br##"` ...: where the literal's text starts and how many `#` close it.
fn raw_string_start(s: &[char]) -> Option<(usize, usize)> {
    let mut j = usize::from(s.first() == Some(&'b'));
    if s.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = s[j..].iter().take_while(|&&x| x == '#').count();
    (s.get(j + hashes) == Some(&'"')).then_some((j + hashes + 1, hashes))
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Every path that starts with `crate`, `super` or `self` followed by `::`, with `use` groups
/// expanded (`crate::{a, b::{c, self}}` gives `crate::a`, `crate::b::c` and `crate::b`).
fn rooted_paths(code: &str) -> Vec<Vec<String>> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let starts_word = i == 0 || !(is_ident(c[i - 1]) || c[i - 1] == ':');
        if starts_word {
            for root in ["crate", "super", "self"] {
                let n = root.len();
                let word: String = c[i..(i + n).min(c.len())].iter().collect();
                let after = c.get(i + n).copied();
                if word == root
                    && !after.is_some_and(is_ident)
                    && c[i + n..].starts_with(&[':', ':'])
                {
                    let mut j = i;
                    tree(&c, &mut j, &[], &mut out);
                    i = j.max(i + 1);
                    break;
                }
            }
        }
        i += 1;
    }
    out
}

fn skip_ws(c: &[char], j: &mut usize) {
    while *j < c.len() && c[*j].is_whitespace() {
        *j += 1;
    }
}

/// One use-tree at `j`: segments joined by `::`, ending in a segment, `*` or a `{...}` group.
fn tree(c: &[char], j: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    loop {
        skip_ws(c, j);
        if *j < c.len() && c[*j] == '{' {
            *j += 1;
            loop {
                skip_ws(c, j);
                if *j >= c.len() || c[*j] == '}' {
                    *j += 1;
                    return;
                }
                if c[*j] == ',' {
                    *j += 1;
                    continue;
                }
                let before = *j;
                tree(c, j, &path, out);
                if *j == before {
                    *j += 1; // not a path (a stray token): move on
                }
            }
        }
        if *j < c.len() && c[*j] == '*' {
            *j += 1;
            out.push(path);
            return;
        }
        let start = *j;
        while *j < c.len() && is_ident(c[*j]) {
            *j += 1;
        }
        if *j == start {
            if path.len() > prefix.len() {
                out.push(path);
            }
            return;
        }
        let seg: String = c[start..*j].iter().collect();
        // In a group, `self` is the group's own module (`a::{self, b}`).
        if seg != "self" || prefix.is_empty() {
            path.push(seg);
        }
        if c[*j..].starts_with(&[':', ':']) {
            *j += 2;
        } else {
            out.push(path);
            return;
        }
    }
}

/// The module a rooted path in `cur` names: the longest prefix of it that is a known module.
fn resolve(cur: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let (mut base, mut rest): (ModPath, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("super") => (cur[..cur.len().saturating_sub(1)].to_vec(), &path[1..]),
        Some("self") => (cur.clone(), &path[1..]),
        _ => return None,
    };
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    (0..=rest.len())
        .rev()
        .map(|i| base.iter().chain(&rest[..i]).cloned().collect::<ModPath>())
        .find(|m| modules.contains(m))
}

/// Each module's imports of other modules (the root excluded).
fn import_graph(sources: &[Source]) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let modules: BTreeSet<ModPath> = sources.iter().map(|s| s.module.clone()).collect();
    let mut graph = BTreeMap::new();
    for s in sources {
        // A file's own test module may import what it likes.
        let code = s
            .code
            .match_indices("#[cfg(test)]")
            .find(|(at, m)| s.code[at + m.len()..].trim_start().starts_with("mod tests"))
            .map_or(&s.code[..], |(at, _)| &s.code[..at]);
        let deps: BTreeSet<ModPath> = rooted_paths(code)
            .iter()
            .filter_map(|p| resolve(&s.module, p, &modules))
            .filter(|m| m != &s.module && !m.is_empty())
            .collect();
        graph.insert(s.module.clone(), deps);
    }
    graph
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct T<'a> {
        g: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on: BTreeSet<&'a ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a ModPath) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn name(m: &ModPath) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_import_cycles_between_modules() {
    let graph = import_graph(&sources());
    // The reader must see the imports that exist, or an empty graph would pass.
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(
        graph.len() > 30 && edges > 50,
        "{} modules, {edges} imports read",
        graph.len()
    );
    let app = graph.get(&vec!["app".to_string()]).expect("src/app.rs");
    assert!(
        app.iter().any(|m| m[0] == "cli"),
        "app's import of cli not seen: {app:?}"
    );
    let found = cycles(&graph);
    let text: Vec<String> = found
        .iter()
        .map(|c| c.iter().map(name).collect::<Vec<_>>().join(", "))
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", text.join("\n"));
}

#[test]
fn nothing_below_cli_imports_cli() {
    let graph = import_graph(&sources());
    let wrong: Vec<String> = graph
        .iter()
        .filter(|(m, _)| !m.is_empty() && m[0] != "cli" && m[0] != "app")
        .flat_map(|(m, deps)| {
            deps.iter()
                .filter(|d| d[0] == "cli")
                .map(move |d| format!("{} imports {}", name(m), name(d)))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Lines of `s` where `word` stands as a whole identifier.
fn word_lines(s: &Source, word: &str) -> Vec<String> {
    s.code
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            line.match_indices(word).any(|(at, w)| {
                let before = line[..at].chars().next_back();
                let after = line[at + w.len()..].chars().next();
                !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
            })
        })
        .map(|(n, line)| format!("{}:{}: {}", s.file.display(), n + 1, line.trim()))
        .collect()
}

/// The command-line library is the command line's business: the core's types get their flag
/// names in `src/cli` (`cli/enums.rs`), so the engine and the tools build without it.
#[test]
fn clap_only_in_cli() {
    let all = sources();
    let (cli, rest): (Vec<&Source>, Vec<&Source>) = all
        .iter()
        .partition(|s| s.module.first().is_some_and(|m| m == "cli" || m == "app"));
    // The reader must see clap where it is, or a reader that found nothing would pass.
    let seen: usize = cli.iter().map(|s| word_lines(s, "clap").len()).sum();
    assert!(seen > 5, "clap seen {seen} times in src/cli");
    let wrong: Vec<String> = rest.iter().flat_map(|s| word_lines(s, "clap")).collect();
    assert!(
        wrong.is_empty(),
        "clap outside src/cli:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn unsafe_only_in_engine_ffi() {
    let all = sources();
    let ffi = crate::util::root().join("src/engine/ffi");
    let mut seen_in_ffi = 0;
    let mut wrong = Vec::new();
    for s in &all {
        for (n, line) in s.code.lines().enumerate() {
            let has = line.match_indices("unsafe").any(|(at, w)| {
                let before = line[..at].chars().next_back();
                let after = line[at + w.len()..].chars().next();
                !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
            });
            if !has {
                continue;
            }
            if s.file.starts_with(&ffi) {
                seen_in_ffi += 1;
            } else {
                wrong.push(format!("{}:{}: {}", s.file.display(), n + 1, line.trim()));
            }
        }
    }
    // The FFI layer does use unsafe: a reader that saw none there would prove nothing.
    assert!(seen_in_ffi > 0, "no unsafe found in src/engine/ffi");
    assert!(
        wrong.is_empty(),
        "unsafe outside src/engine/ffi:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_sees_imports_cycles_and_hides_literals() {
    let code = blank_comments_and_literals(
        "use crate::{a::{self, b}, c::*};\n// crate::d\nlet s = \"super::e unsafe\";\n\
         let r = r#\"crate::f\"#; let ch = '\"'; fn g<'x>() { super::h::i(); }",
    );
    assert!(!code.contains("unsafe") && !code.contains("crate::d") && !code.contains("crate::f"));
    let paths: Vec<String> = rooted_paths(&code).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        ["crate::a", "crate::a::b", "crate::c", "super::h::i"],
        "{code}"
    );
    let m = |s: &str| -> ModPath { s.split("::").map(String::from).collect() };
    let mods: BTreeSet<ModPath> = ["a", "a::b", "c", "h"].iter().map(|s| m(s)).collect();
    assert_eq!(resolve(&m("x"), &m("super::h::i"), &mods), Some(m("h")));
    assert_eq!(
        resolve(&m("a::b"), &m("super::super::c"), &mods),
        Some(m("c"))
    );
    let graph: BTreeMap<ModPath, BTreeSet<ModPath>> = [
        (m("a"), [m("b")].into()),
        (m("b"), [m("c")].into()),
        (m("c"), [m("a")].into()),
        (m("d"), [m("a")].into()),
    ]
    .into();
    assert_eq!(cycles(&graph), vec![vec![m("a"), m("b"), m("c")]]);
}
