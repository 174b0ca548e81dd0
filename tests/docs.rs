//! The documentation stays true and self-contained:
//!
//! - the README's configuration reference is the one generated from the
//!   configuration struct (`ROADHUB_UPDATE_README=1 cargo test --test docs`
//!   rewrites it);
//! - every relative link of every tracked Markdown file (and of doc
//!   comments in Rust files) reaches a tracked file of the repository;
//! - no tracked file points at design notes outside the repository;
//! - the documents name capabilities, not our issue numbers;
//! - `docs/API.md` lists every route the router registers, every error
//!   code the server answers and every Socket.IO event the hub handles or
//!   emits, read from the source files.
//!
//! Tracked files come from `git ls-files`; nothing here needs a database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Component, Path};
use std::process::Command;

#[test]
fn readme_configuration_reference_matches_the_config_struct() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = "<!-- config-reference:start -->\n";
    let end = "<!-- config-reference:end -->";
    let from = readme.find(start).expect("start marker") + start.len();
    let to = readme.find(end).expect("end marker");
    let generated = roadhub::Config::reference_markdown();
    if std::env::var_os("ROADHUB_UPDATE_README").is_some() {
        let updated = format!("{}{}{}", &readme[..from], generated, &readme[to..]);
        std::fs::write(path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[from..to],
        generated,
        "README.md's configuration reference is stale: run ROADHUB_UPDATE_README=1 cargo test --test docs"
    );
}

// ---------------------------------------------------------------------------
// Helpers: the repository's files, and a small scanner for Rust sources.

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every tracked file, as a path relative to the repository root.
fn tracked() -> Vec<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root())
        .args(["ls-files", "-z"])
        .output()
        .expect("running git ls-files");
    assert!(
        out.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<String> = String::from_utf8(out.stdout)
        .expect("git ls-files output is UTF-8")
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        files.iter().any(|f| f == "README.md"),
        "git ls-files did not list README.md"
    );
    files
}

/// A tracked file's text; `None` for binary files and files deleted from
/// the work tree.
fn text(rel: &str) -> Option<String> {
    std::fs::read_to_string(root().join(rel)).ok()
}

fn read(rel: &str) -> String {
    text(rel).unwrap_or_else(|| panic!("cannot read {rel}"))
}

