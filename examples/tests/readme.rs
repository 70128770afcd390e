//! The README's Rust snippets stay true: each is an example, or a marked part of one,
//! that the workspace builds (so a snippet that no longer compiles fails CI), and this
//! test checks the README shows it verbatim.

use std::path::Path;

/// The body of the first ```` ```rust ```` block after `heading` in the README.
fn readme_block(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let section = &readme[readme.find(heading).expect("the heading")..];
    let start = section.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let len = section[start..].find("```").expect("its end");
    section[start..start + len].to_owned()
}

/// An example's source without its `//!` header.
fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    let source = std::fs::read_to_string(&path).expect("the example");
    source
        .lines()
        .skip_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The parts of an example between `// README: begin` and `// README: end`, in
/// order, each without the indentation of its begin marker.
fn example_parts(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    let source = std::fs::read_to_string(&path).expect("the example");
    let mut parts = Vec::new();
    let mut lines = source.lines();
    while let Some(begin) = lines.find(|l| l.trim() == "// README: begin") {
        let indent = begin.len() - begin.trim_start().len();
        let part = lines
            .by_ref()
            .take_while(|l| l.trim() != "// README: end")
            .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
            .collect();
        parts.push(part);
    }
    parts
}

#[test]
fn the_server_and_client_fragments_are_parts_of_an_example() {
    let parts = example_parts("readme_fragments");
    assert_eq!(
        parts.len(),
        2,
        "two marked parts in examples/readme_fragments.rs"
    );
    for (heading, part) in [
        "### Serving your own model",
        "### From Rust: the typed client",
    ]
    .into_iter()
    .zip(parts)
    {
        assert_eq!(
            readme_block(heading),
            part,
            "README.md's snippet under {heading:?} and its part of \
             examples/readme_fragments.rs differ: keep them the same"
        );
    }
}

#[test]
fn the_library_snippet_is_the_readme_library_example() {
    assert_eq!(
        readme_block("## Library"),
        example("readme_library"),
        "README.md's Library snippet and examples/readme_library.rs differ: keep them the same"
    );
}
