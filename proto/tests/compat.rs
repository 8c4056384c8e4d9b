//! Adjacent versions of the agent and the collector work together: the wire
//! types of the previous release are kept in `compat/previous/` (copy
//! `nodewarden/` there when cutting a release) and compared with the current
//! ones. A field number that changes name, type or cardinality, a field or
//! enum value removed without `reserved` (number and name), a reserved number
//! used again, or an RPC removed or retyped fails here; adding fields,
//! values, messages and RPCs is fine.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

fn compile(root: &Path) -> FileDescriptorSet {
    let dir = root.join("nodewarden/v1");
    let mut protos: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    protox::compile(&protos, [root]).expect("the .proto files compile")
}

/// What a field number means on the wire.
#[derive(Debug, PartialEq)]
struct Field {
    name: String,
    kind: String,
}

/// A message or an enum: number -> meaning, and what is reserved.
#[derive(Debug, Default)]
struct Shape {
    numbers: BTreeMap<i32, Field>,
    reserved: Vec<(i32, i32)>,
    reserved_names: Vec<String>,
}

impl Shape {
    fn is_reserved(&self, number: i32, name: &str, end_inclusive: bool) -> bool {
        let in_range = self.reserved.iter().any(|&(start, end)| {
            number >= start && (number < end || (end_inclusive && number == end))
        });
        in_range && self.reserved_names.iter().any(|n| n == name)
    }
}

fn message(prefix: &str, m: &DescriptorProto, out: &mut BTreeMap<String, Shape>) {
    let full = format!("{prefix}.{}", m.name());
    let shape = Shape {
        numbers: m
            .field
            .iter()
            .map(|f| {
                let kind = format!(
                    "{:?} {:?} {}{}",
                    f.label(),
                    f.r#type(),
                    f.type_name(),
                    if f.proto3_optional() { " optional" } else { "" }
                );
                (
                    f.number(),
                    Field {
                        name: f.name().to_string(),
                        kind,
                    },
                )
            })
            .collect(),
        // Message ranges are end-exclusive in descriptors.
        reserved: m
            .reserved_range
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect(),
        reserved_names: m.reserved_name.clone(),
    };
    for nested in &m.nested_type {
        message(&full, nested, out);
    }
    for e in &m.enum_type {
        enumeration(&full, e, out);
    }
    out.insert(full, shape);
}

fn enumeration(prefix: &str, e: &EnumDescriptorProto, out: &mut BTreeMap<String, Shape>) {
    let shape = Shape {
        numbers: e
            .value
            .iter()
            .map(|v| {
                (
                    v.number(),
                    Field {
                        name: v.name().to_string(),
                        kind: "enum value".into(),
                    },
                )
            })
            .collect(),
        // Enum ranges are end-inclusive in descriptors.
        reserved: e
            .reserved_range
            .iter()
            .map(|r| (r.start(), r.end() + 1))
            .collect(),
        reserved_names: e.reserved_name.clone(),
    };
    out.insert(format!("{prefix}.{}", e.name()), shape);
}

/// Every message and enum by full name, and every RPC as "in -> out".
fn shapes(set: &FileDescriptorSet) -> (BTreeMap<String, Shape>, BTreeMap<String, String>) {
    let mut types = BTreeMap::new();
    let mut rpcs = BTreeMap::new();
    for file in &set.file {
        let package = format!(".{}", file.package());
        for m in &file.message_type {
            message(&package, m, &mut types);
        }
        for e in &file.enum_type {
            enumeration(&package, e, &mut types);
        }
        for s in &file.service {
            for m in &s.method {
                rpcs.insert(
                    format!("{package}.{}/{}", s.name(), m.name()),
                    format!(
                        "{}{} -> {}{}",
                        if m.client_streaming() { "stream " } else { "" },
                        m.input_type(),
                        if m.server_streaming() { "stream " } else { "" },
                        m.output_type()
                    ),
                );
            }
        }
    }
    (types, rpcs)
}