/// The source without its comment lines (lines starting with `//`).
fn code_only(source: &str) -> String {
    source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The index of the quote closing the string literal opened at `open`.
fn string_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The string literal that argument `index` of a call is, if it is one
/// (`s` starts just after the call's opening parenthesis).
fn literal_arg(s: &str, index: usize) -> Option<String> {
    let bytes = s.as_bytes();
    let (mut i, mut depth, mut commas) = (0, 0u32, 0);
    while commas < index {
        match *bytes.get(i)? {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.checked_sub(1)?,
            b'"' => i = string_end(bytes, i)?,
            b',' if depth == 0 => commas += 1,
            _ => {}
        }
        i += 1;
    }
    let rest = s[i..].trim_start();
    let open = s.len() - rest.len();
    if !rest.starts_with('"') {
        return None;
    }
    let close = string_end(bytes, open)?;
    let literal = &s[open + 1..close];
    (!literal.contains('\\')).then(|| literal.to_owned())
}

/// Argument `index` of every `needle` call in `source` that is a string
/// literal. `needle` ends where the arguments start (e.g. `.route(`).
fn literal_args(source: &str, needle: &str, index: usize) -> Vec<String> {
    source
        .match_indices(needle)
        .filter_map(|(at, _)| literal_arg(&source[at + needle.len()..], index))
        .collect()
}

/// The literals of `match` arms in `source`: lines such as
/// `"status" | "obd" => {`.
fn match_arm_literals(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in source.lines() {
        let line = line.trim_start();
        let Some((pattern, _)) = line.split_once("=>") else {
            continue;
        };
        if !line.starts_with('"') {
            continue;
        }
        for alternative in pattern.split('|') {
            let alternative = alternative.trim();
            if let Some(name) = alternative
                .strip_prefix('"')
                .and_then(|a| a.strip_suffix('"'))
            {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// The literals a `fn code(...)` returns (`Self::X => "x",` arms).
fn code_fn_literals(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in source.match_indices("fn code(") {
        let body = &source[at..];
        let Some(open) = body.find('{') else { continue };
        let mut depth = 0u32;
        let mut end = body.len();
        for (i, c) in body[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.extend(literal_args(&body[open..end], "=> ", 0));
    }
    out
}

/// The text of the `## {heading}` section of a Markdown document.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let marker = format!("\n## {heading}\n");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/API.md has no `## {heading}` section"))
        + marker.len();
    let end = doc[start..].find("\n## ").map_or(doc.len(), |e| start + e);
    &doc[start..end]
}

fn missing_from(doc: &str, names: &BTreeSet<String>) -> Vec<String> {
    names
        .iter()
        .filter(|n| !doc.contains(&format!("`{n}`")))
        .cloned()
        .collect()
}

fn api_md() -> String {
    read("docs/API.md")
}

// ---------------------------------------------------------------------------
// Links.

/// The targets of inline Markdown links (`[text](target)`) in `text`,
/// with their line numbers, outside fenced code blocks.
fn link_targets(text: &str, comments_only: bool) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if comments_only && !line.trim_start().starts_with("//") {
            continue;
        }
        let bare = line
            .trim_start()
            .trim_start_matches('/')
            .trim_start_matches('!');
        if bare.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (at, _) in line.match_indices("](") {
            let rest = &line[at + 2..];
            let end = rest.find([')', ' ']).unwrap_or(rest.len());
            let target = rest[..end].trim_matches(['<', '>']);
            out.push((n + 1, target.to_owned()));
        }
    }
    out
}

/// Is `target` a link to a file (not a web address, an anchor or, in Rust
/// doc comments, an intra-doc path)?
fn is_file_link(target: &str, rust: bool) -> bool {
    if target.is_empty() || target.starts_with('#') || target.contains(':') {
        return false;
    }
    !rust || target.contains('/') || target.ends_with(".md")
}

/// `target`, relative to the folder of `from`, as a path from the
/// repository root; `Err` when it leaves the repository.
fn resolve(from: &str, target: &str) -> Result<String, String> {
    let target = target.split(['#', '?']).next().unwrap_or("");
    let base = Path::new(from).parent().unwrap_or(Path::new(""));
    let mut parts: Vec<String> = Vec::new();
    for component in base.join(target).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err("leaves the repository".into());
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("is an absolute path".into());
            }
        }
    }
    Ok(parts.join("/"))
}

#[test]
fn every_relative_link_reaches_a_tracked_file() {
    let files = tracked();
    let known: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    let is_tracked_dir = |p: &str| files.iter().any(|f| f.starts_with(&format!("{p}/")));
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rust = file.ends_with(".rs");
        if !rust && !file.ends_with(".md") {
            continue;
        }
        let Some(body) = text(file) else { continue };
        for (line, target) in link_targets(&body, rust) {
            if !is_file_link(&target, rust) {
                continue;
            }
            checked += 1;
            match resolve(file, &target) {
                Ok(path) if known.contains(path.as_str()) || is_tracked_dir(&path) => {}
                Ok(path) => broken.push(format!(
                    "{file}:{line}: ({target}) -> {path} is not a tracked file"
                )),
                Err(why) => broken.push(format!("{file}:{line}: ({target}) {why}")),
            }
        }
    }
    assert!(
        checked > 0,
        "no relative link found at all: the scanner is broken"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn no_tracked_file_points_at_design_notes_outside_the_repository() {
    // Built at run time so that this file does not match itself.
    let mut needles = vec![["..", "/shared"].concat()];
    for name in ["CONTRACT", "DESIGN", "FIELD"] {
        needles.push(format!("shared/{name}.md"));
    }
    let mut found = Vec::new();
    for file in tracked() {
        let Some(body) = text(&file) else { continue };
        for (n, line) in body.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle.as_str())) {
                found.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "these lines point outside the repository (users' clones do not have it); \
         point at docs/API.md or say it here:\n{}",
        found.join("\n")
    );
}

/// `issue 5`, `Issues 3`, `issue #12`, ... in `line`.
fn mentions_issue_number(line: &str) -> bool {
    let lower = line.to_lowercase();
    lower.match_indices("issue").any(|(at, _)| {
        let rest = lower[at + "issue".len()..].trim_start_matches('s');
        let after = rest.trim_start_matches([' ', '#']);
        after.len() < rest.len() && after.starts_with(|c: char| c.is_ascii_digit())
    })
}

