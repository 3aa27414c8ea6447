//! The modules of `crates/broker/src` import downward only: no module reaches, through `crate::` paths,
//! a module that reaches it back (design.md section 8, "no import loops between files"). A module is a
//! top-level file or directory of `src`; the files of a directory module (`store/`, `http/`) count as
//! that module. Paths in `//` comments are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Upward arrows that another change removes, each with where it is and who removes it. The test fails
/// once an arrow listed here is gone, so the list only shrinks.
const PENDING: &[(&str, &str, &str)] = &[];

/// An import: from which module, to which, and where.
#[derive(Debug)]
struct Arrow {
    from: String,
    to: String,
    at: String,
}

/// The first identifier of every path after `crate::` in `code`: `crate::a::b` gives `a`,
/// `crate::{a::b, c}` gives `a` and `c`.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(i) = code[from..].find("crate::").map(|i| i + from) {
        from = i + "crate::".len();
        let before = if i == 0 { b' ' } else { bytes[i - 1] };
        if before.is_ascii_alphanumeric() || before == b'_' || before == b'$' {
            continue;
        }
        let line = code[..i].matches('\n').count() + 1;
        if bytes.get(from) == Some(&b'{') {
            // A group: the first identifier of each item at the group's own depth.
            let mut depth = 0;
            let mut expect_item = true;
            for (j, c) in code[from..].char_indices() {
                match c {
                    '{' => {
                        depth += 1;
                        if depth == 1 {
                            expect_item = true;
                        }
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => expect_item = true,
                    c if depth == 1 && expect_item && (c.is_alphanumeric() || c == '_') => {
                        let rest = &code[from + j..];
                        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
                        found.push((line, rest[..end].to_owned()));
                        expect_item = false;
                    }
                    _ => {}
                }
            }
        } else {
            let rest = &code[from..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            found.push((line, rest[..end].to_owned()));
        }
    }
    found
}

/// The code of a file without its `//` comments (doc links name modules they do not import).
fn without_comments(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The arrows between the modules of `src`, given `files` as (path relative to `src`, text).
fn arrows(files: &[(String, String)]) -> Vec<Arrow> {
    let top = |path: &str| path.split('/').next().unwrap_or(path).trim_end_matches(".rs").to_owned();
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| top(p)).filter(|m| m != "lib" && m != "main").collect();
    // `crate::Broker` is `pub use broker::Broker;` in lib.rs.
    let mut reexports = BTreeMap::new();
    if let Some((_, lib)) = files.iter().find(|(p, _)| p == "lib.rs") {
        for line in without_comments(lib).lines() {
            let Some(path) = line.trim().strip_prefix("pub use ").and_then(|l| l.strip_suffix(';')) else { continue };
            if let Some((module, name)) = path.split_once("::") {
                reexports.insert(name.rsplit("::").next().unwrap_or(name).to_owned(), module.to_owned());
            }
        }
    }
    let mut found = Vec::new();
    for (path, text) in files {
        let from = top(path);
        if !modules.contains(&from) {
            continue;
        }
        for (line, name) in crate_paths(&without_comments(text)) {
            let to = if modules.contains(&name) { name } else { reexports.get(&name).cloned().unwrap_or_default() };
            if modules.contains(&to) && to != from {
                found.push(Arrow { from: from.clone(), to, at: format!("src/{path}:{line}") });
            }
        }
    }
    found
}

/// The groups of modules that reach each other (strongly connected, more than one module), each with the
/// arrows inside it; empty when the graph has no loop.
fn loops(arrows: &[Arrow]) -> Vec<(Vec<String>, Vec<String>)> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for a in arrows {
        next.entry(&a.from).or_default().insert(&a.to);
        next.entry(&a.to).or_default();
    }
    // Reachability by a walk from every module (a few dozen modules: no need for Tarjan).
    let reach = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(m) = todo.pop() {
            for &n in &next[m] {
                if seen.insert(n) {
                    todo.push(n);
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<&str>> = next.keys().map(|&m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut groups = Vec::new();
    for (&m, from_m) in &reached {
        if done.contains(m) || !from_m.contains(m) {
            continue;
        }
        let group: Vec<String> = from_m
            .iter()
            .filter(|&&n| reached[n].contains(m))
            .map(|&n| n.to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        done.extend(group.iter().cloned());
        // One place per arrow is enough to find it.
        let mut inside: BTreeMap<(&str, &str), &str> = BTreeMap::new();
        for a in arrows.iter().filter(|a| group.contains(&a.from) && group.contains(&a.to)) {
            inside.entry((&a.from, &a.to)).or_insert(&a.at);
        }
        let inside = inside.into_iter().map(|((from, to), at)| format!("{from} -> {to} ({at})")).collect();
        groups.push((group, inside));
    }
    groups
}

fn sources(dir: &Path, under: &str, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("src is readable").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = if under.is_empty() { name.clone() } else { format!("{under}/{name}") };
        if e.path().is_dir() {
            sources(&e.path(), &path, out);
        } else if name.ends_with(".rs") {
            out.push((path, std::fs::read_to_string(e.path()).expect("a source file is readable")));
        }
    }
}

#[test]
fn broker_modules_import_downward_only() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), "", &mut files);
    let mut all = arrows(&files);
    let mut stale = Vec::new();
    for (from, to, why) in PENDING {
        let before = all.len();
        all.retain(|a| !(a.from == *from && a.to == *to));
        if all.len() == before {
            stale.push(format!("{from} -> {to} ({why}) is gone: delete it from PENDING"));
        }
    }
    let loops = loops(&all);
    let report: Vec<String> = loops
        .iter()
        .map(|(group, inside)| format!("loop among {}:\n    {}", group.join(", "), inside.join("\n    ")))
        .collect();
    assert!(report.is_empty(), "crates/broker/src has import loops:\n{}", report.join("\n"));
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}

#[test]
fn a_loop_is_found_and_named() {
    let file = |path: &str, text: &str| (path.to_owned(), text.to_owned());
    let files = [
        file("lib.rs", "pub use a::Thing;\nmod a;\nmod b;\nmod c;"),
        file("a.rs", "use crate::{b::{X, Y}, c};\n// crate::c::in_a_comment\nfn f() { crate::c::g(); }"),
        file("b/mod.rs", "use std::x;\n"),
        file("b/inner.rs", "fn h() { let t: crate::Thing; }"),
        file("c.rs", "use mqttd_crate::b;\nfn g() {}"),
    ];
    let found = arrows(&files);
    let named: Vec<String> = found.iter().map(|a| format!("{}->{} {}", a.from, a.to, a.at)).collect();
    assert_eq!(named, ["a->b src/a.rs:1", "a->c src/a.rs:1", "a->c src/a.rs:3", "b->a src/b/inner.rs:1"]);
    let loops = loops(&found);
    assert_eq!(loops.len(), 1);
    assert_eq!(loops[0].0, ["a", "b"]);
    assert_eq!(loops[0].1, ["a -> b (src/a.rs:1)", "b -> a (src/b/inner.rs:1)"]);
}