/// What the new descriptors break for a peer built from the old ones.
fn breaks(old: &FileDescriptorSet, new: &FileDescriptorSet) -> Vec<String> {
    let (old_types, old_rpcs) = shapes(old);
    let (new_types, new_rpcs) = shapes(new);
    let mut out = Vec::new();
    for (name, was) in &old_types {
        let Some(now) = new_types.get(name) else {
            out.push(format!("{name} was removed"));
            continue;
        };
        for (number, field) in &was.numbers {
            match now.numbers.get(number) {
                Some(f) if f == field => {}
                Some(f) => out.push(format!(
                    "{name} {number}: was `{}` ({}), is `{}` ({})",
                    field.name, field.kind, f.name, f.kind
                )),
                None if now.is_reserved(*number, &field.name, false) => {}
                None => out.push(format!(
                    "{name} {number} `{}` was removed without `reserved {number};` and `reserved \"{}\";`",
                    field.name, field.name
                )),
            }
        }
        for (number, field) in &now.numbers {
            if !was.numbers.contains_key(number)
                && was
                    .reserved
                    .iter()
                    .any(|&(s, e)| *number >= s && *number < e)
            {
                out.push(format!(
                    "{name} {number} `{}` reuses a reserved number",
                    field.name
                ));
            }
        }
    }
    for (rpc, signature) in &old_rpcs {
        match new_rpcs.get(rpc) {
            Some(s) if s == signature => {}
            Some(s) => out.push(format!("{rpc}: was {signature}, is {s}")),
            None => out.push(format!("{rpc} was removed")),
        }
    }
    out
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_wire_types_are_compatible_with_the_previous_release() {
    let old = compile(&manifest().join("compat/previous"));
    let new = compile(&manifest());
    let found = breaks(&old, &new);
    assert!(
        found.is_empty(),
        "the previous release's agent or collector would misread this one:\n{}",
        found.join("\n")
    );
}

/// The check can fail: each kind of break, made in a copy of the current
/// files, is found.
#[test]
fn each_kind_of_break_is_found() {
    let current = compile(&manifest());
    let text = std::fs::read_to_string(manifest().join("nodewarden/v1/telemetry.proto")).unwrap();
    // The first numbered field of the file, e.g. `string node = 1;`.
    let line = text
        .lines()
        .find(|l| {
            let l = l.trim();
            l.ends_with(" = 1;") && !l.starts_with("//") && l.split_whitespace().count() == 4
        })
        .expect("a field numbered 1 in telemetry.proto")
        .to_string();
    let parts: Vec<&str> = line.split_whitespace().collect();
    let (ty, name) = (parts[0], parts[1]);
    let other_ty = if ty == "string" { "bytes" } else { "string" };
    let cases = [
        (
            "renamed",
            line.replace(&format!(" {name} "), &format!(" {name}_renamed ")),
        ),
        ("retyped", line.replacen(ty, other_ty, 1)),
        ("removed", String::new()),
        (
            "removed, number reserved but not the name",
            "reserved 1;".to_string(),
        ),
    ];
    // The current files with `line` of telemetry.proto replaced.
    let variant = |replacement: &str| {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("nodewarden/v1");
        std::fs::create_dir_all(&v1).unwrap();
        for e in std::fs::read_dir(manifest().join("nodewarden/v1")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), v1.join(e.file_name())).unwrap();
        }
        std::fs::write(
            v1.join("telemetry.proto"),
            text.replacen(&line, replacement, 1),
        )
        .unwrap();
        compile(dir.path())
    };
    for (what, replacement) in cases {
        let found = breaks(&current, &variant(&replacement));
        assert!(!found.is_empty(), "a field {what} was not found: {line}");
    }
    // Reserving both the number and the name is the allowed removal.
    let found = breaks(
        &current,
        &variant(&format!("reserved 1; reserved \"{name}\";")),
    );
    assert!(
        found.is_empty(),
        "a properly reserved removal was refused: {found:?}"
    );
}
