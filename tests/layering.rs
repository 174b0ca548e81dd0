//! The crate's layering, as `docs/ARCHITECTURE.md` states it, checked
//! against the code: every top-level module under `src/` is placed in a
//! layer, and a module names (`crate::x` in a `use` line or a path) only
//! modules of layers below its own. That rules out import loops between
//! top-level modules too.
//!
//! The layers are read from the block between `<!-- layers:start -->` and
//! `<!-- layers:end -->` in `docs/ARCHITECTURE.md`: one layer a line, the
//! top first, modules separated by spaces, `#` starts a comment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Module name -> layer index (0 = top).
fn layers() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md");
    let start = doc
        .find("<!-- layers:start -->")
        .expect("layers:start marker");
    let end = doc.find("<!-- layers:end -->").expect("layers:end marker");
    let mut ranks = BTreeMap::new();
    let mut layer = 0;
    for line in doc[start..end].lines().skip(1) {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with("```") {
            continue;
        }
        for module in line.split_whitespace() {
            let previous = ranks.insert(module.to_owned(), layer);
            assert!(
                previous.is_none(),
                "{module} is placed twice in the layering"
            );
        }
        layer += 1;
    }
    assert!(layer > 1, "the layering block lists fewer than two layers");
    ranks
}

/// Top-level modules of the library: `src/x.rs` and `src/x/`.
fn top_level_modules() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(Path::new(ROOT).join("src")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let is_module = path.is_dir() || path.extension().is_some_and(|e| e == "rs");
        if is_module && name != "lib" && name != "main" {
            out.push(name);
        }
    }
    out.sort();
    out.dedup();
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments, string and char literals blanked out, so that
/// only code remains (a doc link to `crate::x` is not an import).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let (mut depth, mut j) = (0usize, 0usize);
            while j < rest.len() {
                if rest[j..].starts_with("/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with("*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += rest[j..].chars().next().map_or(1, char::len_utf8);
                }
            }
            i += j;
            out.push(' ');
        } else if let Some(len) = raw_string_len(rest) {
            i += len;
            out.push_str("\"\"");
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => {
                        j += 1;
                        break;
                    }
                    _ => j += 1,
                }
            }
            i += j.min(rest.len());
            out.push_str("\"\"");
        } else if let Some(len) = char_literal_len(rest) {
            i += len;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `r"..."`, `r#"..."#`, `br"..."`: the literal's length.
fn raw_string_len(s: &str) -> Option<usize> {
    let after_prefix = s.strip_prefix("br").or_else(|| s.strip_prefix('r'))?;
    let hashes = after_prefix.len() - after_prefix.trim_start_matches('#').len();
    let body = after_prefix[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    let end = body.find(&close)?;
    Some(s.len() - body.len() + end + close.len())
}

/// `'x'`, `'\n'`, `'\u{1F600}'` (not a lifetime `'a`).
fn char_literal_len(s: &str) -> Option<usize> {
    let rest = s.strip_prefix('\'')?;
    if let Some(esc) = rest.strip_prefix('\\') {
        let close = esc.find('\'')?;
        return (close <= 10).then_some(close + 3);
    }
    let c = rest.chars().next()?;
    rest[c.len_utf8()..]
        .starts_with('\'')
        .then_some(2 + c.len_utf8())
}

/// Top-level modules named by `crate::x` paths and `use crate::{x, y::z}`.
fn named_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` in macros, `roadhub_crate::`, ...
        }
        if let Some(group) = rest.strip_prefix('{') {
            out.extend(group_heads(group));
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// The first segment of each item of a `{a, b::c, d::{e, f}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_head = true,
            c if expect_head && (c.is_alphabetic() || c == '_') => {
                out.push(ident(&group[i..]));
                expect_head = false;
            }
            _ => {}
        }
    }
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level module a file under `src/` belongs to.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(Path::new(ROOT).join("src")).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn every_top_level_module_has_a_layer() {
    let ranks = layers();
    let missing: Vec<_> = top_level_modules()
        .into_iter()
        .filter(|m| !ranks.contains_key(m))
        .collect();
    assert!(
        missing.is_empty(),
        "modules not placed in docs/ARCHITECTURE.md's layering: {missing:?}"
    );
    let modules = top_level_modules();
    let stale: Vec<_> = ranks.keys().filter(|m| !modules.contains(m)).collect();
    assert!(
        stale.is_empty(),
        "the layering names modules that do not exist: {stale:?}"
    );
}

#[test]
fn modules_only_import_layers_below_their_own() {
    let ranks = layers();
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in &files {
        let from = module_of(file);
        let Some(&from_rank) = ranks.get(&from) else {
            continue; // lib.rs, main.rs, or a module the other test reports
        };
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let mut named = named_modules(&code);
        named.sort();
        named.dedup();
        for to in named {
            if to == from {
                continue;
            }
            match ranks.get(&to) {
                Some(&to_rank) if to_rank > from_rank => {}
                Some(_) => violations.push(format!(
                    "{}: {from} -> {to} ({to} is not in a layer below {from})",
                    file.strip_prefix(ROOT).unwrap().display()
                )),
                None => {} // a re-export at the crate root (`crate::Config`)
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering of docs/ARCHITECTURE.md:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scanner_sees_imports_and_ignores_comments_and_strings() {
    let src = r#"
        use crate::{alpha, beta::{x, y}, gamma::z};
        use crate::delta::Thing;
        // use crate::comment;
        /// [`crate::doc`]
        /* crate::block */
        let s = "crate::string";
        let r = r"crate::raw";
        let c = '{';
        fn f<'a>(x: &'a crate::epsilon::T) {}
        macro_rules! m { () => { $crate::macro_path } }
    "#;
    let mut got = named_modules(&code_only(src));
    got.sort();
    assert_eq!(got, ["alpha", "beta", "delta", "epsilon", "gamma"]);
}