#[test]
fn documents_name_capabilities_not_issue_numbers() {
    assert!(mentions_issue_number("see Issue #5, item 2"));
    assert!(!mentions_issue_number(
        "an issued token; issues remain; the issue's target"
    ));
    let mut found = Vec::new();
    for file in tracked() {
        let doc = file == "README.md" || (file.starts_with("docs/") && file.ends_with(".md"));
        if !doc {
            continue;
        }
        let Some(body) = text(&file) else { continue };
        for (n, line) in body.lines().enumerate() {
            if mentions_issue_number(line) {
                found.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "name the capability instead of an issue number:\n{}",
        found.join("\n")
    );
}

// ---------------------------------------------------------------------------
// docs/API.md against the code.

/// Every route path the HTTP router registers: the `.route("...")` paths
/// of `src/http/*.rs`, with the `/api/v1` nest prefix for the modules
/// merged into the nested router of `src/http/mod.rs`, and the Socket.IO
/// path mounted in `src/node.rs`.
fn registered_routes() -> BTreeSet<String> {
    let router = code_only(&read("src/http/mod.rs"));
    let nested_block = router
        .split("let api = Router::new()")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("src/http/mod.rs: no `let api = Router::new()...;` block (update tests/docs.rs)");
    let nested: BTreeSet<String> = nested_block
        .split(".merge(")
        .skip(1)
        .filter_map(|m| m.split("::routes()").next())
        .map(|m| m.trim().to_owned())
        .collect();
    let prefix = literal_args(&router, ".nest(", 0)
        .into_iter()
        .next()
        .expect("src/http/mod.rs: no `.nest(\"...\", api)` (update tests/docs.rs)");
    let mut routes = BTreeSet::new();
    for file in tracked() {
        let Some(module) = file
            .strip_prefix("src/http/")
            .and_then(|f| f.strip_suffix(".rs"))
        else {
            continue;
        };
        let source = code_only(&read(&file));
        for path in literal_args(&source, ".route(", 0) {
            if nested.contains(module) {
                routes.insert(format!("{prefix}{path}"));
            } else {
                routes.insert(path);
            }
        }
    }
    routes.extend(literal_args(
        &code_only(&read("src/node.rs")),
        "transport::router(",
        0,
    ));
    for known in ["/api/v1/auth/login", "/healthz", "/socket.io/"] {
        assert!(
            routes.contains(known),
            "the route scanner missed {known} (found {routes:?}): update tests/docs.rs"
        );
    }
    routes
}

/// Whether `path` appears in `doc` on its own (not as part of a longer
/// path).
fn mentions_path(doc: &str, path: &str) -> bool {
    let part_of_path =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || "/{}-_.".contains(c));
    doc.match_indices(path).any(|(at, _)| {
        !part_of_path(doc[..at].chars().next_back())
            && !part_of_path(doc[at + path.len()..].chars().next())
    })
}

#[test]
fn api_md_lists_every_registered_route() {
    let doc = api_md();
    let missing: Vec<String> = registered_routes()
        .into_iter()
        .filter(|r| !mentions_path(&doc, r))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/API.md does not mention these registered routes: {missing:?}"
    );
}

/// Every error code the HTTP side answers: the code argument of the
/// `ApiError` constructors anywhere in `src/` (and of `Self::new` in
/// `src/http/error.rs`), and what the `fn code` of error enums answer (the
/// RTSP puller's codes reach viewers as 502s).
fn http_error_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for file in tracked() {
        if !(file.starts_with("src/") && file.ends_with(".rs")) {
            continue;
        }
        let source = code_only(&read(&file));
        for ctor in [
            "bad_request",
            "unauthorized",
            "conflict",
            "invalid",
            "unavailable",
        ] {
            codes.extend(literal_args(&source, &format!("ApiError::{ctor}("), 0));
        }
        codes.extend(literal_args(&source, "ApiError::new(", 1));
        if file == "src/http/error.rs" {
            codes.extend(literal_args(&source, "Self::new(", 1));
        }
        if file == "src/media/rtsp.rs" {
            codes.extend(code_fn_literals(&source));
        }
    }
    for known in ["not_found", "rate_limited", "internal", "email_taken"] {
        assert!(
            codes.contains(known),
            "the error-code scanner missed {known} (found {codes:?}): update tests/docs.rs"
        );
    }
    codes
}

/// Every error string a Socket.IO client can get: ack errors and
/// connect_error messages of the hub (`src/actors`, `src/cluster`), the
/// codes of the ingest's error enums, and the Socket.IO server's own
/// connect_error (`src/socketio/conn.rs`).
fn socket_error_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for file in tracked() {
        let hub = file.starts_with("src/actors/") || file.starts_with("src/cluster/");
        let ingest = file.starts_with("src/ingest/");
        if !(file.ends_with(".rs") && (hub || ingest || file == "src/socketio/conn.rs")) {
            continue;
        }
        let source = code_only(&read(&file));
        if hub {
            codes.extend(literal_args(&source, "ack_error(", 1));
            codes.extend(literal_args(&source, "\"error\": ", 0));
            codes.extend(literal_args(&source, "Err(", 0));
            codes.extend(literal_args(&source, "ok_or(", 0));
        }
        if hub || file == "src/socketio/conn.rs" {
            codes.extend(literal_args(&source, "\"message\": ", 0));
        }
        if ingest {
            codes.extend(code_fn_literals(&source));
        }
    }
    for known in ["busy", "forbidden", "too_many_points", "too_many_sessions"] {
        assert!(
            codes.contains(known),
            "the Socket.IO error scanner missed {known} (found {codes:?}): update tests/docs.rs"
        );
    }
    codes
}

#[test]
fn api_md_error_catalogue_lists_every_error_code() {
    let doc = api_md();
    let catalogue = section(&doc, "Error codes");
    let http = missing_from(catalogue, &http_error_codes());
    let socket = missing_from(catalogue, &socket_error_codes());
    assert!(
        http.is_empty() && socket.is_empty(),
        "the error catalogue of docs/API.md (`## Error codes`) lacks HTTP codes {http:?} \
         and Socket.IO error strings {socket:?}"
    );
}

/// Every Socket.IO event the hub handles (the `match` arms on event names
/// in `src/actors`) or emits (`Frame::event`, `emit`, `emit_with_ack`).
fn hub_events() -> BTreeSet<String> {
    let mut events = BTreeSet::new();
    for file in tracked() {
        if !(file.starts_with("src/actors/") && file.ends_with(".rs")) {
            continue;
        }
        let source = code_only(&read(&file));
        events.extend(match_arm_literals(&source));
        events.extend(literal_args(&source, "Frame::event(", 1));
        events.extend(literal_args(&source, ".emit(", 0));
        events.extend(literal_args(&source, "emit_with_ack(", 0));
    }
    for known in ["loc", "watch", "presence", "command", "session_replaced"] {
        assert!(
            events.contains(known),
            "the event scanner missed {known} (found {events:?}): update tests/docs.rs"
        );
    }
    events
}

#[test]
fn api_md_lists_every_socketio_event() {
    let doc = api_md();
    let realtime = section(&doc, "Realtime: Socket.IO");
    let missing = missing_from(realtime, &hub_events());
    assert!(
        missing.is_empty(),
        "the Socket.IO section of docs/API.md (`## Realtime: Socket.IO`) lacks events {missing:?}"
    );
}

#[test]
fn the_scanner_reads_call_arguments() {
    let src = r#"ApiError::new(
        StatusCode::BAD_GATEWAY, "a_code", format!("x, {y}"))
        ApiError::new(StatusCode::X, e.code(), "m") json!({"ok": false, "error": "busy"})"#;
    assert_eq!(literal_args(src, "ApiError::new(", 1), ["a_code"]);
    assert_eq!(literal_args(src, "\"error\": ", 0), ["busy"]);
    assert_eq!(
        match_arm_literals("  \"status\" | \"obd\" => {\n  _ => {}"),
        ["status", "obd"]
    );
    assert_eq!(
        resolve("docs/API.md", "../README.md#x").unwrap(),
        "README.md"
    );
    assert!(resolve("docs/API.md", "../../elsewhere.md").is_err());
}
